from django.contrib import admin
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.models import Group, User
from django.utils import timezone

from dashboard.models import ApiToken
from dashboard.roles import ROLES
from dashboard.tokens import tokens_revoke


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Everyone's tokens, for an admin to see and revoke. Tokens are made only by their owners
    on the settings page (the text is shown to them once), and never edited or deleted here: a
    revoked row says who held what until when."""

    list_display = ["name", "user", "created_at", "expires_at", "last_used_at", "revoked_at"]
    list_filter = ["revoked_at"]
    search_fields = ["name", "user__username"]
    readonly_fields = ["user", "name", "created_at", "expires_at", "last_used_at", "revoked_at"]
    exclude = ["digest"]
    actions = ["revoke"]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.action(description="Revoke the selected tokens", permissions=["change"])
    def revoke(self, request, queryset):
        count = tokens_revoke(tokens=queryset, now=timezone.now(), request=request)
        self.message_user(request, f"{count} token(s) revoked.")


# Fields of a user that grant power over everything: only a superuser may set them. A role
# (dashboard/roles.py) is the way to give a user permissions, so an Admin hands out roles only.
USER_POWER_FIELDS = ("is_superuser", "is_staff", "user_permissions")


def user_editable_by(*, user, editor) -> bool:
    """Whether `editor` may change, delete or set the password of `user`: a superuser may edit
    anyone; anyone else no superuser (that would be taking one over)."""
    return bool(editor.is_superuser or not user.is_superuser)


admin.site.unregister(User)
admin.site.unregister(Group)


@admin.register(User)
class RoleUserAdmin(UserAdmin):
    """Django's UserAdmin, made safe for an Admin who is not a superuser (auth.change_user comes
    with the Admin role): is_superuser, is_staff and user_permissions are read-only, `groups`
    offers the three roles only (other groups a user is in are kept), one's own groups are
    read-only, and superusers cannot be changed, deleted or given a new password. Superusers get
    Django's UserAdmin otherwise unchanged; last_login and date_joined are read-only for all."""

    def get_readonly_fields(self, request, obj=None):
        # Written by Django, never by hand; the form's widgets also keep only whole seconds, so
        # saving a user would change date_joined and audit a change nobody made.
        fields = [*super().get_readonly_fields(request, obj), "last_login", "date_joined"]
        if not request.user.is_superuser:
            fields += USER_POWER_FIELDS
            if obj is not None and obj.pk == request.user.pk:
                fields.append("groups")
        return fields

    def formfield_for_manytomany(self, db_field, request, **kwargs):
        if db_field.name == "groups" and not request.user.is_superuser:
            kwargs["queryset"] = Group.objects.filter(name__in=ROLES)
        return super().formfield_for_manytomany(db_field, request, **kwargs)

    def has_change_permission(self, request, obj=None):
        if obj is not None and not user_editable_by(user=obj, editor=request.user):
            return False
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        if obj is not None and not user_editable_by(user=obj, editor=request.user):
            return False
        return super().has_delete_permission(request, obj)

    def save_related(self, request, form, formsets, change):
        # The form offers only the roles, and saving it sets `groups` to what it offered: the
        # groups outside the roles an installation gave this user must survive that.
        kept = []
        if change and not request.user.is_superuser and "groups" in form.cleaned_data:
            kept = list(form.instance.groups.exclude(name__in=ROLES))
        super().save_related(request, form, formsets, change)
        form.instance.groups.add(*kept)


@admin.register(Group)
class RoleGroupAdmin(GroupAdmin):
    """Django's GroupAdmin, with a group's permissions read-only to all but superusers: whoever
    may change a group could otherwise give their own role every permission."""

    def get_readonly_fields(self, request, obj=None):
        fields = list(super().get_readonly_fields(request, obj))
        if not request.user.is_superuser:
            fields.append("permissions")
        return fields
