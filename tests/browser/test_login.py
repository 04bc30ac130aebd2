import re

from playwright.sync_api import expect

from tests.browser.conftest import PASSWORD, log_in, screenshot


def test_it_logs_in_through_the_login_form_and_shows_the_overview(page, owner, live_server_url):
    page.goto("/")
    expect(page).to_have_url(f"{live_server_url}/admin/login/?next=/")
    screenshot(page, "login")

    log_in(page, username="owner", password=PASSWORD)

    expect(page).to_have_url(f"{live_server_url}/")
    expect(page.locator("h1")).to_have_text("Streams")
    expect(page.get_by_role("button", name="Log out owner")).to_be_visible()
    # The stylesheet came through the live server: the page has its background.
    expect(page.locator("body")).to_have_css("background-color", "rgb(246, 247, 249)")
    screenshot(page, "overview")


def test_it_refuses_a_wrong_password(page, owner, live_server_url):
    page.goto("/")

    log_in(page, username="owner", password="not-" + PASSWORD)

    expect(page).to_have_url(re.compile(r"/admin/login/\?next=/$"))
    expect(page.locator(".errornote")).to_contain_text("Please enter the correct username and password")
    screenshot(page, "refused")
    page.goto("/")
    expect(page).to_have_url(f"{live_server_url}/admin/login/?next=/")
