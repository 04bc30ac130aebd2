import re

from django.contrib.auth import get_user_model
from playwright.sync_api import Page, expect

from audit.models import AuditEntry
from dashboard.roles import ADMIN, OPERATOR, ROLES, VIEWER, role_grant, roles_sync
from tests.browser.conftest import screenshot
from tests.browser_oidc.conftest import PROVIDER_NAME


def sign_in_at_provider(page: Page, *, login: str) -> None:
    """From Shardwatch's login page, through the provider's login and consent forms."""
    page.goto("/admin/login/?next=/")
    page.get_by_role("link", name=f"Sign in with {PROVIDER_NAME}").click()
    page.fill("input[name=login]", login)
    page.fill("input[name=password]", "any password: the provider's dev interactions take it")
    page.get_by_role("button", name="Sign-in").click()
    page.get_by_role("button", name="Continue").click()


def roles_of(username: str) -> set[str]:
    user = get_user_model().objects.get(username=username)
    return set(user.groups.filter(name__in=ROLES).values_list("name", flat=True))


def test_it_logs_in_through_the_provider_with_the_role_its_groups_map_to(page, oidc_provider, live_server_url):
    roles_sync()
    # alice was an Admin once; the provider now puts her in sw-viewers and sw-operators only.
    alice = get_user_model().objects.create_user("alice")
    role_grant(user=alice, role=ADMIN)

    sign_in_at_provider(page, login="alice")

    expect(page).to_have_url(f"{live_server_url}/")
    expect(page.locator("h1")).to_have_text("Streams")
    expect(page.get_by_role("button", name="Log out alice")).to_be_visible()
    screenshot(page, "overview")
    assert roles_of("alice") == {OPERATOR}
    alice.refresh_from_db()
    assert alice.email == "alice@example.com"
    assert not alice.has_usable_password()
    assert AuditEntry.objects.filter(action="auth.user.login", actor="alice").count() == 1


def test_it_refuses_a_user_whose_groups_map_to_no_role(page, oidc_provider, live_server_url):
    roles_sync()
    # A Viewer from an earlier login, whom the provider has since taken out of sw-viewers.
    mallory = get_user_model().objects.create_user("mallory")
    role_grant(user=mallory, role=VIEWER)

    sign_in_at_provider(page, login="mallory")

    expect(page).to_have_url(re.compile(r"/admin/login/$"))
    expect(page.locator(".messagelist")).to_contain_text(
        f"Your {PROVIDER_NAME} account is in no group that has a role in Shardwatch."
    )
    screenshot(page, "refused")
    assert roles_of("mallory") == set()
    assert not AuditEntry.objects.filter(action="auth.user.login").exists()
    assert AuditEntry.objects.filter(action="auth.user.login_failed", details__username="mallory").count() == 1
    page.goto("/")
    expect(page).to_have_url(f"{live_server_url}/admin/login/?next=/")


def test_it_offers_the_provider_and_the_password_form_on_the_login_page(page, oidc_provider, live_server_url):
    page.goto("/admin/login/?next=/")

    expect(page.get_by_role("link", name=f"Sign in with {PROVIDER_NAME}")).to_have_attribute(
        "href", "/oidc/authenticate/?next=/"
    )
    expect(page.locator("#login-form")).to_be_visible()


def test_it_never_takes_over_a_local_account_of_the_same_name(page, oidc_provider, live_server_url):
    roles_sync()
    local = get_user_model().objects.create_user("alice", password="a-long-local-password-1")
    role_grant(user=local, role=ADMIN)

    sign_in_at_provider(page, login="alice")

    expect(page).to_have_url(re.compile(r"/admin/login/$"))
    expect(page.locator(".messagelist")).to_contain_text("A local Shardwatch account is called alice")
    assert roles_of("alice") == {ADMIN}
    assert not AuditEntry.objects.filter(action="auth.user.login").exists()
    page.goto("/")
    expect(page).to_have_url(f"{live_server_url}/admin/login/?next=/")
