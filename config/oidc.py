"""Single sign-on through OpenID Connect (the authorization code flow, with PKCE), on
mozilla-django-oidc: its views start the login and take the provider's answer; this module adds
what Shardwatch needs on top.

- Endpoints. The provider's authorization, token, userinfo and JWKS endpoints come from its
  discovery document, <OIDC_ISSUER>/.well-known/openid-configuration (OpenID Connect Discovery
  1.0, section 4), fetched once per process at the first login; any of OIDC_OP_*_ENDPOINT set
  in the environment wins over what it says.
- Roles. At every login the role is mapped again from the claim OIDC_ROLES_CLAIM (a list of
  strings, or one string) through OIDC_ROLE_MAP, so a user taken out of the provider's group
  loses the role at their next login. A user whose claim maps to no role is refused.
- Accounts. A provider's user is the Django user whose username is the OIDC_USERNAME_CLAIM
  claim, made on first login with no usable password. A local account (one with a usable
  password) of that name is never taken over: the login is refused.

Logins and refusals reach the audit log through Django's user_logged_in and user_login_failed
signals (audit.capture), as local ones do.
"""

import logging

import requests
from django.conf import settings
from django.contrib import auth, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_login_failed
from django.core.exceptions import ImproperlyConfigured, SuspiciousOperation
from django.http import Http404, HttpResponseRedirect
from django.urls import reverse
from mozilla_django_oidc.auth import OIDCAuthenticationBackend
from mozilla_django_oidc.views import OIDCAuthenticationCallbackView, OIDCAuthenticationRequestView

from config.admin import admin_allowed
from dashboard.roles import ROLES, role_grant

log = logging.getLogger(__name__)

# Discovery metadata name -> the mozilla-django-oidc setting it fills.
_DISCOVERED = {
    "authorization_endpoint": "OIDC_OP_AUTHORIZATION_ENDPOINT",
    "token_endpoint": "OIDC_OP_TOKEN_ENDPOINT",
    "userinfo_endpoint": "OIDC_OP_USER_ENDPOINT",
    "jwks_uri": "OIDC_OP_JWKS_ENDPOINT",
}
_endpoints: dict[str, dict[str, str]] = {}

NO_ROLE = "Your {provider} account is in no group that has a role in Shardwatch. Ask an admin to give it one."
LOCAL_ACCOUNT = "A local Shardwatch account is called {username}; sign in with its password instead."
FAILED = "Signing in with {provider} did not work. Try again, or ask an admin."


def oidc_endpoints(*, issuer: str) -> dict[str, str]:
    """{setting name: URL} for the four endpoints, from the issuer's discovery document, cached
    for the life of the process. Raises ImproperlyConfigured when the document cannot be read,
    names another issuer (Discovery 1.0, section 4.3: they must be identical) or lacks one."""
    if issuer not in _endpoints:
        url = issuer.rstrip("/") + "/.well-known/openid-configuration"
        try:
            response = requests.get(url, timeout=settings.OIDC_TIMEOUT)
            response.raise_for_status()
            document = response.json()
        except (requests.RequestException, ValueError) as exc:
            raise ImproperlyConfigured(f"OIDC_ISSUER: cannot read {url}: {exc}") from exc
        if document.get("issuer") != issuer:
            raise ImproperlyConfigured(f"OIDC_ISSUER={issuer!r}, but {url} names the issuer {document.get('issuer')!r}.")
        missing = [name for name in _DISCOVERED if not document.get(name)]
        if missing:
            raise ImproperlyConfigured(f"{url} does not give {', '.join(missing)}.")
        _endpoints[issuer] = {setting: document[name] for name, setting in _DISCOVERED.items()}
    return _endpoints[issuer]


def _setting(attr, *args):
    """mozilla-django-oidc's settings look-up, with the endpoints not set by hand discovered."""
    if attr in _DISCOVERED.values() and not getattr(settings, attr, None):
        return oidc_endpoints(issuer=settings.OIDC_ISSUER)[attr]
    if args:
        return getattr(settings, attr, args[0])
    try:
        return getattr(settings, attr)
    except AttributeError:
        raise ImproperlyConfigured(f"Setting {attr} not found") from None


def oidc_role(*, claims: dict) -> str | None:
    """The role (one of ROLES) that `claims` (the userinfo response) map to through
    settings.OIDC_ROLE_MAP ({claim value: role}), or None. The claim named OIDC_ROLES_CLAIM may
    hold a list of strings or one string. Several matching values give the highest role."""
    values = claims.get(settings.OIDC_ROLES_CLAIM) or []
    if isinstance(values, str):
        values = [values]
    mapped = {settings.OIDC_ROLE_MAP[value] for value in values if isinstance(value, str) and value in settings.OIDC_ROLE_MAP}
    return max(mapped, key=ROLES.index) if mapped else None


def oidc_roles_apply(*, user, claims: dict) -> str | None:
    """Gives `user` the role `claims` map to (oidc_role) and no other, or takes every role away
    when they map to none. Groups that are not roles are kept. Returns the role or None."""
    from django.contrib.auth.models import Group

    role = oidc_role(claims=claims)
    if role:
        role_grant(user=user, role=role)
    else:
        user.groups.remove(*Group.objects.filter(name__in=ROLES))
    return role


class ShardwatchOIDCBackend(OIDCAuthenticationBackend):
    """The provider's users, matched by username (OIDC_USERNAME_CLAIM), roles mapped afresh."""

    get_settings = staticmethod(_setting)

    def __init__(self, *args, **kwargs):
        # Django makes every backend for each authenticate() and each session's user look-up:
        # the endpoints (and discovery) wait for a login that comes back from the provider.
        self.UserModel = get_user_model()

    def authenticate(self, request, **kwargs):
        # Only OIDCCallbackView passes the nonce; a password login never reaches the provider.
        if request is None or "nonce" not in kwargs:
            return None
        super().__init__()
        return super().authenticate(request, **kwargs)

    def _username(self, claims):
        username = claims.get(settings.OIDC_USERNAME_CLAIM)
        if not isinstance(username, str) or not username or len(username) > 150:
            raise SuspiciousOperation(f"The {settings.OIDC_USERNAME_CLAIM!r} claim is missing or unusable.")
        return username

    def verify_claims(self, claims):
        return bool(claims.get("sub")) and isinstance(claims.get(settings.OIDC_USERNAME_CLAIM), str)

    def filter_users_by_claims(self, claims):
        return self.UserModel.objects.filter(username=self._username(claims))

    def create_user(self, claims):
        user = self.UserModel.objects.create_user(self._username(claims), claims.get("email") or "")
        user.set_unusable_password()
        user.save(update_fields=["password"])
        oidc_roles_apply(user=user, claims=claims)
        return user

    def update_user(self, user, claims):
        if user.has_usable_password():
            self.request.oidc_refusal = LOCAL_ACCOUNT.format(username=user.username)
            raise SuspiciousOperation(f"{user.username} is a local account")
        email = claims.get("email") or ""
        if email and email != user.email:
            user.email = email
            user.save(update_fields=["email"])
        oidc_roles_apply(user=user, claims=claims)
        return user


class _WhenOn:
    def dispatch(self, request, *args, **kwargs):
        if not settings.OIDC_ISSUER:
            raise Http404("OpenID Connect login is off (no OIDC_ISSUER).")
        return super().dispatch(request, *args, **kwargs)


class OIDCLoginView(_WhenOn, OIDCAuthenticationRequestView):
    """GET /oidc/authenticate/?next=<path>: redirects to the provider's login."""

    get_settings = staticmethod(_setting)

    def __init__(self, *args, **kwargs):
        # The parent reads the endpoint here, before dispatch could answer 404 when OIDC is off.
        super(OIDCAuthenticationRequestView, self).__init__(*args, **kwargs)

    def get(self, request):
        self.OIDC_OP_AUTH_ENDPOINT = _setting("OIDC_OP_AUTHORIZATION_ENDPOINT")
        self.OIDC_RP_CLIENT_ID = _setting("OIDC_RP_CLIENT_ID")
        return super().get(request)


class OIDCCallbackView(_WhenOn, OIDCAuthenticationCallbackView):
    """GET /oidc/callback/: the provider's answer. Logs the user in when they hold a role;
    otherwise back to the login page with the reason shown there."""

    get_settings = staticmethod(_setting)

    def login_success(self):
        if not admin_allowed(user=self.user):
            return self._refuse(self.user.username, NO_ROLE)
        return super().login_success()

    def login_failure(self):
        reason = getattr(self.request, "oidc_refusal", None)
        return self._refuse(None, LOCAL_ACCOUNT if reason else FAILED, text=reason)

    def _refuse(self, username, template, *, text=None):
        if auth.get_user(self.request).is_authenticated:
            auth.logout(self.request)
        user_login_failed.send(
            sender=__name__, credentials={"username": username or "", "via": "oidc"}, request=self.request
        )
        messages.error(self.request, text or template.format(provider=settings.OIDC_PROVIDER_NAME))
        return HttpResponseRedirect(reverse("admin:login"))
