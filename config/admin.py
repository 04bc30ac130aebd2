"""The admin site, whose login page is also the dashboard's (LOGIN_URL): Django's, open to every
active user who holds a role (dashboard/roles.py) or any other permission, not only to staff.
What each one sees and may do there is what their permissions allow, model by model and action
by action (ModelAdmin's has_*_permission and the actions' allowed_permissions)."""

from django import forms
from django.conf import settings
from django.contrib import admin
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import AuthenticationForm
from django.http import HttpResponseForbidden


def admin_allowed(*, user) -> bool:
    """Whether `user` may log in and open the admin: active, and staff or holding a permission."""
    return bool(user.is_active and (user.is_staff or user.get_all_permissions()))


class RoleAuthenticationForm(AdminAuthenticationForm):
    error_messages = {
        **AuthenticationForm.error_messages,
        # Django's admin says "for a staff account"; every role may log in here.
        "invalid_login": "Please enter the correct %(username)s and password. Note that both fields may be case-sensitive.",
        "no_role": "This account has no role in Shardwatch. Ask an admin to give it one.",
    }

    def confirm_login_allowed(self, user):
        # AdminAuthenticationForm's own check wants is_staff, and a Viewer is not staff:
        # AuthenticationForm's refuses inactive users, and this the rest.
        AuthenticationForm.confirm_login_allowed(self, user)
        if not admin_allowed(user=user):
            raise forms.ValidationError(self.error_messages["no_role"], code="no_role")


class ShardwatchAdminSite(admin.AdminSite):
    login_form = RoleAuthenticationForm

    def has_permission(self, request):
        return admin_allowed(user=request.user)

    def login(self, request, extra_context=None):
        # Which ways in the login page offers (LOCAL_LOGIN, OIDC_ISSUER: config/oidc.py).
        context = {
            "local_login": settings.LOCAL_LOGIN,
            "oidc_login": bool(settings.OIDC_ISSUER),
            "oidc_provider_name": settings.OIDC_PROVIDER_NAME,
            **(extra_context or {}),
        }
        if request.method == "POST" and not settings.LOCAL_LOGIN:
            return HttpResponseForbidden("Local accounts are switched off (LOCAL_LOGIN=off).")
        return super().login(request, extra_context=context)
