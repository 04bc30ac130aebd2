"""API tokens: made by a logged-in user on the settings page (dashboard/account.py),
sent as `Authorization: Bearer <token>` to the JSON API and the exports (dashboard/http.py
`request_api_user`), never to pages, websockets or the admin.

A token is "swt_" and secrets.token_urlsafe(32): 256 random bits. Only its SHA-256 is stored.
A plain hash is enough here, unlike for passwords: nobody can guess 256 random bits, so a slow
or salted hash would buy nothing, and a fast unsalted one lets a request be looked up by an
index in one query. It is not keyed with SECRET_KEY on purpose, so that rotating SECRET_KEY
does not void every script's token.

A token acts as its owner with exactly the owner's permissions at the time of each request (a
role taken away is taken from the token too); an inactive owner, a revoked or an expired token
authenticates nobody.
"""

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction

from audit.chain import audit_record, audit_update
from dashboard.models import ApiToken

PREFIX = "swt_"
# Every token expires; scripts that run longer make a new one.
EXPIRY_DAYS_MAX = 365
EXPIRY_DAYS_DEFAULT = 30
# last_used_at is written at most this often per token, so a busy script costs no write a request.
LAST_USED_EVERY = timedelta(minutes=1)


class TokenRefused(Exception):
    """The Authorization header names no usable token: the message says why, for a 401."""


@dataclass(frozen=True)
class TokenMade:
    token: ApiToken
    secret: str  # the only time it exists in clear: show it to the owner, store it nowhere


def token_digest(*, secret: str) -> str:
    """The hex SHA-256 of a token's text, as ApiToken.digest holds it."""
    return hashlib.sha256(secret.encode()).hexdigest()


def token_create(*, user, name: str, expires_in_days: int, now: datetime, request=None) -> TokenMade:
    """A new token for `user`, named `name` (1-100 characters), expiring `expires_in_days`
    (1..EXPIRY_DAYS_MAX) days after `now`, audited as dashboard.apitoken.create (`request` gives
    the address; never the secret). Raises ValueError for a name or expiry out of range."""
    name = name.strip()
    if not 1 <= len(name) <= 100:
        raise ValueError("A token's name is 1 to 100 characters.")
    if not 1 <= expires_in_days <= EXPIRY_DAYS_MAX:
        raise ValueError(f"A token expires in 1 to {EXPIRY_DAYS_MAX} days.")
    secret = PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(user=user, name=name, digest=token_digest(secret=secret),
                                    expires_at=now + timedelta(days=expires_in_days))
    audit_record(actor=user, action="dashboard.apitoken.create", target=token, request=request,
                 after={"name": token.name, "expires_at": token.expires_at.isoformat()})
    return TokenMade(token=token, secret=secret)


def token_revoke(*, token_id: int, user, now: datetime, request=None) -> bool:
    """Revoke token `token_id` if `user` owns it and it is not revoked yet, audited as
    dashboard.apitoken.revoke. True when this call revoked it; False for another user's token,
    an unknown one, or one already revoked."""
    with transaction.atomic():
        revoked = ApiToken.objects.filter(pk=token_id, user=user, revoked_at=None).update(revoked_at=now)
        if revoked == 1:
            audit_record(actor=user, action="dashboard.apitoken.revoke", target=ApiToken.objects.get(pk=token_id),
                         request=request, before={"revoked_at": None}, after={"revoked_at": now.isoformat()})
    return revoked == 1


def tokens_revoke(*, tokens, now: datetime, request) -> int:
    """Revoke every token of the queryset `tokens` not revoked yet (the admin's action, for
    anyone's tokens), one dashboard.apitoken.revoke audit entry each, the actor being
    `request`'s user; returns how many this call revoked."""
    return audit_update(queryset=tokens.filter(revoked_at=None), changes={"revoked_at": now}, verb="revoke", request=request)


def token_authenticate(*, authorization: str, now: datetime):
    """The active user an `Authorization` header's value ("Bearer <token>", RFC 6750 §2.1)
    acts as. Raises TokenRefused for another scheme, a malformed value, or a token that is
    unknown, revoked or expired, or whose owner is inactive. Notes the token's last use."""
    scheme, _, secret = authorization.strip().partition(" ")
    secret = secret.strip()
    if scheme.lower() != "bearer" or not secret:
        raise TokenRefused("Send Authorization: Bearer <token>.")
    if not secret.startswith(PREFIX) or len(secret) > 100:
        raise TokenRefused("That is not a Shardwatch API token.")
    token = (ApiToken.objects.usable(now=now).select_related("user")
             .filter(digest=token_digest(secret=secret)).first())
    if token is None:
        raise TokenRefused("This token is unknown, revoked or expired, or its owner is inactive.")
    ApiToken.objects.filter(pk=token.pk).exclude(last_used_at__gt=now - LAST_USED_EVERY).update(last_used_at=now)
    return token.user
