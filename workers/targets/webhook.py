"""Webhook targets: the event POSTed to a URL, signed with a secret that the receiver holds.

A webhook target receives the event as ``POST`` with ``Content-Type: application/json`` and:

- ``X-Shardwatch-Timestamp``: unix seconds when the request was signed;
- ``X-Shardwatch-Signature``: ``v1=<hex HMAC-SHA256 of "<timestamp>.<body>" keyed with the secret>``;
- ``X-Shardwatch-Request-Id``: the invocation's request id (the same on a retry of the request).

To verify, recompute the HMAC over the raw body bytes as received, compare in constant time,
and reject old timestamps so a captured request cannot be replayed::

    import hashlib, hmac, time

    def verify(secret: str, headers, body: bytes, tolerance_s: int = 300) -> bool:
        timestamp = headers["X-Shardwatch-Timestamp"]
        if abs(time.time() - int(timestamp)) > tolerance_s:
            return False
        expected = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(headers["X-Shardwatch-Signature"], "v1=" + expected)

An answer with a 2xx status is a success, and its body is read as the function's response (for
example ``{"batchItemFailures": [{"itemIdentifier": "<SequenceNumber>"}]}``): an empty body is
no response, as a function returning None; a body that is not JSON is ``NOT_JSON``, which a
trigger with ReportBatchItemFailures reads as a malformed response (workers.responses
``batch_item_failures``). Redirects are not followed: a 3xx is a function error.
"""

import base64
import hashlib
import hmac
import secrets
import socket
import time
import urllib.error
import urllib.parse
import urllib.request

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings

from workers.models import MAX_PAYLOAD_BYTES, Outcome, Trigger
from workers.targets.base import InvokeResult, answer_read, body_truncate, result_too_large


class WebhookSecretUnreadable(Exception):
    """The stored secret was encrypted under another SECRET_KEY."""


def _fernet() -> Fernet:
    key = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"shardwatch webhook secret v1"
    ).derive(settings.SECRET_KEY.encode("utf-8"))
    return Fernet(base64.urlsafe_b64encode(key))


def webhook_secret_new() -> tuple[str, str]:
    """A new signing secret: (plain text to show the user once, encrypted form to store)."""
    plain = "whsec_" + secrets.token_urlsafe(32)
    return plain, _fernet().encrypt(plain.encode("utf-8")).decode("ascii")


def webhook_secret_decrypt(encrypted: str) -> str:
    """The plain secret from its stored form; WebhookSecretUnreadable when SECRET_KEY changed."""
    try:
        return _fernet().decrypt(encrypted.encode("ascii")).decode("utf-8")
    except (InvalidToken, UnicodeError) as exc:
        raise WebhookSecretUnreadable(
            "The webhook secret cannot be decrypted: it was stored under a different SECRET_KEY "
            "(or is damaged). Generate a new secret for this trigger and give it to the receiver."
        ) from exc


def webhook_signature(*, secret: str, timestamp: str, body: bytes) -> str:
    """The X-Shardwatch-Signature header: "v1=" and the hex HMAC-SHA256 of "<timestamp>.<body>"."""
    digest = hmac.new(secret.encode("utf-8"), timestamp.encode("ascii") + b"." + body, hashlib.sha256)
    return "v1=" + digest.hexdigest()


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    # urllib would turn a redirected POST into a GET without the body: the receiver would see
    # a request that is not the event. Make a 3xx an HTTPError instead.
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


_opener = urllib.request.build_opener(_NoRedirects)


def _read_limited(response) -> tuple[str, bool]:
    data = response.read(MAX_PAYLOAD_BYTES + 1)
    return data[:MAX_PAYLOAD_BYTES].decode("utf-8", errors="replace"), len(data) > MAX_PAYLOAD_BYTES


def _is_timeout(exc: BaseException) -> bool:
    return isinstance(exc, (TimeoutError, socket.timeout))


def webhook_invoke(*, trigger: Trigger, payload: bytes, request_id: str) -> InvokeResult:
    """POST the event, signed, to trigger.webhook_url; the answer's status and body say how it
    went (see the module's docstring). A URL that is not http(s) is never opened."""
    url = trigger.webhook_url
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        # urllib also opens file:// and ftp:// URLs; a webhook must never read local files.
        return InvokeResult(Outcome.FUNCTION_ERROR, None, "", "Shardwatch.BadWebhookUrl", f"Not an http(s) URL: {url!r}")
    if not trigger.webhook_secret_encrypted:
        return InvokeResult(Outcome.FUNCTION_ERROR, None, "", "Shardwatch.WebhookSecretMissing", "The trigger has no secret")
    try:
        secret = webhook_secret_decrypt(trigger.webhook_secret_encrypted)
    except WebhookSecretUnreadable as exc:
        return InvokeResult(Outcome.FUNCTION_ERROR, None, "", "Shardwatch.WebhookSecretUnreadable", str(exc))

    timestamp = str(int(time.time()))
    request = urllib.request.Request(
        url,
        data=payload,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "User-Agent": "Shardwatch",
            "X-Shardwatch-Timestamp": timestamp,
            "X-Shardwatch-Signature": webhook_signature(secret=secret, timestamp=timestamp, body=payload),
            "X-Shardwatch-Request-Id": request_id,
        },
    )
    # urllib's timeout applies to each socket operation (connect, each read), not to the whole
    # exchange: a receiver that trickles bytes can take longer than timeout_s in total.
    try:
        with _opener.open(request, timeout=trigger.timeout_s) as response:
            text, too_large = _read_limited(response)
    except urllib.error.HTTPError as exc:
        try:
            text, _ = _read_limited(exc)
        except Exception:
            text = ""
        return InvokeResult(
            Outcome.FUNCTION_ERROR, answer_read(text), body_truncate(text), f"HTTP {exc.code}", exc.reason or ""
        )
    except urllib.error.URLError as exc:
        if _is_timeout(exc.reason):
            return InvokeResult(Outcome.TIMEOUT, None, "", "Timeout", f"No answer within {trigger.timeout_s} s")
        reason = exc.reason
        name = type(reason).__name__ if isinstance(reason, BaseException) else "URLError"
        return InvokeResult(Outcome.FUNCTION_ERROR, None, "", name, str(reason))
    except OSError as exc:  # timeouts and resets while reading the answer
        if _is_timeout(exc):
            return InvokeResult(Outcome.TIMEOUT, None, "", "Timeout", f"No answer within {trigger.timeout_s} s")
        return InvokeResult(Outcome.FUNCTION_ERROR, None, "", type(exc).__name__, str(exc))
    except Exception as exc:  # http.client errors such as RemoteDisconnected, BadStatusLine
        return InvokeResult(Outcome.FUNCTION_ERROR, None, "", type(exc).__name__, str(exc))
    if too_large:
        return result_too_large(text)
    return InvokeResult(Outcome.SUCCESS, answer_read(text), body_truncate(text))
