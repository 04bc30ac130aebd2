"""The Alerts page, the banner on every page, silencing from the page, and the admin's rules
and channels: validation and the test notification."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from alerts.models import AlertState, Channel, Delivery, Rule
from meters.heartbeats import heartbeat_beat
from meters.models import Heartbeat
from tests.support.alert_receivers import signature_valid
from tests.support.alerting import evaluate_and_send
from tests.support.triggering import trigger_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def firing(channels, receiver, settings):
    """A "no worker alive" alert, fired (no worker runs in the test process; a reader does),
    with a webhook delivery that failed."""
    heartbeat_beat(process="reader@host:1", role=Heartbeat.Role.WORKER, queues=settings.SHARDWATCH_READER_QUEUE)
    rule = Rule.objects.create(name="workers-down", condition=Rule.Condition.NO_WORKER, threshold=30)
    rule.channels.set([channels.webhook])
    receiver.status = 500
    evaluate_and_send(now=timezone.now())
    return AlertState.objects.get(rule=rule, subject="role:worker")


def test_it_shows_firing_alerts_their_history_and_failed_deliveries(owner, firing):
    page = owner.get("/alerts/")

    assert page.status_code == 200
    text = page.content.decode()
    assert 'id="alerts-firing"' in text and "workers-down" in text
    assert "No Celery worker has sent a heartbeat" in text
    assert "HTTP 500 Internal Server Error" in text  # the delivery's error
    assert 'class="alert-fired"' in text


def test_it_shows_the_banner_on_every_page_with_one_query(owner, firing):
    with CaptureQueriesContext(connection) as queries:
        page = owner.get("/triggers/")
    text = page.content.decode()
    assert 'id="alert-banner"' in text and "1 alert firing" in text and 'href="/alerts/"' in text
    assert sum("alerts_alertstate" in query["sql"] for query in queries.captured_queries) == 1


def test_it_names_as_many_alerts_in_the_banner_as_its_refresh_does(owner, firing, monkeypatch):
    AlertState.objects.create(rule=firing.rule, subject="role:reader", subject_label="readers",
                              status=AlertState.Status.FIRING, fired_at=timezone.now())
    monkeypatch.setattr("dashboard.context_processors.BANNER_NAMED", 1)

    text = owner.get("/triggers/").content.decode()
    api = owner.get("/api/alerts/firing").json()

    assert "2 alerts firing" in text and text.count('class="alert-banner-item"') == 1 and "and 1 more" in text
    assert api["count"] == 2 and len(api["alerts"]) == 1


def test_it_shows_the_banner_on_the_admins_pages_with_its_refreshing_script(admin_user_client, firing):
    for url in ("/admin/", "/admin/alerts/rule/"):
        text = admin_user_client.get(url).content.decode()
        assert 'id="alert-banner"' in text and "1 alert firing" in text and "workers-down" in text
        assert 'data-api-url="/api/alerts/firing"' in text
        assert '<script type="module" src="/static/js/alert_banner.js">' in text


def test_it_answers_the_firing_alerts_as_json_for_the_banner(owner, firing):
    assert owner.get("/api/alerts/firing").json() == {
        "count": 1, "alerts": [{"id": firing.pk, "rule": "workers-down", "subject_label": "workers"}],
        "url": "/alerts/",
    }
    owner.logout()
    assert owner.get("/api/alerts/firing").status_code == 401
    owner.force_login(User.objects.get(username="owner"))

    AlertState.objects.filter(pk=firing.pk).update(silenced_until=timezone.now() + timedelta(hours=1))
    assert owner.get("/api/alerts/firing").json()["count"] == 0


def test_it_leaves_the_banner_out_when_nothing_fires(owner, db):
    assert 'id="alert-banner"' not in owner.get("/triggers/").content.decode()


def test_it_silences_an_alert_until_a_time_and_lifts_it(owner, firing):
    owner.post(f"/alerts/{firing.pk}/silence", {"hours": "2"})

    firing.refresh_from_db()
    assert firing.silenced_until > timezone.now() + timedelta(hours=1, minutes=59)
    assert 'id="alert-banner"' not in owner.get("/triggers/").content.decode()
    assert 'id="alerts-silenced"' in owner.get("/alerts/").content.decode()

    owner.post(f"/alerts/{firing.pk}/silence", {"lift": "1"})
    firing.refresh_from_db()
    assert firing.silenced_until is None


def test_it_refuses_to_silence_until_a_time_already_past(owner, firing):
    answer = owner.post(f"/alerts/{firing.pk}/silence", {"until": "2020-01-01T00:00"}, follow=True)

    firing.refresh_from_db()
    assert firing.silenced_until is None
    page = answer.content.decode()
    assert "2020-01-01 00:00 UTC is in the past" in page
    assert "silenced until" not in page


def test_it_labels_the_silence_until_field_as_utc(owner, firing):
    assert "or until (UTC)" in owner.get("/alerts/").content.decode()


def test_it_refuses_to_silence_without_a_login(client, firing):
    assert client.post(f"/alerts/{firing.pk}/silence", {"hours": "2"}).status_code == 302
    firing.refresh_from_db()
    assert firing.silenced_until is None


@pytest.fixture
def admin_user_client(client):
    client.force_login(User.objects.create_superuser("root", "root@example.com", "a-long-password-1"))
    return client


def test_it_explains_a_trigger_condition_without_a_trigger(admin_user_client):
    answer = admin_user_client.post("/admin/alerts/rule/add/", {
        "name": "age", "condition": "trigger_age", "threshold": "60", "duration_s": "0", "window_s": "300",
        "repeat_interval_s": "3600", "enabled": "on",
    })

    assert answer.status_code == 200
    assert "watches a trigger: choose one." in answer.content.decode()
    assert not Rule.objects.exists()


def rule_form(**fields):
    return {"name": "r", "threshold": "0", "duration_s": "0", "window_s": "300", "repeat_interval_s": "3600",
            "enabled": "on", **fields}


@pytest.mark.parametrize("condition, threshold, refused, explained", [
    # Heartbeats every 10 s (SHARDWATCH_HEARTBEAT_S): "no heartbeat for 0 s" is always true.
    ("no_worker", "0", True, "give at least 30 s (three heartbeats)"),
    ("no_worker", "29", True, "give at least 30 s"),
    ("no_worker", "30", False, ""),
    # An idle reader shows up to 15 / 3 + 1 + 1 = 7 s of lag (lease renewal, idle poll, a
    # second of rounding: streams.lag).
    ("source_lag", "0", True, "give more than 7 s"),
    ("source_lag", "7", True, "give more than 7 s"),
    ("source_lag", "7.5", False, ""),
    # A poll's backoff (30 s) and a lease handover (15 s).
    ("shard_stuck", "0", True, "give more than 0.75 minutes"),
    ("shard_stuck", "1", False, ""),
    # These fire on events, not on a healthy system at rest: 0 means "any".
    ("gap", "0", False, ""),
    ("source_inactive", "0", False, ""),
])
def test_it_refuses_a_threshold_that_a_healthy_system_always_crosses(admin_user_client, condition, threshold,
                                                                     refused, explained):
    answer = admin_user_client.post("/admin/alerts/rule/add/", rule_form(condition=condition, threshold=threshold))

    assert Rule.objects.exists() is not refused
    if refused:
        assert answer.status_code == 200 and explained in answer.content.decode()


def test_it_refuses_a_trigger_age_within_the_triggers_batching_window(admin_user_client, orders_table):
    trigger = trigger_for(orders_table, "fail_always", maximum_batching_window_s=20)

    refused = admin_user_client.post("/admin/alerts/rule/add/", rule_form(
        condition="trigger_age", trigger=str(trigger.pk), threshold="22"))
    assert "give more than 22 s" in refused.content.decode() and not Rule.objects.exists()

    admin_user_client.post("/admin/alerts/rule/add/", rule_form(
        condition="trigger_age", trigger=str(trigger.pk), threshold="23"))
    assert Rule.objects.get().threshold == 23


def test_it_explains_a_channel_without_its_url_or_addresses(admin_user_client):
    hook = admin_user_client.post("/admin/alerts/channel/add/", {"name": "h", "kind": "webhook", "enabled": "on"})
    mail = admin_user_client.post("/admin/alerts/channel/add/", {"name": "m", "kind": "email", "email_to": "nobody", "enabled": "on"})

    assert "needs a URL" in hook.content.decode()
    assert "is not an email address" in mail.content.decode()
    assert not Channel.objects.exists()


def test_it_sends_a_test_notification_from_the_admin(admin_user_client, receiver):
    admin_user_client.post("/admin/alerts/channel/add/", {"name": "hook", "kind": "webhook", "url": receiver.url + "/hook",
                                                          "enabled": "on"})
    channel = Channel.objects.get(name="hook")
    secret = next(str(m) for m in admin_user_client.get("/admin/").context["messages"]).split("secret for hook: ")[1].split(" ")[0]

    answer = admin_user_client.post("/admin/alerts/channel/", {"action": "send_test", "_selected_action": [channel.pk]},
                                    follow=True)

    assert [str(m) for m in answer.context["messages"]] == ["hook: test notification sent."]
    [request] = receiver.received
    assert request["json"]["kind"] == "test" and signature_valid(secret=secret, request=request)
    assert not Delivery.objects.exists()


def test_it_reports_a_test_notification_that_failed(admin_user_client, receiver):
    receiver.status = 404
    channel = Channel.objects.create(name="slack", kind=Channel.Kind.SLACK, url=receiver.url + "/nowhere")

    answer = admin_user_client.post("/admin/alerts/channel/", {"action": "send_test", "_selected_action": [channel.pk]},
                                    follow=True)

    assert [str(m) for m in answer.context["messages"]] == ["slack: not sent: HTTP 404 Not Found"]
