"""Sending alerts to channels: a signed JSON webhook, a Slack-compatible incoming webhook, or
email through Django's email backend.

The webhook is signed exactly as a webhook trigger's request (workers.targets.webhook, whose
docstring shows how to verify it): ``X-Shardwatch-Timestamp`` and ``X-Shardwatch-Signature:
v1=<hex HMAC-SHA256 of "<timestamp>.<body>">``, with ``X-Shardwatch-Delivery-Id``. Its body:

    {"alert": rule name, "rule_id", "condition", "kind": "fired"|"repeated"|"resolved"|"test",
     "status": "firing"|"resolved", "subject", "subject_label", "summary", "details", "at"
     (ISO 8601), "url" (the Alerts page)}

A Slack incoming webhook gets {"text": ...} (Slack's "Sending messages using incoming
webhooks"), which Mattermost, Rocket.Chat and Discord's /slack endpoint also take; its words
are escaped (slack_escape), so the only markup in it is its own link.
"""

import http.client
import json
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.core.mail import send_mail
from django.db.models import F, Q
from django.urls import reverse
from django.utils import timezone

from alerts.conditions import link
from alerts.models import AlertTransition, Channel, Delivery, details_links
from streams.backoff import backoff_delay
from workers.targets.webhook import WebhookSecretUnreadable, webhook_secret_decrypt, webhook_signature

# Each socket operation of a send (connect, write, read) times out after this.
SEND_TIMEOUT_S = 10
# A claimed send is someone's for this long; after that a sweep may take it again.
CLAIM_S = 60
# The whole of an HTTP send is cut after this, well inside its claim, so a send is never
# still in flight when another sender may claim it.
SEND_DEADLINE_S = 30
RETRY_BASE_S = 5.0
RETRY_CAP_S = 900.0


class SendFailed(Exception):
    """A channel did not take the alert; the message says why, as the page shows it."""


@dataclass(frozen=True)
class Sent:
    sent: bool
    retry_in_s: float | None = None  # when the caller should try again; None: done or not ours


def delivery_claimed(*, now) -> Q:
    """Deliveries that a sender has claimed and may be sending at `now`: still pending, with
    the claim's next_attempt_at (its last_attempt_at + CLAIM_S) to come. One waiting out a
    backoff is not: a failure sets next_attempt_at from its own time and delay."""
    return Q(status=Delivery.Status.PENDING, next_attempt_at__gt=now,
             next_attempt_at=F("last_attempt_at") + timedelta(seconds=CLAIM_S))


def retry_delay_s(*, attempts: int) -> float:
    """Seconds before the next attempt after `attempts` failed ones: exponential, jittered."""
    return backoff_delay(attempt=attempts, base_s=RETRY_BASE_S, cap_s=RETRY_CAP_S, doublings=10, low_s=1.0)


def alert_document(*, transition: AlertTransition) -> dict:
    """What a notification says, as the webhook's JSON body."""
    state, rule = transition.state, transition.rule
    return {
        "alert": rule.name,
        "rule_id": rule.pk,
        "condition": rule.condition,
        "kind": transition.kind,
        "status": "resolved" if transition.kind == AlertTransition.Kind.RESOLVED else "firing",
        "subject": state.subject,
        "subject_label": state.subject_label,
        "summary": transition.summary,
        "details": transition.details,
        "at": transition.at.isoformat(),
        "url": link(path=reverse("dashboard:alerts")),
    }


def _title(document: dict) -> str:
    what = {"fired": "FIRING", "repeated": "STILL FIRING", "resolved": "RESOLVED", "test": "TEST"}[document["kind"]]
    subject = f" — {document['subject_label']}" if document["subject_label"] else ""
    return f"[Shardwatch] {what}: {document['alert']}{subject}"


def slack_escape(text: str) -> str:
    """`text` as Slack's mrkdwn shows it literally: &, < and > escaped as &amp;, &lt; and &gt;
    (Slack, "Formatting text for app surfaces", Escaping text), so names and messages from
    tables or handlers ("<!channel>") never become mentions or links."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class _Connections:
    """The HTTP(S) connections an opener makes, so that a timer can cut them at the deadline."""

    def __init__(self):
        self.made: list[http.client.HTTPConnection] = []
        # Set by cut(): whatever the send raises next (a reset, a half-read status line) is the
        # deadline's doing, and says so.
        self.was_cut = threading.Event()

    def make(self, connection_class):
        def connection(*args, **kwargs):
            made = connection_class(*args, **kwargs)
            self.made.append(made)
            return made
        return connection

    def cut(self) -> None:
        self.was_cut.set()
        for made in self.made:
            if made.sock is not None:
                try:
                    # shutdown, not close: it wakes a recv blocked in another thread.
                    made.sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


class _HTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, connections: _Connections):
        super().__init__()
        self.connections = connections

    def http_open(self, req):
        return self.do_open(self.connections.make(http.client.HTTPConnection), req)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, connections: _Connections):
        super().__init__()
        self.connections = connections

    def https_open(self, req):
        return self.do_open(self.connections.make(http.client.HTTPSConnection), req, context=self._context)


def _post(url: str, body: bytes, headers: dict) -> None:
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise SendFailed(f"Not an http(s) URL: {url!r}")
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": "application/json", "User-Agent": "Shardwatch", **headers})
    # urlopen's timeout is per socket operation: a receiver that trickles its answer a byte at
    # a time would hold the send past its claim (CLAIM_S), and a sweep would send it again.
    # So the whole exchange is cut at SEND_DEADLINE_S.
    connections = _Connections()
    opener = urllib.request.build_opener(_HTTPHandler(connections), _HTTPSHandler(connections))
    timer = threading.Timer(SEND_DEADLINE_S, connections.cut)
    timer.daemon = True
    timer.start()
    started = time.monotonic()
    try:
        with opener.open(request, timeout=SEND_TIMEOUT_S) as response:
            try:
                response.read(65536)
            except (OSError, http.client.HTTPException):
                pass  # a 2xx status says the alert was taken, whatever the body does after it
    except urllib.error.HTTPError as exc:
        raise SendFailed(f"HTTP {exc.code} {exc.reason or ''}".strip()) from None
    except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as exc:
        if connections.was_cut.is_set() or time.monotonic() - started >= SEND_DEADLINE_S:
            raise SendFailed(f"No answer within {SEND_DEADLINE_S:g} s") from None
        if isinstance(exc, urllib.error.URLError):
            raise SendFailed(f"{type(exc.reason).__name__}: {exc.reason}") from None
        raise SendFailed(f"{type(exc).__name__}: {exc}") from None
    finally:
        timer.cancel()


def channel_send(*, channel: Channel, document: dict, delivery_id: str = "") -> None:
    """Send one alert document to `channel`. SendFailed says why it was not taken."""
    if channel.kind == Channel.Kind.WEBHOOK:
        try:
            secret = webhook_secret_decrypt(channel.secret_encrypted)
        except WebhookSecretUnreadable as exc:
            raise SendFailed(str(exc)) from None
        body = json.dumps(document, separators=(",", ":")).encode()
        timestamp = str(int(time.time()))
        _post(channel.url, body, {
            "X-Shardwatch-Timestamp": timestamp,
            "X-Shardwatch-Signature": webhook_signature(secret=secret, timestamp=timestamp, body=body),
            "X-Shardwatch-Delivery-Id": delivery_id,
        })
    elif channel.kind == Channel.Kind.SLACK:
        text = f"*{slack_escape(_title(document))}*\n{slack_escape(document['summary'])}\n<{document['url']}|Alerts page>"
        _post(channel.url, json.dumps({"text": text}).encode(), {})
    elif channel.kind == Channel.Kind.EMAIL:
        links = "\n".join(f"{label}: {url}" for label, url in details_links(details=document["details"]))
        body = f"{document['summary']}\n\n{links}\n\nAlerts: {document['url']}\nAt: {document['at']}\n"
        try:
            send_mail(_title(document), body, settings.DEFAULT_FROM_EMAIL, channel.addresses, fail_silently=False)
        except Exception as exc:  # smtplib's errors, socket errors and timeouts alike
            raise SendFailed(f"{type(exc).__name__}: {exc}") from None
    else:
        raise SendFailed(f"Unknown channel kind {channel.kind!r}")


def delivery_send(*, delivery_id: int, now=None) -> Sent:
    """Send a pending delivery that is due, if this caller claims it (a conditional UPDATE
    that moves next_attempt_at CLAIM_S on, so nobody else sends it meanwhile). A failure is
    stored with the time of the next attempt (exponential backoff), until MAX_ATTEMPTS, when
    the delivery is given up as failed. A delivery superseded by a newer transition of its
    alert is never claimed, so never sent. Returns whether it was sent and when to retry."""
    now = now or timezone.now()
    claimed = Delivery.objects.filter(
        pk=delivery_id, status=Delivery.Status.PENDING, next_attempt_at__lte=now
    ).update(next_attempt_at=now + timedelta(seconds=CLAIM_S), attempts=F("attempts") + 1, last_attempt_at=now)
    if claimed != 1:
        return Sent(sent=False)
    delivery = Delivery.objects.select_related("channel", "transition__state", "transition__rule").get(pk=delivery_id)
    try:
        channel_send(channel=delivery.channel, document=alert_document(transition=delivery.transition),
                     delivery_id=str(delivery.pk))
    except SendFailed as exc:
        # Only while still pending: a newer transition may have superseded it meanwhile.
        still_pending = Delivery.objects.filter(pk=delivery_id, status=Delivery.Status.PENDING)
        newer = Delivery.objects.filter(transition__state_id=delivery.transition.state_id,
                                        channel_id=delivery.channel_id, pk__gt=delivery.pk)
        if newer.exists():
            # A newer transition was made while this was in flight (and so was left pending):
            # a retry would land after the newer word, so this one ends here.
            still_pending.update(status=Delivery.Status.SUPERSEDED, next_attempt_at=None, last_error=str(exc)[:4000])
            return Sent(sent=False)
        if delivery.attempts >= Delivery.MAX_ATTEMPTS:
            still_pending.update(status=Delivery.Status.FAILED, next_attempt_at=None, last_error=str(exc)[:4000])
            return Sent(sent=False)
        delay = retry_delay_s(attempts=delivery.attempts)
        if not still_pending.update(next_attempt_at=timezone.now() + timedelta(seconds=delay),
                                    last_error=str(exc)[:4000]):
            Delivery.objects.filter(pk=delivery_id).update(last_error=str(exc)[:4000])
            return Sent(sent=False)
        return Sent(sent=False, retry_in_s=delay)
    Delivery.objects.filter(pk=delivery_id).update(status=Delivery.Status.SENT, sent_at=timezone.now(),
                                                   next_attempt_at=None)
    return Sent(sent=True)


def channel_test(*, channel: Channel) -> str:
    """Send a test notification to `channel` now; returns "" when it was taken, else why not."""
    now = timezone.now()
    document = {
        "alert": "Test notification", "rule_id": None, "condition": "", "kind": "test", "status": "firing",
        "subject": "", "subject_label": channel.name,
        "summary": f"A test of the channel {channel.name}, sent from the admin. Nothing is wrong.",
        "details": {}, "at": now.isoformat(), "url": link(path=reverse("dashboard:alerts")),
    }
    try:
        channel_send(channel=channel, document=document, delivery_id=f"test-{int(now.timestamp())}")
    except SendFailed as exc:
        return str(exc)
    return ""
