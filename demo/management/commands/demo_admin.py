"""Create or reset the demo's `admin` superuser with a new random password, and print it.

There is deliberately no default password: a demo left running on a shared network must not
be open to anyone who has read the README. Each run invalidates the previous password.
"""

import secrets
from urllib.parse import urljoin

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.urls import reverse

USERNAME = "admin"


def admin_reset(*, username: str = USERNAME) -> str:
    """Make `username` an active superuser with a fresh random password; return the password."""
    password = secrets.token_urlsafe(18)
    User = get_user_model()
    with transaction.atomic():
        user, _ = User.objects.select_for_update().get_or_create(username=username)
        user.is_active = True
        user.is_staff = True
        user.is_superuser = True
        user.set_password(password)
        user.save()
    return password


class Command(BaseCommand):
    help = "Create or reset the superuser 'admin' with a new random password and print it."

    def add_arguments(self, parser):
        parser.add_argument("--url", default="http://127.0.0.1:8000/", help="Where the dashboard is served.")

    def handle(self, *args, url, **options):
        if not settings.DEBUG:
            # Resetting a password nobody asked to change is fine for a demo, not for production.
            raise CommandError("demo_admin only runs with DEBUG=1. In production use createsuperuser or changepassword.")
        password = admin_reset()
        base = url if url.endswith("/") else url + "/"
        self.stdout.write(f"Admin user: {USERNAME}  password: {password}")
        self.stdout.write(f"Log in at {urljoin(base, reverse('admin:login'))}  (dashboard: {base})")
