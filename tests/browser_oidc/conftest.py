"""The OIDC login in Chromium against a real OpenID Connect provider: the npm `oidc-provider`
package (tests/support/oidc_provider.mjs), started by the tests as a node process.

A package of its own because the live server (tests/browser/conftest.py) is forked once per
package and sees the settings of that moment: here they turn OIDC on, pointing at the provider.
The provider's port is chosen before the server starts (Django must know the issuer), and the
provider starts after it (the client's redirect URI names the server's port)."""

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.test import override_settings

from tests.browser.conftest import (  # noqa: F401 (fixtures and the failure hook, for this package)
    browser,
    browser_context_args,
    live_server_running,
    live_server_url,
    page,
    pytest_runtest_makereport,
)
from tests.support.dynamodb_local import free_port

ROOT = Path(__file__).resolve().parent.parent.parent
PROVIDER_SCRIPT = ROOT / "tests" / "support" / "oidc_provider.mjs"
PROVIDER_NAME = "Test IdP"
CLIENT_ID = "shardwatch"
CLIENT_SECRET = "a-client-secret-for-the-tests-only"
ROLE_MAP = {"sw-viewers": "Viewer", "sw-operators": "Operator", "sw-admins": "Admin"}


@pytest.fixture(scope="package")
def oidc_issuer() -> str:
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture(scope="package")
def asgi_live_server(oidc_issuer, django_db_setup, django_db_blocker) -> Iterator[str]:
    """The live server with OIDC on, and local accounts too."""
    oidc = override_settings(
        OIDC_ISSUER=oidc_issuer,
        OIDC_RP_CLIENT_ID=CLIENT_ID,
        OIDC_RP_CLIENT_SECRET=CLIENT_SECRET,
        OIDC_PROVIDER_NAME=PROVIDER_NAME,
        OIDC_RP_SCOPES="openid email profile groups",
        OIDC_ROLE_MAP=ROLE_MAP,
        AUTHENTICATION_BACKENDS=["config.oidc.ShardwatchOIDCBackend", "django.contrib.auth.backends.ModelBackend"],
    )
    with oidc, live_server_running(django_db_blocker=django_db_blocker) as url:
        yield url


@pytest.fixture(scope="package")
def oidc_provider(asgi_live_server, oidc_issuer) -> Iterator[str]:
    """node tests/support/oidc_provider.mjs on the issuer's port; yields the issuer."""
    port = oidc_issuer.rsplit(":", 1)[1]
    process = subprocess.Popen(
        ["node", str(PROVIDER_SCRIPT), port, f"{asgi_live_server}/oidc/callback/", CLIENT_ID, CLIENT_SECRET],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        seen = []
        for line in process.stdout:
            seen.append(line)
            if line.startswith("ready "):
                break
        else:
            raise RuntimeError("The OIDC provider did not start:\n" + "".join(seen))
        yield oidc_issuer
    finally:
        process.terminate()
        process.wait(timeout=10)
