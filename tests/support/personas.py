"""Who uses Shardwatch, for tests: one user per role (dashboard/roles.py), an outsider (logged
in, no role) and the anonymous visitor. tests/conftest.py makes fixtures of them."""

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.test import Client

from dashboard.roles import ADMIN, OPERATOR, VIEWER, role_grant, roles_sync

PASSWORD = "a-long-password-1"
# persona -> role (None: logged in, in no role). "anonymous" is a client that never logs in.
PERSONAS = {"viewer": VIEWER, "operator": OPERATOR, "admin": ADMIN, "outsider": None}


def persona_user(*, name: str, role: str | None, **fields):
    """A user called `name` in `role` (one of ROLES, or None for none), password PASSWORD."""
    user = get_user_model().objects.create_user(name, f"{name}@example.com", PASSWORD, **fields)
    if role:
        # A transactional test's flush empties the tables the data migration filled; Django
        # makes the permissions again after it (post_migrate), but not the groups.
        if not Group.objects.filter(name=role).exists():
            roles_sync()
        role_grant(user=user, role=role)
    return user


def persona_client(*, name: str, client: Client | None = None, enforce_csrf_checks: bool = False) -> Client:
    """A client logged in as persona `name` (a PERSONAS key) or, for "anonymous", not at all."""
    client = client or Client(enforce_csrf_checks=enforce_csrf_checks)
    if name != "anonymous":
        client.force_login(persona_user(name=name, role=PERSONAS[name]))
    return client
