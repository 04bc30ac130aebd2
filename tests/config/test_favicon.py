"""The site's icon: an SVG in static/, linked from every page (the dashboard's and the admin's),
and /favicon.ico, which browsers and tools ask for whatever a page links, answered rather than
logged as a 404."""

import pytest
from django.contrib.auth.models import User

pytestmark = pytest.mark.django_db

ICON_LINK = '<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">'


def test_it_serves_the_svg_icon_and_sends_favicon_ico_to_it(client):
    icon = client.get("/static/favicon.svg")
    asked = client.get("/favicon.ico")

    assert icon.status_code == 200 and icon["Content-Type"].startswith("image/svg+xml")
    assert b"<svg" in b"".join(icon.streaming_content)
    assert asked.status_code == 301 and asked["Location"] == "/static/favicon.svg"


def test_it_links_the_icon_from_the_dashboard_and_the_admin(client):
    client.force_login(User.objects.create_superuser("root", "root@example.com", "a-long-password-1"))

    for path in ("/", "/triggers/", "/admin/", "/admin/login/"):
        assert ICON_LINK in client.get(path, follow=True).content.decode(), path
