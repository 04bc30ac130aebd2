"""workers.targets.webhook: the event POSTed, signed, to a real HTTP server on 127.0.0.1."""

import hashlib
import hmac
import json
import time

import orjson
import pytest

from tests.support.dynamodb_local import free_port
from tests.support.http_servers import QuietHandler, http_server
from tests.support.targets import EVENT, make_trigger
from workers.models import Trigger
from workers.targets import target_invoke
from workers.targets.webhook import WebhookSecretUnreadable, webhook_secret_decrypt, webhook_secret_new


def verify(secret: str, headers, body: bytes, tolerance_s: int = 300) -> bool:
    """The verification snippet from workers/targets/webhook.py's docstring, as a receiver would run it."""
    timestamp = headers["X-Shardwatch-Timestamp"]
    if abs(time.time() - int(timestamp)) > tolerance_s:
        return False
    expected = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(headers["X-Shardwatch-Signature"], "v1=" + expected)


class Receiver(QuietHandler):
    """A webhook receiver that checks signatures and answers as server.mode says."""

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
        if not verify(self.server.secret, self.headers, body):
            return self.answer(401, b"bad signature", content_type="text/plain")
        if self.server.mode == "ok":
            event = json.loads(body)
            failures = [{"itemIdentifier": event["Records"][-1]["dynamodb"]["SequenceNumber"]}]
            return self.answer_json(200, {"batchItemFailures": failures})
        if self.server.mode == "error":
            return self.answer(500, b"database is down", content_type="text/plain")
        if self.server.mode == "sleep":
            time.sleep(2)
            return self.answer(200, b"{}")



@pytest.fixture
def receiver():
    secret, encrypted = webhook_secret_new()
    with http_server(Receiver, secret=secret, encrypted=encrypted, mode="ok", requests=[]) as server:
        server.url += "/hooks/orders"
        yield server


def webhook_trigger(receiver, **fields) -> Trigger:
    return make_trigger(
        target="webhook", webhook_url=receiver.url, webhook_secret_encrypted=receiver.encrypted, **fields
    )


def test_it_posts_a_signed_event_and_parses_the_json_answer(receiver):
    result = target_invoke(trigger=webhook_trigger(receiver), payload=orjson.dumps(EVENT), request_id="req-5")

    assert result.outcome == "success"
    assert result.response == {"batchItemFailures": [{"itemIdentifier": "222"}]}
    assert json.loads(result.body) == result.response
    [request] = receiver.requests
    assert request["path"] == "/hooks/orders"
    assert json.loads(request["body"]) == EVENT
    assert request["headers"]["Content-Type"] == "application/json"
    assert request["headers"]["X-Shardwatch-Request-Id"] == "req-5"
    assert request["headers"]["X-Shardwatch-Signature"].startswith("v1=")


@pytest.mark.django_db
def test_it_posts_the_stored_records_as_the_event_the_invocation_page_shows(receiver, orders_table):
    from streams.lambda_event import lambda_event
    from tests.support.triggering import run_until_idle
    from workers.models import Invocation
    from workers.selectors import invocation_records

    orders_table.put("order#1", status="new")
    orders_table.put("order#1", status="paid")
    orders_table.ingest()
    trigger = Trigger.objects.create(
        name="orders-hook", source=orders_table, target="webhook", webhook_url=receiver.url,
        webhook_secret_encrypted=receiver.encrypted,
    )

    run_until_idle(trigger)

    [request] = receiver.requests
    [invocation] = Invocation.objects.filter(trigger=trigger)
    sent = json.loads(request["body"])
    assert sent == lambda_event(invocation_records(invocation=invocation))
    assert [record["eventName"] for record in sent["Records"]] == ["INSERT", "MODIFY"]
    assert sent["Records"][1]["dynamodb"]["OldImage"]["status"] == {"S": "new"}
    assert sent["Records"][1]["dynamodb"]["NewImage"]["status"] == {"S": "paid"}
    assert invocation.outcome == "success"


def test_it_reports_a_non_2xx_answer_as_a_function_error(receiver):
    receiver.mode = "error"

    result = target_invoke(trigger=webhook_trigger(receiver), payload=orjson.dumps(EVENT), request_id="req-6")

    assert result.outcome == "function_error"
    assert result.error_type == "HTTP 500"
    assert result.body == "database is down"
    assert len(receiver.requests) == 1


def test_it_is_rejected_by_a_receiver_holding_another_secret(receiver):
    _, other_encrypted = webhook_secret_new()
    trigger = webhook_trigger(receiver)
    trigger.webhook_secret_encrypted = other_encrypted

    result = target_invoke(trigger=trigger, payload=orjson.dumps(EVENT), request_id="req-7")

    assert (result.outcome, result.error_type, result.body) == ("function_error", "HTTP 401", "bad signature")


def test_it_times_out_a_webhook_that_answers_too_late(receiver):
    receiver.mode = "sleep"

    result = target_invoke(trigger=webhook_trigger(receiver, timeout_s=1), payload=orjson.dumps(EVENT), request_id="req-8")

    assert result.outcome == "timeout"
    assert 1000 <= result.duration_ms < 2000


def test_it_reports_a_refused_connection_as_a_function_error():
    _, encrypted = webhook_secret_new()
    trigger = make_trigger(
        target="webhook", webhook_url=f"http://127.0.0.1:{free_port()}/", webhook_secret_encrypted=encrypted
    )

    result = target_invoke(trigger=trigger, payload=orjson.dumps(EVENT), request_id="req-9")

    assert (result.outcome, result.error_type) == ("function_error", "ConnectionRefusedError")


def test_it_never_opens_a_non_http_url(tmp_path):
    _, encrypted = webhook_secret_new()
    secret_file = tmp_path / "secret.txt"
    secret_file.write_text("{}")
    trigger = make_trigger(target="webhook", webhook_url=secret_file.as_uri(), webhook_secret_encrypted=encrypted)

    result = target_invoke(trigger=trigger, payload=orjson.dumps(EVENT), request_id="req-10")

    assert (result.outcome, result.error_type) == ("function_error", "Shardwatch.BadWebhookUrl")


def test_it_stores_webhook_secrets_encrypted_and_reads_them_back():
    plain, encrypted = webhook_secret_new()

    assert plain not in encrypted
    assert webhook_secret_decrypt(encrypted) == plain
    assert webhook_secret_new()[0] != plain


def test_it_cannot_read_secrets_after_secret_key_rotation(settings, receiver):
    _, encrypted = webhook_secret_new()
    settings.SECRET_KEY = "a-rotated-secret-key-that-is-also-long-enough-9876543210"

    with pytest.raises(WebhookSecretUnreadable, match="different SECRET_KEY"):
        webhook_secret_decrypt(encrypted)
    result = target_invoke(trigger=webhook_trigger(receiver), payload=orjson.dumps(EVENT), request_id="req-11")
    assert (result.outcome, result.error_type) == ("function_error", "Shardwatch.WebhookSecretUnreadable")
    assert receiver.requests == []


# Lambda ---------------------------------------------------------------------------------------
