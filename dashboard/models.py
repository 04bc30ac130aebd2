"""The dashboard's own rows: API tokens (dashboard/tokens.py makes, checks and revokes them).
The dashboard is the layer that authenticates requests, so the tokens live here and no lower
layer knows of them."""

from django.conf import settings
from django.db import models


class ApiTokenQuerySet(models.QuerySet):
    def usable(self, *, now):
        """Tokens that authenticate at `now`: not revoked, not expired, their owner active."""
        return self.filter(revoked_at=None, expires_at__gt=now, user__is_active=True)


class ApiToken(models.Model):
    """A bearer token for the JSON API and the exports, acting as `user` with exactly the
    user's permissions. Only `digest`, the hex SHA-256 of the token, is kept: the token itself
    is shown once, when it is made."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, help_text="What the token is for, as its owner named it.")
    digest = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = ApiTokenQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "API token"

    def __str__(self):
        return f"{self.name} ({self.user.get_username()})"
