"""The users and groups admin for an Admin who is not a superuser (dashboard/admin.py): the
Admin role holds auth.change_user to hand out roles, and must not get from it a way to become
a superuser, to take one over, or to raise its own role."""

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission

from audit.models import AuditEntry
from dashboard.roles import ROLES
from tests.support.personas import PASSWORD, persona_user

pytestmark = pytest.mark.django_db
User = get_user_model()


def change_form(user, **fields):
    """What the user change form posts for `user` as it stands, with `fields` on top."""
    data = {
        "username": user.username, "first_name": "", "last_name": "", "email": user.email,
        "date_joined_0": user.date_joined.strftime("%Y-%m-%d"), "date_joined_1": "00:00:00",
        "last_login_0": "", "last_login_1": "",
        "groups": [str(pk) for pk in user.groups.values_list("pk", flat=True)],
    }
    if user.is_active:
        data["is_active"] = "on"
    data.update(fields)
    return data


def everything() -> list[str]:
    return [str(pk) for pk in Permission.objects.values_list("pk", flat=True)]


def test_it_does_not_let_an_admin_make_itself_superuser_or_staff_or_grant_itself_permissions(admin):
    me = User.objects.get(username="admin")
    response = admin.post(f"/admin/auth/user/{me.pk}/change/", change_form(
        me, first_name="Ada", is_superuser="on", is_staff="on", user_permissions=everything()))
    assert response.status_code == 302
    me = User.objects.get(pk=me.pk)
    assert me.first_name == "Ada"
    assert (me.is_superuser, me.is_staff, me.user_permissions.count()) == (False, False, 0)


def test_it_does_not_let_an_admin_make_another_user_superuser_or_staff(admin):
    other = persona_user(name="other", role="Viewer")
    response = admin.post(f"/admin/auth/user/{other.pk}/change/", change_form(
        other, is_superuser="on", is_staff="on", user_permissions=everything()))
    assert response.status_code == 302
    other = User.objects.get(pk=other.pk)
    assert (other.is_superuser, other.is_staff, other.user_permissions.count()) == (False, False, 0)


def test_it_offers_an_admin_only_the_roles_as_groups_and_keeps_the_other_groups(admin):
    wheel = Group.objects.create(name="wheel")
    wheel.permissions.set(Permission.objects.all())
    other = persona_user(name="other", role="Viewer")
    team = Group.objects.create(name="team")
    other.groups.add(team)

    form = admin.get(f"/admin/auth/user/{other.pk}/change/").context["adminform"].form
    assert sorted(form.fields["groups"].queryset.values_list("name", flat=True)) == sorted(ROLES)
    refused = admin.post(f"/admin/auth/user/{other.pk}/change/", change_form(other, groups=[str(wheel.pk)]))
    assert refused.status_code == 200 and "groups" in refused.context["adminform"].form.errors

    operator = Group.objects.get(name="Operator")
    assert admin.post(f"/admin/auth/user/{other.pk}/change/",
                      change_form(other, groups=[str(operator.pk)])).status_code == 302
    assert sorted(other.groups.values_list("name", flat=True)) == ["Operator", "team"]


def test_it_does_not_let_an_admin_change_its_own_roles(admin):
    me = User.objects.get(username="admin")
    viewer = Group.objects.get(name="Viewer")
    response = admin.post(f"/admin/auth/user/{me.pk}/change/", change_form(me, groups=[str(viewer.pk)]))
    assert response.status_code == 302
    assert list(me.groups.values_list("name", flat=True)) == ["Admin"]


def test_it_does_not_let_an_admin_change_delete_or_set_the_password_of_a_superuser(admin):
    root = User.objects.create_superuser("root", "root@example.com", PASSWORD)
    me = User.objects.get(username="admin")
    base = f"/admin/auth/user/{root.pk}"

    assert admin.post(f"{base}/change/", change_form(root, email="mine@example.com")).status_code == 403
    assert admin.get(f"{base}/password/").status_code == 403
    assert admin.post(f"{base}/password/", {"password1": "taken-over-1234", "password2": "taken-over-1234",
                                            "usable_password": "true"}).status_code == 403
    assert admin.post(f"{base}/delete/", {"post": "yes"}).status_code == 403
    admin.post("/admin/auth/user/", {"action": "delete_selected", "_selected_action": [str(root.pk)], "post": "yes"})

    root = User.objects.get(pk=root.pk)
    assert root.email == "root@example.com" and root.check_password(PASSWORD)
    # An ordinary user's password is still the Admin's to set, and its own.
    for user in (persona_user(name="other", role="Viewer"), me):
        response = admin.post(f"/admin/auth/user/{user.pk}/password/",
                              {"password1": "a-new-password-1", "password2": "a-new-password-1", "usable_password": "true"})
        assert response.status_code == 302


def test_it_leaves_a_groups_permissions_to_superusers(admin, client):
    me = User.objects.get(username="admin")
    # An installation that lets its admins edit groups still may not let them grow their own.
    me.user_permissions.add(Permission.objects.get(codename="change_group", content_type__app_label="auth"))
    group = Group.objects.get(name="Admin")
    held = set(group.permissions.values_list("pk", flat=True))
    response = admin.post(f"/admin/auth/group/{group.pk}/change/", {"name": "Admin", "permissions": everything()})
    assert response.status_code == 302
    assert set(group.permissions.values_list("pk", flat=True)) == held

    client.force_login(User.objects.create_superuser("root", "root@example.com", PASSWORD))
    client.post(f"/admin/auth/group/{group.pk}/change/", {"name": "Admin", "permissions": everything()})
    assert group.permissions.count() == Permission.objects.count()


def test_it_still_lets_a_superuser_make_a_superuser(client):
    client.force_login(User.objects.create_superuser("root", "root@example.com", PASSWORD))
    other = persona_user(name="other", role="Viewer")
    assert client.post(f"/admin/auth/user/{other.pk}/change/",
                       change_form(other, is_superuser="on", is_staff="on")).status_code == 302
    assert User.objects.get(pk=other.pk).is_superuser


def test_it_audits_no_change_when_a_user_is_saved_as_it_stands(admin):
    # The form's date and time widgets keep whole seconds only: were date_joined editable,
    # saving would shift it and audit a change nobody made.
    other = persona_user(name="other", role="Viewer")
    joined = User.objects.get(pk=other.pk).date_joined
    assert joined.microsecond  # as Django stamps it

    response = admin.post(f"/admin/auth/user/{other.pk}/change/", change_form(other))

    assert response.status_code == 302
    assert User.objects.get(pk=other.pk).date_joined == joined
    assert not AuditEntry.objects.filter(action="auth.user.change", target_id=str(other.pk)).exists()
