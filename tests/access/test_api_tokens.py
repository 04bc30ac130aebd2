"""API tokens (dashboard/tokens.py) as a script uses them: made by a persona on
/settings/tokens/, then sent as `Authorization: Bearer <token>` by a client with no session.
A token carries its owner's permissions exactly, and opens only the JSON API and the exports."""

import hashlib
import json
import re
from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone

from audit.models import AuditEntry
from config.asgi import application
from dashboard.models import ApiToken
from dashboard.roles import OPERATOR, role_grant
from tests.access.test_every_url import streamed
from tests.support.personas import persona_client

pytestmark = pytest.mark.django_db

SECRET = re.compile(r'value="(swt_[A-Za-z0-9_-]+)"')


def token_made(client: Client, *, name="script", days="30") -> str:
    """The token the settings page shows once after `client` makes one."""
    response = client.post("/settings/tokens/", {"name": name, "expires_in_days": days})
    assert response.status_code == 200
    return SECRET.search(response.content.decode())[1]


def bearer(secret: str) -> Client:
    """A client with no session that sends `secret` on every request."""
    return Client(headers={"Authorization": f"Bearer {secret}"})


def owner(name: str):
    return get_user_model().objects.get(username=name)


def test_it_lets_a_viewers_token_read_the_api_and_refuses_it_the_export(world, viewer):
    script = bearer(token_made(viewer))

    records = script.get("/api/records")
    export = script.get("/export/records.ndjson")

    assert records.status_code == 200
    assert [row["id"] for row in records.json()["records"]] == [world.record.pk]
    assert script.get(f"/api/records/{world.record.pk}").status_code == 200
    assert script.get("/api/sources").status_code == 200
    assert export.status_code == 403
    assert "streams.export_changerecord" in export.json()["error"]


def test_it_lets_an_operators_token_export(world, operator):
    script = bearer(token_made(operator))

    response = script.get("/export/records.ndjson")

    assert response.status_code == 200
    lines = streamed(response).decode().splitlines()
    assert [json.loads(line)["id"] for line in lines] == [world.record.pk]
    csv = script.get("/export/records.csv")
    assert csv.status_code == 200 and str(world.record.sequence_number) in streamed(csv).decode()


def test_it_follows_its_owners_role_as_it_changes(world, viewer):
    script = bearer(token_made(viewer))
    assert script.get("/export/records.ndjson").status_code == 403

    role_grant(user=owner("viewer"), role=OPERATOR)

    response = script.get("/export/records.ndjson")
    assert response.status_code == 200
    streamed(response)


def expire(secret):
    ApiToken.objects.filter(digest=hashlib.sha256(secret.encode()).hexdigest()).update(
        expires_at=timezone.now() - timedelta(seconds=1))
    return f"Bearer {secret}"


def revoke_in_db(secret):
    ApiToken.objects.filter(digest=hashlib.sha256(secret.encode()).hexdigest()).update(revoked_at=timezone.now())
    return f"Bearer {secret}"


def deactivate_owner(secret):
    get_user_model().objects.filter(username="viewer").update(is_active=False)
    return f"Bearer {secret}"


REFUSED = {
    "expired": expire,
    "revoked": revoke_in_db,
    "owner inactive": deactivate_owner,
    "unknown": lambda secret: "Bearer swt_" + "A" * 43,
    "altered": lambda secret: "Bearer " + secret[:-1] + ("A" if secret[-1] != "A" else "B"),
    "malformed: no token": lambda secret: "Bearer",
    "malformed: another scheme": lambda secret: f"Basic {secret}",
    "malformed: no prefix": lambda secret: "Bearer " + secret.removeprefix("swt_"),
    "malformed: too long": lambda secret: f"Bearer {secret}{'x' * 200}",
}


@pytest.mark.parametrize("case", list(REFUSED))
@pytest.mark.parametrize("url", ["/api/records", "/export/records.ndjson"])
def test_it_answers_401_to_a_token_that_is_expired_revoked_unknown_or_malformed(world, case, url):
    viewer = persona_client(name="viewer")
    role_grant(user=owner("viewer"), role=OPERATOR)  # so that the export would be allowed
    secret = token_made(viewer)
    assert bearer(secret).get(url).status_code == 200

    response = Client(headers={"Authorization": REFUSED[case](secret)}).get(url)

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert response.json()["error"]


def test_it_answers_401_to_a_bad_token_even_with_a_session(world, viewer):
    viewer.defaults["HTTP_AUTHORIZATION"] = "Bearer swt_unknown"

    assert viewer.get("/api/records").status_code == 401


def test_it_keeps_no_token_in_clear(viewer):
    secret = token_made(viewer)

    token = ApiToken.objects.get(user__username="viewer")
    stored = json.dumps(list(ApiToken.objects.values()), default=str)
    assert secret not in stored and secret.removeprefix("swt_") not in stored
    assert token.digest == hashlib.sha256(secret.encode()).hexdigest()
    assert len(secret.removeprefix("swt_")) >= 43  # token_urlsafe(32): 256 random bits


def test_it_shows_the_token_once(viewer):
    response = viewer.post("/settings/tokens/", {"name": "nightly export", "expires_in_days": "7"})
    secret = SECRET.search(response.content.decode())[1]

    assert "no-store" in response.headers["Cache-Control"]
    page = viewer.get("/settings/tokens/").content.decode()
    assert "nightly export" in page and secret not in page and not SECRET.search(page)
    token = ApiToken.objects.get(user__username="viewer")
    assert token.name == "nightly export"
    assert timedelta(days=7) - (token.expires_at - token.created_at) < timedelta(seconds=5)


@pytest.mark.parametrize("days", ["0", "366", "", "soon"])
def test_it_wants_an_expiry_of_1_to_365_days(viewer, days):
    response = viewer.post("/settings/tokens/", {"name": "x", "expires_in_days": days})

    assert response.status_code == 400
    assert not ApiToken.objects.exists()


def test_it_refuses_a_token_made_without_the_csrf_token():
    viewer = persona_client(name="viewer", enforce_csrf_checks=True)

    response = viewer.post("/settings/tokens/", {"name": "x", "expires_in_days": "1"})

    assert response.status_code == 403
    assert not ApiToken.objects.exists()


def test_it_lets_no_other_user_revoke_a_token(world, viewer, operator):
    secret = token_made(viewer)
    token = ApiToken.objects.get(user__username="viewer")

    response = operator.post(f"/settings/tokens/{token.pk}/revoke")

    assert response.status_code == 404
    token.refresh_from_db()
    assert token.revoked_at is None
    assert bearer(secret).get("/api/records").status_code == 200


def test_it_lets_its_owner_revoke_it(world, viewer):
    secret = token_made(viewer)
    token = ApiToken.objects.get(user__username="viewer")

    response = viewer.post(f"/settings/tokens/{token.pk}/revoke")

    assert response.status_code == 302
    token.refresh_from_db()
    assert token.revoked_at is not None
    assert bearer(secret).get("/api/records").status_code == 401
    assert "revoked" in viewer.get("/settings/tokens/").content.decode()


def test_it_lets_an_admin_revoke_anyones_token_in_the_admin(world, viewer, admin):
    secret = token_made(viewer)
    token = ApiToken.objects.get(user__username="viewer")

    admin.post("/admin/dashboard/apitoken/", {"action": "revoke", "_selected_action": [token.pk]})

    token.refresh_from_db()
    assert token.revoked_at is not None
    assert bearer(secret).get("/api/records").status_code == 401


def test_it_notes_when_a_token_was_last_used(world, viewer):
    secret = token_made(viewer)
    assert ApiToken.objects.get(user__username="viewer").last_used_at is None

    bearer(secret).get("/api/sources")

    assert timezone.now() - ApiToken.objects.get(user__username="viewer").last_used_at < timedelta(seconds=5)


@pytest.mark.parametrize("url", ["/", "/feed/", "/settings/tokens/", "/admin/", "/admin/workers/trigger/"])
def test_it_opens_no_page_and_not_the_admin(admin, url):
    script = bearer(token_made(admin))

    response = script.get(url)

    assert response.status_code == 302 and response.headers["Location"].startswith("/admin/login/")


def test_it_does_not_stand_in_for_the_metrics_token(settings, viewer):
    settings.METRICS_TOKEN = "the-prometheus-token"

    assert bearer(token_made(viewer)).get("/metrics").status_code == 401
    assert bearer("the-prometheus-token").get("/metrics").status_code == 200


@pytest.mark.django_db(transaction=True)
def test_it_opens_no_websocket():
    secret = token_made(persona_client(name="admin"))
    headers = [(b"host", b"localhost"), (b"origin", b"http://localhost"), (b"authorization", f"Bearer {secret}".encode())]

    async def attempt():
        communicator = WebsocketCommunicator(application, "/ws/feed/", headers=headers)
        connected, code = await communicator.connect()
        await communicator.disconnect()
        return connected, code

    assert async_to_sync(attempt)() == (False, 4401)


def test_it_audits_making_and_revoking_a_token_without_its_secret(world, viewer, admin):
    before = AuditEntry.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    secret = token_made(viewer)
    token = ApiToken.objects.get(user__username="viewer")
    viewer.post(f"/settings/tokens/{token.pk}/revoke")
    second = token_made(viewer)
    admin.post("/admin/dashboard/apitoken/", {"action": "revoke", "_selected_action": [ApiToken.objects.latest("pk").pk]})

    entries = list(AuditEntry.objects.filter(pk__gt=before, action__startswith="dashboard.apitoken.").order_by("pk"))

    assert [(entry.action, entry.actor) for entry in entries] == [
        ("dashboard.apitoken.create", "viewer"), ("dashboard.apitoken.revoke", "viewer"),
        ("dashboard.apitoken.create", "viewer"), ("dashboard.apitoken.revoke", "admin"),
    ]
    assert all(secret not in str(entry.__dict__) and second not in str(entry.__dict__) for entry in entries)
