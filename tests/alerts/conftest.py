import pytest

from alerts.models import Channel
from tests.support.alert_receivers import alert_receiver, smtp_inbox
from workers.targets.webhook import webhook_secret_new


@pytest.fixture
def receiver():
    with alert_receiver() as server:
        yield server


@pytest.fixture
def inbox(settings):
    """A real SMTP server, and Django's SMTP email backend pointed at it (pytest-django puts
    the in-memory backend in place otherwise)."""
    with smtp_inbox() as server:
        settings.MAILERS = {"default": {"BACKEND": "django.core.mail.backends.smtp.EmailBackend",
                                        "OPTIONS": {"host": "127.0.0.1", "port": server.port, "timeout": 5}}}
        yield server


@pytest.fixture
def channels(receiver, inbox):
    """One channel of each kind: a signed webhook and a Slack webhook posting to `receiver`
    (paths /hook and /slack), and email to two addresses through `inbox`. `.secret` is the
    webhook's signing secret in clear."""
    secret, encrypted = webhook_secret_new()
    webhook = Channel.objects.create(name="hook", kind=Channel.Kind.WEBHOOK, url=receiver.url + "/hook",
                                     secret_encrypted=encrypted)
    slack = Channel.objects.create(name="slack", kind=Channel.Kind.SLACK, url=receiver.url + "/slack")
    email = Channel.objects.create(name="mail", kind=Channel.Kind.EMAIL, email_to="oncall@example.com, lead@example.com")

    class Channels:
        pass

    found = Channels()
    found.webhook, found.slack, found.email, found.secret = webhook, slack, email, secret
    found.all = [webhook, slack, email]
    return found
