"""Create or reset the demo's users, one of each role (dashboard/roles.py): `viewer`,
`operator` and `admin`, each with a new random password, and print them.

There is deliberately no default password: a demo left running on a shared network must not
be open to anyone who has read the README. Each run invalidates the previous passwords.
"""

import secrets
from urllib.parse import urljoin

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.urls import reverse

from dashboard.roles import ADMIN, OPERATOR, VIEWER, role_grant, roles_sync

USERNAME = "admin"
# username -> role, in the order they are printed.
DEMO_USERS = {"viewer": VIEWER, "operator": OPERATOR, USERNAME: ADMIN}


def demo_user_reset(*, username: str, role: str) -> str:
    """Make `username` an active user of `role` alone (no superuser: the role's permissions are
    what the demo shows) with a fresh random password; return the password. Every role reaches
    the admin (config/admin.py); only the Admin is staff, as an upgrade would have made it
    (dashboard/migrations/0001_roles.py)."""
    password = secrets.token_urlsafe(18)
    User = get_user_model()
    with transaction.atomic():
        user, _ = User.objects.select_for_update().get_or_create(username=username)
        user.is_active = True
        user.is_staff = role == ADMIN
        user.is_superuser = False
        user.set_password(password)
        user.save()
        role_grant(user=user, role=role)
    return password


class Command(BaseCommand):
    help = "Create or reset the users viewer, operator and admin (one of each role) with new random passwords and print them."

    def add_arguments(self, parser):
        parser.add_argument("--url", default="http://127.0.0.1:8000/", help="Where the dashboard is served.")

    def handle(self, *args, url, **options):
        if not settings.DEBUG:
            # Resetting a password nobody asked to change is fine for a demo, not for production.
            raise CommandError("demo_admin only runs with DEBUG=1. In production use createsuperuser or changepassword.")
        # The roles' groups are the data migration's; making them again costs nothing and
        # repairs a demo database whose groups someone edited.
        roles_sync()
        for username, role in DEMO_USERS.items():
            password = demo_user_reset(username=username, role=role)
            self.stdout.write(f"{role} user: {username}  password: {password}")
        base = url if url.endswith("/") else url + "/"
        self.stdout.write(f"Log in at {urljoin(base, reverse('admin:login'))}  (dashboard: {base})")
