"""The roles themselves: the groups the data migration makes, what an upgrade does to the users
that were there before, logging in, and the demo's users."""

import re
from io import StringIO

import pytest
from django.contrib.auth import authenticate, get_user_model
from django.contrib.auth.models import Group, Permission
from django.core.management import call_command
from django.test import Client

from dashboard.roles import ROLE_PERMISSIONS, ROLES, roles_sync
from tests.support.personas import PASSWORD, persona_user

pytestmark = pytest.mark.django_db


def held(group: Group) -> set[str]:
    return {f"{perm.content_type.app_label}.{perm.codename}" for perm in group.permissions.select_related("content_type")}


def test_it_gives_each_role_exactly_its_permissions_and_knows_every_one_named():
    assert roles_sync() == {}
    assert {group.name: held(group) for group in Group.objects.filter(name__in=ROLES)} == {
        role: set(names) for role, names in ROLE_PERMISSIONS.items()
    }


def test_it_builds_each_role_on_the_one_below():
    viewer, operator, admin = (set(ROLE_PERMISSIONS[role]) for role in ROLES)
    assert viewer < operator < admin
    assert operator - viewer == {"workers.operate_trigger", "workers.retry_deadletter", "alerts.silence_alertstate",
                                 "streams.export_changerecord"}
    assert "streams.view_unmasked_changerecord" in admin - operator


def test_it_places_the_users_of_before_roles_granting_no_more_than_they_had(capsys):
    call_command("migrate", "dashboard", "zero", verbosity=0)
    User = get_user_model()
    root = User.objects.create_superuser("root", "root@example.com", PASSWORD)
    staff = User.objects.create_user("staff", password=PASSWORD, is_staff=True)
    configurer = User.objects.create_user("configurer", password=PASSWORD, is_staff=True)
    configurer.user_permissions.add(*Permission.objects.filter(codename__in=["add_streamsource", "change_streamsource"]))
    in_group = User.objects.create_user("in_group", password=PASSWORD, is_staff=True)
    editors = Group.objects.create(name="trigger editors")
    editors.permissions.add(*Permission.objects.filter(codename__in=["add_trigger", "change_trigger"]))
    in_group.groups.add(editors)
    # Holding the permissions is not enough without the admin's door, nor half of them with it.
    not_staff = User.objects.create_user("not_staff", password=PASSWORD)
    not_staff.user_permissions.add(*Permission.objects.filter(codename__in=["add_trigger", "change_trigger"]))
    half = User.objects.create_user("half", password=PASSWORD, is_staff=True)
    half.user_permissions.add(Permission.objects.get(codename="change_streamsource"))
    reader = User.objects.create_user("reader", password=PASSWORD)
    gone = User.objects.create_user("gone", password=PASSWORD, is_active=False)
    capsys.readouterr()

    call_command("migrate", "dashboard", verbosity=0)

    def roles(user):
        return sorted(User.objects.get(pk=user.pk).groups.filter(name__in=ROLES).values_list("name", flat=True))

    users = (root, staff, configurer, in_group, not_staff, half, reader, gone)
    assert {user.username: roles(user) for user in users} == {
        "root": [], "staff": ["Viewer"], "configurer": ["Admin"], "in_group": ["Admin"], "not_staff": ["Viewer"],
        "half": ["Viewer"], "reader": ["Viewer"], "gone": [],
    }
    assert User.objects.get(pk=root.pk).has_perm("streams.view_unmasked_changerecord")
    assert User.objects.get(pk=configurer.pk).has_perm("workers.change_trigger")
    staff = User.objects.get(pk=staff.pk)
    assert staff.has_perm("streams.view_changerecord") and not staff.has_perm("auth.change_user")
    printed = capsys.readouterr().out
    assert "configurer -> Admin" in printed and "staff -> Viewer" in printed and "root" not in printed


def log_in(username):
    client = Client()
    response = client.post("/admin/login/?next=/", {"username": username, "password": PASSWORD})
    return client, response


@pytest.mark.parametrize("role", ROLES)
def test_it_logs_in_every_role_through_the_login_page(role):
    persona_user(name="someone", role=role)
    client, response = log_in("someone")
    assert response.status_code == 302 and response.headers["Location"] == "/"
    assert client.get("/").status_code == 200


def test_it_refuses_a_login_to_a_user_with_no_role():
    persona_user(name="outsider", role=None)
    client, response = log_in("outsider")
    assert response.status_code == 200
    assert "This account has no role in Shardwatch" in response.content.decode()
    assert client.get("/").status_code == 302


def test_it_hides_the_actions_a_role_may_not_take_from_the_pages(world, viewer, operator):
    seen = [("silence-form" in client.get("/alerts/").content.decode(),
             "feed-export-csv" in client.get("/feed/").content.decode()) for client in (viewer, operator)]
    assert seen == [(False, False), (True, True)]


def test_it_shows_the_alert_banner_to_roles_only(world, viewer, outsider):
    assert viewer.get("/api/alerts/firing").json()["count"] == 1
    assert outsider.get("/api/alerts/firing").status_code == 403


def test_it_makes_one_demo_user_of_each_role_and_prints_their_passwords(settings):
    settings.DEBUG = True
    out = StringIO()
    call_command("demo_admin", "--url", "http://127.0.0.1:8123/", stdout=out)

    printed = dict(re.findall(r"^(?:Viewer|Operator|Admin) user: (\w+)  password: (\S+)$", out.getvalue(), re.MULTILINE))
    assert sorted(printed) == ["admin", "operator", "viewer"]
    roles = {}
    for username, password in printed.items():
        user = authenticate(username=username, password=password)
        roles[username] = list(user.groups.values_list("name", flat=True))
        assert not user.is_superuser
    assert roles == {"viewer": ["Viewer"], "operator": ["Operator"], "admin": ["Admin"]}


def test_it_tells_a_user_refused_a_page_why_and_who_they_are(viewer):
    page = viewer.get("/audit/")
    unmasked = viewer.get("/feed/", {"unmasked": "1"})

    assert page.status_code == 403 and unmasked.status_code == 403
    text = page.content.decode()
    assert "Your role does not allow this page" in text and "with the role Viewer" in text
    assert "needs the Admin role" in unmasked.content.decode()
