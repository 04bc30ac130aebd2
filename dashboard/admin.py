from django.contrib import admin
from django.utils import timezone

from dashboard.models import ApiToken
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
