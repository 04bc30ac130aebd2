"""The charts' series (dashboard.charts, over meters.store.series_steps) and their endpoints:
figures written as the readers and the runner write them (meter_count, meter_sample, then
meters_flush) into the real database, read back per step."""

from datetime import UTC, datetime, timedelta

import pytest
from django.urls import reverse

from dashboard.charts import source_series, trigger_series
from meters.store import meter_count, meter_sample, meters_flush, series_steps
from tests.dashboard.test_overview import source_create
from workers.models import INVOCATION_OUTCOMES, Trigger
from tests.support.personas import persona_user

pytestmark = pytest.mark.django_db

# A fixed clock: 12:37:20 UTC, so the 1-minute steps of the last hour start at 11:38 and the
# 5-minute steps of the last day at 12:40 the day before.
NOW = datetime(2026, 3, 4, 12, 37, 20, tzinfo=UTC)


def records(source, count, at):
    meter_count(name="shardwatch_records_read_total", labels={"source": source.pk}, value=count, at=at)


def poll_error(source, error, at, count=1):
    meter_count(name="shardwatch_poll_errors_total", labels={"source": source.pk, "error": error}, value=count, at=at)


def lag(source, seconds, at):
    meter_sample(name="shardwatch_iterator_age_seconds", labels={"source": source.pk}, value=seconds, at=at)


def invoked(trigger, outcome, count, at):
    meter_count(
        name="shardwatch_trigger_invocations_total", labels={"trigger": trigger.pk, "outcome": outcome}, value=count, at=at
    )


def trigger_create(source, name):
    return Trigger.objects.create(name=name, source=source, target=Trigger.Target.PYTHON, handler="tests.handlers.triggers.record_batches")


def minute(hh, mm, day=4):
    return datetime(2026, 3, day, hh, mm, tzinfo=UTC)


def test_it_zero_fills_counters_by_the_minute_over_the_last_hour():
    orders, quiet = source_create("orders"), source_create("quiet")
    records(orders, 3, minute(11, 38))
    records(orders, 2, minute(12, 37).replace(second=5))
    records(orders, 4, minute(12, 37).replace(second=59))
    records(orders, 100, minute(11, 37))  # a minute before the hour: not drawn
    poll_error(orders, "ThrottlingException", minute(12, 0))
    poll_error(orders, "ExpiredIteratorException", minute(12, 0), count=2)
    meters_flush()

    series = source_series(range_name="1h", now=NOW)

    assert series["range"] == "1h" and series["step_seconds"] == 60
    assert len(series["times"]) == 60
    assert series["times"][0] == minute(11, 38).timestamp() and series["times"][-1] == minute(12, 37).timestamp()
    drawn = {source["table"]: source for source in series["sources"]}
    # 12:37 is still running at 12:37:20: its 6 records so far would draw as a drop, so the
    # counters leave it out until it is over.
    assert drawn["orders"]["records"] == [3] + [0] * 58 + [None]
    # Errors of every kind in one line.
    assert drawn["orders"]["poll_errors"][22] == 3 and sum(drawn["orders"]["poll_errors"][:-1]) == 3
    assert drawn["quiet"] == {"id": quiet.pk, "table": "quiet", "records": [0] * 59 + [None],
                              "poll_errors": [0] * 59 + [None], "lag_seconds": [None] * 60}


def test_it_leaves_gaps_where_no_lag_was_sampled_and_keeps_the_highest_of_a_step():
    orders = source_create("orders")
    lag(orders, 4.5, minute(12, 40, day=3).replace(second=15))
    lag(orders, 9, minute(12, 44, day=3).replace(second=30))
    lag(orders, 2, minute(12, 44, day=3).replace(second=45))
    lag(orders, 0.3, minute(12, 36).replace(second=0))
    meters_flush()

    series = source_series(range_name="24h", now=NOW)

    assert series["step_seconds"] == 300 and len(series["times"]) == 288
    assert series["times"][0] == minute(12, 40, day=3).timestamp()
    assert series["times"][-1] == minute(12, 35).timestamp()
    age = series["sources"][0]["lag_seconds"]
    assert age[0] == 9 and age[-1] == 0.3
    assert age[1:-1] == [None] * 286


def test_it_adds_minutes_up_into_coarser_steps():
    orders = source_create("orders")
    for mm in range(40, 45):
        records(orders, 1, minute(12, mm, day=3))
    records(orders, 7, minute(12, 45, day=3))
    meters_flush()

    starts, series = series_steps(
        name="shardwatch_records_read_total", since=minute(12, 41, day=3), until=minute(12, 49, day=3), step=timedelta(minutes=5)
    )

    assert starts == [minute(12, 40, day=3), minute(12, 45, day=3)]
    assert list(series.values()) == [[5, 7]]


def test_it_keeps_six_hours_by_the_minute():
    series = source_series(range_name="6h", now=NOW)
    assert series["step_seconds"] == 60 and len(series["times"]) == 360
    assert series["times"][0] == minute(6, 38).timestamp()


def test_it_refuses_unknown_ranges_uncharted_meters_and_uneven_steps():
    with pytest.raises(ValueError, match="range is one of 1h, 6h, 24h"):
        source_series(range_name="7d", now=NOW)
    with pytest.raises(ValueError, match="not a charted meter"):
        series_steps(name="shardwatch_polls_total", since=NOW, until=NOW, step=timedelta(minutes=1))
    with pytest.raises(ValueError, match="does not divide an hour"):
        series_steps(name="shardwatch_records_read_total", since=NOW, until=NOW, step=timedelta(minutes=7))


def test_it_counts_invocations_by_outcome_and_the_share_that_failed():
    orders = source_create("orders")
    mailer, idle = trigger_create(orders, "mailer"), trigger_create(orders, "idle")
    invoked(mailer, "success", 3, minute(12, 30))
    invoked(mailer, "function_error", 1, minute(12, 30))
    invoked(mailer, "success", 2, minute(12, 31))
    invoked(mailer, "timeout", 2, minute(12, 37))
    # Throttled is not drawn (not an outcome the timeline shows), but it did not succeed.
    invoked(mailer, "throttled", 2, minute(12, 37))
    meters_flush()

    series = trigger_series(range_name="1h", now=NOW)

    assert series["outcomes"] == [[value, label] for value, label in INVOCATION_OUTCOMES]
    drawn = {trigger["name"]: trigger for trigger in series["triggers"]}
    assert [trigger["name"] for trigger in series["triggers"]] == ["idle", "mailer"]
    mailer_series = drawn["mailer"]
    assert set(mailer_series["invocations"]) == {value for value, _ in INVOCATION_OUTCOMES}
    assert mailer_series["invocations"]["success"][52:54] == [3, 2]
    assert mailer_series["invocations"]["function_error"][52] == 1
    assert mailer_series["invocations"]["timeout"][-2:] == [0, None]  # 12:37 still running
    assert sum(mailer_series["invocations"]["discarded"][:-1]) == 0
    rate = mailer_series["error_rate"]
    assert rate[52] == 0.25 and rate[53] == 0 and rate[-1] == 1
    assert rate[:52] == [None] * 52 and rate[54:-1] == [None] * 5
    assert drawn["idle"]["error_rate"] == [None] * 60
    assert drawn["idle"]["invocations"]["success"] == [0] * 59 + [None]


def test_it_answers_the_series_to_a_login_only(client):
    source_create("orders")
    for name in ("dashboard:api_source_series", "dashboard:api_trigger_series"):
        response = client.get(reverse(name))
        assert response.status_code == 401
        assert response.json()["error"].startswith("Log in first")


def test_it_answers_each_page_its_series_for_a_range(client):
    client.force_login(persona_user(name="viewer", role="Viewer"))
    orders = source_create("orders")
    trigger_create(orders, "mailer")

    sources = client.get(reverse("dashboard:api_source_series"))
    triggers = client.get(reverse("dashboard:api_trigger_series"), {"range": "1h"})
    wrong = [client.get(reverse(name), {"range": "2h"}) for name in ("dashboard:api_source_series", "dashboard:api_trigger_series")]

    assert sources.status_code == 200 and sources["Cache-Control"].startswith("max-age=0")
    body = sources.json()
    assert (body["range"], body["step_seconds"], len(body["times"])) == ("24h", 300, 288)
    assert body["sources"][0].keys() == {"id", "table", "records", "poll_errors", "lag_seconds"}
    body = triggers.json()
    assert (body["range"], len(body["times"])) == ("1h", 60)
    assert body["triggers"][0]["name"] == "mailer" and len(body["triggers"][0]["error_rate"]) == 60
    assert [(each.status_code, each.json()) for each in wrong] == [(400, {"error": "range is one of 1h, 6h, 24h."})] * 2


@pytest.mark.parametrize("page", ["dashboard:overview", "dashboard:triggers"])
def test_it_renders_the_range_asked_in_the_pages_query_as_pressed(client, page):
    client.force_login(persona_user(name="viewer", role="Viewer"))
    trigger_create(source_create("orders"), "mailer")  # the Triggers page draws charts when it has triggers

    chosen = client.get(reverse(page), {"range": "6h"}).content.decode()
    unknown = client.get(reverse(page), {"range": "7d"}).content.decode()

    assert 'data-range="6h" data-refresh-ms' in chosen
    assert '<button type="button" data-range="6h" aria-pressed="true">' in chosen
    assert '<button type="button" data-range="24h" aria-pressed="false">' in chosen
    assert '<button type="button" data-range="24h" aria-pressed="true">' in unknown
