"""OIDC login's settings and switches (config/oidc.py): the role map, the login page's ways in,
LOCAL_LOGIN=off, discovery. The whole login against a real provider is tests/browser_oidc."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from config.env import env_mapping
from config.oidc import oidc_endpoints, oidc_role
from dashboard.roles import ROLES
from tests.support.http_servers import QuietHandler, http_server
from tests.support.personas import PASSWORD, persona_user

ROOT = Path(__file__).resolve().parents[2]
ROLE_MAP = {"sw-viewers": "Viewer", "sw-operators": "Operator", "sw-admins": "Admin"}
OIDC_ONLY = {
    "LOCAL_LOGIN": False,
    "OIDC_ISSUER": "http://127.0.0.1:9",
    "OIDC_PROVIDER_NAME": "Example IdP",
    "AUTHENTICATION_BACKENDS": ["config.oidc.ShardwatchOIDCBackend"],
}


def test_it_reads_the_role_map_and_refuses_a_bad_one(monkeypatch):
    monkeypatch.setenv("SW_MAP", " sw-viewers=viewer, sw-admins = Admin,")
    assert env_mapping("SW_MAP", values=ROLES) == {"sw-viewers": "Viewer", "sw-admins": "Admin"}
    for bad, message in [
        ("sw-viewers=Root", "'Root' \\(for 'sw-viewers'\\) is not one of Viewer, Operator, Admin"),
        ("sw-viewers", "'sw-viewers' is not key=value"),
        ("a=Viewer,a=Admin", "'a' is given twice"),
    ]:
        monkeypatch.setenv("SW_MAP", bad)
        with pytest.raises(ImproperlyConfigured, match=message):
            env_mapping("SW_MAP", values=ROLES)


@override_settings(OIDC_ROLES_CLAIM="groups", OIDC_ROLE_MAP=ROLE_MAP)
def test_it_maps_the_claim_to_the_highest_role_it_names():
    assert oidc_role(claims={"groups": ["sw-viewers", "sw-admins", "other"]}) == "Admin"
    assert oidc_role(claims={"groups": "sw-operators"}) == "Operator"
    assert oidc_role(claims={"groups": ["other"]}) is None
    assert oidc_role(claims={}) is None


@pytest.mark.django_db
def test_it_offers_only_the_password_form_while_oidc_is_off(client):
    response = client.get("/admin/login/?next=/")

    assert b'id="login-form"' in response.content
    assert b"Sign in with" not in response.content


@pytest.mark.django_db
@override_settings(**OIDC_ONLY)
def test_it_offers_only_the_provider_and_refuses_passwords_when_local_login_is_off(client):
    persona_user(name="viewer", role="Viewer")

    page = client.get("/admin/login/?next=/")
    posted = client.post("/admin/login/?next=/", {"username": "viewer", "password": PASSWORD, "next": "/"})

    assert b'href="/oidc/authenticate/?next=/"' in page.content
    assert b"Sign in with Example IdP" in page.content
    assert b'id="login-form"' not in page.content
    assert posted.status_code == 403
    assert client.get("/").status_code == 302


def test_it_stops_at_start_up_when_nobody_could_log_in():
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings", "LOCAL_LOGIN": "off", "OIDC_ISSUER": ""}
    result = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert "LOCAL_LOGIN is off and OIDC_ISSUER is not set" in result.stderr


class Discovery(QuietHandler):
    def do_GET(self):
        self.answer_json(200, self.server.document)


def test_it_refuses_a_discovery_document_that_names_another_issuer():
    with http_server(Discovery, document={}) as server:
        issuer = server.url
        server.document = {"issuer": "https://elsewhere.example", "authorization_endpoint": f"{issuer}/auth"}
        with pytest.raises(ImproperlyConfigured, match="names the issuer 'https://elsewhere.example'"):
            oidc_endpoints(issuer=issuer)
        server.document = {"issuer": issuer, "authorization_endpoint": f"{issuer}/auth"}
        with pytest.raises(ImproperlyConfigured, match="does not give token_endpoint, userinfo_endpoint, jwks_uri"):
            oidc_endpoints(issuer=issuer)
