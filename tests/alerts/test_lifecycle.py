"""An alert's life end to end: DynamoDB Local, the readers, a Python handler that fails, the
evaluation, and what each channel really receives (an HTTP receiver and an SMTP server that the
tests start)."""

import json
import threading
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from alerts.delivery import CLAIM_S, delivery_send
from alerts.evaluation import SWEEP_GRACE_S, alert_silence, alerts_evaluate
from alerts.models import AlertState, AlertTransition, Delivery, Rule
from tests.support.alert_receivers import signature_valid
from tests.support.alerting import evaluate_and_send
from tests.support.http_servers import QuietHandler, http_server
from tests.support.processes import wait_for
from tests.support.triggering import run_until_idle, trigger_for

pytestmark = pytest.mark.django_db


def failing_trigger(orders_table, **settings):
    orders_table.put("a")
    orders_table.ingest()
    trigger = trigger_for(orders_table, "fail_always", **{"maximum_retry_attempts": 0, **settings})
    run_until_idle(trigger)
    return trigger


def error_rule(trigger, channels, **fields):
    rule = Rule.objects.create(name="errors", condition=Rule.Condition.TRIGGER_ERROR_RATE, trigger=trigger,
                               threshold=0, **{"window_s": 300, **fields})
    rule.channels.set(channels)
    return rule


def test_it_fires_to_every_channel_then_resolves_and_never_sends_twice(orders_table, channels, receiver, inbox):
    trigger = failing_trigger(orders_table)
    rule = error_rule(trigger, channels.all)
    now = timezone.now()

    evaluate_and_send(now=now)
    evaluate_and_send(now=now + timedelta(seconds=15))

    hooks = [r for r in receiver.received if r["path"] == "/hook"]
    slacks = [r for r in receiver.received if r["path"] == "/slack"]
    assert len(hooks) == 1 and len(slacks) == 1 and len(inbox.messages) == 1
    assert signature_valid(secret=channels.secret, request=hooks[0])
    fired = hooks[0]["json"]
    assert (fired["alert"], fired["kind"], fired["status"], fired["subject"]) == ("errors", "fired", "firing", f"trigger:{trigger.pk}")
    assert "1 of 1 invocations failed" in fired["summary"]
    assert "FIRING: errors" in slacks[0]["json"]["text"]
    assert sorted(inbox.messages[0]["to"]) == ["lead@example.com", "oncall@example.com"]
    assert "FIRING: errors" in inbox.messages[0]["message"]["Subject"]
    state = AlertState.objects.get(rule=rule)
    assert state.status == AlertState.Status.FIRING

    # The failed invocation leaves the 5-minute window: the alert resolves, once.
    later = now + timedelta(seconds=301)
    evaluate_and_send(now=later)
    evaluate_and_send(now=later + timedelta(seconds=15))

    hooks = [r for r in receiver.received if r["path"] == "/hook"]
    assert [h["json"]["kind"] for h in hooks] == ["fired", "resolved"]
    assert hooks[1]["json"]["status"] == "resolved" and signature_valid(secret=channels.secret, request=hooks[1])
    assert len(inbox.messages) == 2 and "RESOLVED: errors" in inbox.messages[1]["message"]["Subject"]
    # A resolve reads as one: the firing's words come after "it was", never as the news.
    resolved = hooks[1]["json"]["summary"]
    assert resolved.startswith(f"Resolved: errors on {state.subject_label}; it was: ")
    assert resolved.endswith(fired["summary"])
    slacks = [r for r in receiver.received if r["path"] == "/slack"]
    assert slacks[1]["json"]["text"].splitlines()[1] == resolved
    assert inbox.messages[1]["message"].get_content().splitlines()[0] == resolved
    assert [t.kind for t in AlertTransition.objects.filter(rule=rule).order_by("at")] == ["fired", "resolved"]
    assert set(Delivery.objects.values_list("status", flat=True)) == {Delivery.Status.SENT}
    state.refresh_from_db()
    assert state.status == AlertState.Status.RESOLVED


@pytest.mark.django_db(transaction=True)
def test_it_claims_a_transition_once_when_two_evaluations_run_at_once(orders_table, channels):
    trigger = failing_trigger(orders_table)
    error_rule(trigger, channels.all)
    now = timezone.now()
    barrier = threading.Barrier(2)
    results = []

    def evaluate():
        barrier.wait()
        try:
            results.append(alerts_evaluate(now=now))
        finally:
            connection.close()

    threads = [threading.Thread(target=evaluate) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(len(result.transitions) for result in results) == [0, 1]
    assert AlertTransition.objects.count() == 1
    assert sorted(Delivery.objects.values_list("channel__name", flat=True)) == ["hook", "mail", "slack"]


def test_it_waits_for_the_duration_before_firing(orders_table, channels, receiver):
    trigger = failing_trigger(orders_table)
    rule = error_rule(trigger, [channels.webhook], duration_s=60)
    now = timezone.now()

    evaluate_and_send(now=now)
    assert AlertState.objects.get(rule=rule).status == AlertState.Status.PENDING
    evaluate_and_send(now=now + timedelta(seconds=45))
    assert receiver.received == []

    evaluate_and_send(now=now + timedelta(seconds=60))

    assert AlertState.objects.get(rule=rule).status == AlertState.Status.FIRING
    assert [r["json"]["kind"] for r in receiver.received] == ["fired"]


def test_it_reminds_after_the_repeat_interval(orders_table, channels, receiver):
    trigger = failing_trigger(orders_table)
    error_rule(trigger, [channels.webhook], repeat_interval_s=120, window_s=3600)
    now = timezone.now()

    for seconds in (0, 60, 119):
        evaluate_and_send(now=now + timedelta(seconds=seconds))
    assert [r["json"]["kind"] for r in receiver.received] == ["fired"]
    evaluate_and_send(now=now + timedelta(seconds=120))
    evaluate_and_send(now=now + timedelta(seconds=135))

    assert [r["json"]["kind"] for r in receiver.received] == ["fired", "repeated"]


def test_it_records_a_silenced_alerts_transitions_without_notifying(orders_table, channels, receiver):
    trigger = failing_trigger(orders_table)
    rule = error_rule(trigger, [channels.webhook], duration_s=60)
    now = timezone.now()
    evaluate_and_send(now=now)
    state = AlertState.objects.get(rule=rule)

    alert_silence(state_id=state.pk, until=now + timedelta(hours=1))
    evaluate_and_send(now=now + timedelta(seconds=60))
    evaluate_and_send(now=now + timedelta(seconds=301))

    transitions = AlertTransition.objects.filter(rule=rule).order_by("at")
    assert [(t.kind, t.silenced) for t in transitions] == [("fired", True), ("resolved", True)]
    assert not Delivery.objects.exists()
    assert receiver.received == []


def test_it_tells_the_resolve_of_a_notified_alert_even_while_silenced(orders_table, channels, receiver):
    # Receivers were told it fires; withholding the resolve would leave them at FIRING for good.
    trigger = failing_trigger(orders_table)
    rule = error_rule(trigger, [channels.webhook])
    now = timezone.now()
    evaluate_and_send(now=now)
    state = AlertState.objects.get(rule=rule)

    alert_silence(state_id=state.pk, until=now + timedelta(hours=1))
    evaluate_and_send(now=now + timedelta(seconds=301))

    assert [r["json"]["kind"] for r in receiver.received] == ["fired", "resolved"]
    resolved = AlertTransition.objects.get(rule=rule, kind=AlertTransition.Kind.RESOLVED)
    assert not resolved.silenced and resolved.deliveries.get().status == Delivery.Status.SENT


@pytest.mark.parametrize("repeat_interval_s", [0, 3600])
def test_it_notifies_an_alert_still_firing_when_its_silence_ends(orders_table, channels, receiver, repeat_interval_s):
    trigger = failing_trigger(orders_table)
    rule = error_rule(trigger, [channels.webhook], duration_s=60, window_s=3600, repeat_interval_s=repeat_interval_s)
    now = timezone.now()
    evaluate_and_send(now=now)
    state = AlertState.objects.get(rule=rule)
    alert_silence(state_id=state.pk, until=now + timedelta(seconds=120))

    evaluate_and_send(now=now + timedelta(seconds=60))
    evaluate_and_send(now=now + timedelta(seconds=105))
    assert receiver.received == []

    evaluate_and_send(now=now + timedelta(seconds=120))
    evaluate_and_send(now=now + timedelta(seconds=135))

    assert [r["json"]["kind"] for r in receiver.received] == ["fired"]
    assert [(t.kind, t.silenced) for t in AlertTransition.objects.filter(rule=rule).order_by("at")] == [
        ("fired", True), ("fired", False)]
    state.refresh_from_db()
    assert state.status == AlertState.Status.FIRING and state.last_notified_at == now + timedelta(seconds=120)


def test_it_retries_a_failing_channel_with_backoff_without_holding_up_the_others(orders_table, channels, receiver, inbox):
    trigger = failing_trigger(orders_table)
    error_rule(trigger, [channels.webhook, channels.email])
    receiver.status = 503
    now = timezone.now()

    result = evaluate_and_send(now=now)

    assert len(result.transitions) == 1
    hook = Delivery.objects.get(channel=channels.webhook)
    assert hook.status == Delivery.Status.PENDING and hook.attempts == 1
    assert hook.last_error == "HTTP 503 Service Unavailable"
    assert hook.next_attempt_at > now
    assert Delivery.objects.get(channel=channels.email).status == Delivery.Status.SENT
    assert len(inbox.messages) == 1

    # The receiver is back; the evaluation's sweep finds the retry due (its task may be lost).
    receiver.status = 200
    evaluate_and_send(now=hook.next_attempt_at + timedelta(seconds=11))

    hook.refresh_from_db()
    assert hook.status == Delivery.Status.SENT and hook.attempts == 2
    assert [r["json"]["kind"] for r in receiver.received if r["path"] == "/hook"] == ["fired", "fired"]
    assert len(inbox.messages) == 1


def test_it_supersedes_a_pending_fired_delivery_with_the_resolve_so_the_channel_ends_resolved(
        orders_table, channels, receiver, owner):
    trigger = failing_trigger(orders_table)
    rule = error_rule(trigger, [channels.webhook])
    receiver.status = 503
    now = timezone.now()
    evaluate_and_send(now=now)
    fired = Delivery.objects.get(transition__kind=AlertTransition.Kind.FIRED)
    assert fired.status == Delivery.Status.PENDING and fired.attempts == 1

    # The alert resolves while the fired delivery waits out its backoff; then the channel is back.
    later = now + timedelta(seconds=301)
    receiver.status = 200
    receiver.received.clear()  # the refused attempt
    evaluate_and_send(now=later)
    evaluate_and_send(now=later + timedelta(seconds=3600))

    assert [r["json"]["kind"] for r in receiver.received] == ["resolved"]
    fired.refresh_from_db()
    assert fired.status == Delivery.Status.SUPERSEDED and fired.attempts == 1 and fired.next_attempt_at is None
    resolved = Delivery.objects.get(transition__kind=AlertTransition.Kind.RESOLVED)
    assert resolved.status == Delivery.Status.SENT
    assert AlertState.objects.get(rule=rule).status == AlertState.Status.RESOLVED
    assert "Superseded" in owner.get("/alerts/").content.decode()


def test_it_escapes_names_in_slack_text_so_they_mention_nobody(orders_table, channels, receiver):
    trigger = failing_trigger(orders_table)
    trigger.name = "<!channel> & <https://evil.example|co>"
    trigger.save(update_fields=["name"])
    error_rule(trigger, [channels.slack])

    evaluate_and_send(now=timezone.now())

    [slack] = receiver.received
    text = slack["json"]["text"]
    assert "&lt;!channel&gt; &amp; &lt;https://evil.example|co&gt;" in text
    # The only markup left is the message's own link to the Alerts page.
    assert text.count("<") == 1 and text.count(">") == 1 and text.endswith("|Alerts page>")


class HoldingHandler(QuietHandler):
    """Keeps each POST's JSON in server.received as it arrives, then answers 200 once
    server.release is set."""

    def do_POST(self):
        self.server.received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.server.release.wait(20)
        self.answer(200, b"{}")


class TricklingHandler(QuietHandler):
    """Answers 200 a byte at a time, one a second, for longer than any deadline of the test."""

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        self.server.received += 1
        for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}":
            try:
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
            except OSError:
                return
            time.sleep(1)


@pytest.mark.django_db(transaction=True)
def test_it_sends_a_resolve_after_the_fired_notice_still_in_flight(orders_table, channels):
    trigger = failing_trigger(orders_table)
    with http_server(HoldingHandler, received=[], release=threading.Event()) as holding:
        channels.webhook.url = holding.url + "/hook"
        channels.webhook.save()
        error_rule(trigger, [channels.webhook])
        now = timezone.now()
        [fired_id] = alerts_evaluate(now=now).deliveries
        # The failed invocation leaves the 5-minute window just after "fired" is claimed.
        claimed_at, later = now + timedelta(seconds=300), now + timedelta(seconds=301)

        def send():  # another sender, with a database connection of its own, as a worker's task
            try:
                delivery_send(delivery_id=fired_id, now=claimed_at)
            finally:
                connection.close()

        sending = threading.Thread(target=send)
        sending.start()
        assert wait_for(lambda: holding.received, timeout=10)

        # The alert resolves while "fired" is on the wire: it stays its sender's, and the
        # resolve waits for that claim to end rather than overtake it.
        [resolved_id] = alerts_evaluate(now=later).deliveries
        assert Delivery.objects.get(pk=fired_id).status == Delivery.Status.PENDING
        resolved = Delivery.objects.get(pk=resolved_id)
        assert resolved.next_attempt_at == claimed_at + timedelta(seconds=CLAIM_S)
        assert not delivery_send(delivery_id=resolved_id, now=later).sent

        holding.release.set()
        sending.join(10)
        evaluate_and_send(now=claimed_at + timedelta(seconds=CLAIM_S + SWEEP_GRACE_S))

    assert [document["kind"] for document in holding.received] == ["fired", "resolved"]
    assert set(Delivery.objects.values_list("status", flat=True)) == {Delivery.Status.SENT}


def test_it_cuts_a_send_whose_answer_trickles_within_its_deadline(orders_table, channels, monkeypatch):
    monkeypatch.setattr("alerts.delivery.SEND_DEADLINE_S", 2)
    trigger = failing_trigger(orders_table)
    with http_server(TricklingHandler, received=0) as trickling:
        channels.webhook.url = trickling.url + "/hook"
        channels.webhook.save()
        error_rule(trigger, [channels.webhook])
        [delivery_id] = alerts_evaluate(now=timezone.now()).deliveries

        started = time.monotonic()
        sent = delivery_send(delivery_id=delivery_id)
        took = time.monotonic() - started

    assert not sent.sent and sent.retry_in_s is not None and took < 4
    delivery = Delivery.objects.get(pk=delivery_id)
    assert delivery.status == Delivery.Status.PENDING and delivery.last_error == "No answer within 2 s"


def rule_disable(rule, trigger):
    rule.enabled = False
    rule.save(update_fields=["enabled"])


def trigger_delete(rule, trigger):
    trigger.delete()


def source_delete(rule, trigger):
    trigger.source.delete()


@pytest.mark.parametrize("unwatch", [rule_disable, trigger_delete, source_delete])
def test_it_resolves_a_firing_alert_whose_rule_is_no_longer_watched(orders_table, channels, receiver, unwatch):
    trigger = failing_trigger(orders_table)
    rule = error_rule(trigger, [channels.webhook])
    now = timezone.now()
    evaluate_and_send(now=now)

    unwatch(rule, trigger)
    evaluate_and_send(now=now + timedelta(seconds=15))
    evaluate_and_send(now=now + timedelta(seconds=30))

    assert [r["json"]["kind"] for r in receiver.received] == ["fired", "resolved"]
    state = AlertState.objects.get(rule=rule)
    assert state.status == AlertState.Status.RESOLVED
    rule.refresh_from_db()
    assert rule.enabled is False
