from django import forms
from django.contrib import admin, messages

from alerts.delivery import channel_test
from audit.chain import audit_record, audit_update
from alerts.models import AlertState, AlertTransition, Channel, Delivery, Rule
from workers.targets.webhook import webhook_secret_new


@admin.register(Channel)
class ChannelAdmin(admin.ModelAdmin):
    exclude = ["created_at"]
    list_display = ["name", "kind", "url", "email_to", "enabled"]
    list_filter = ["kind", "enabled"]
    actions = ["send_test", "new_secret"]

    def save_model(self, request, obj, form, change):
        fresh_secret = None
        if obj.kind == Channel.Kind.WEBHOOK and not obj.secret_encrypted:
            fresh_secret, obj.secret_encrypted = webhook_secret_new()
        super().save_model(request, obj, form, change)
        if fresh_secret:
            messages.warning(request, f"Signing secret for {obj.name}: {fresh_secret} — copy it now; it is not shown again.")

    @admin.action(description="Send a test notification", permissions=["change"])
    def send_test(self, request, queryset):
        for channel in queryset:
            problem = channel_test(channel=channel)
            if problem:
                self.message_user(request, f"{channel.name}: not sent: {problem}", level=messages.ERROR)
            else:
                self.message_user(request, f"{channel.name}: test notification sent.")

    @admin.action(description="Generate a new signing secret (webhook channels)", permissions=["change"])
    def new_secret(self, request, queryset):
        for channel in queryset.filter(kind=Channel.Kind.WEBHOOK):
            plain, channel.secret_encrypted = webhook_secret_new()
            channel.save(update_fields=["secret_encrypted"])
            messages.warning(request, f"New signing secret for {channel.name}: {plain} — copy it now; it is not shown again.")


class RuleForm(forms.ModelForm):
    class Meta:
        model = Rule
        exclude = ["created_at"]
        widgets = {"channels": forms.CheckboxSelectMultiple}


@admin.register(Rule)
class RuleAdmin(admin.ModelAdmin):
    form = RuleForm
    list_display = ["name", "condition", "source", "trigger", "threshold", "duration_s", "repeat_interval_s", "enabled"]
    list_filter = ["enabled", "condition"]
    actions = ["enable", "disable"]

    @admin.action(description="Enable the selected rules", permissions=["change"])
    def enable(self, request, queryset):
        updated = audit_update(queryset=queryset, changes={"enabled": True}, verb="enable", request=request)
        self.message_user(request, f"Enabled {updated} rule(s).")

    @admin.action(description="Disable the selected rules", permissions=["change"])
    def disable(self, request, queryset):
        updated = audit_update(queryset=queryset, changes={"enabled": False}, verb="disable", request=request)
        self.message_user(request, f"Disabled {updated} rule(s).")


@admin.register(AlertState)
class AlertStateAdmin(admin.ModelAdmin):
    list_display = ["rule", "subject_label", "status", "fired_at", "resolved_at", "silenced_until"]
    list_filter = ["status", "rule"]
    readonly_fields = [f.name for f in AlertState._meta.fields if f.name != "silenced_until"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        # silenced_until is the one field this form edits: changing an alert is silencing it.
        return request.user.has_perm("alerts.silence_alertstate")

    def save_model(self, request, obj, form, change):
        before = AlertState.objects.filter(pk=obj.pk).values_list("silenced_until", flat=True).first()
        super().save_model(request, obj, form, change)
        if before != obj.silenced_until:
            audit_record(actor=request.user, action="alerts.alertstate.silence" if obj.silenced_until else "alerts.alertstate.silence_lift",
                         target=obj, before={"silenced_until": before}, after={"silenced_until": obj.silenced_until}, request=request)


@admin.register(AlertTransition)
class AlertTransitionAdmin(admin.ModelAdmin):
    list_display = ["at", "rule", "kind", "summary", "silenced"]
    list_filter = ["kind", "rule"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    list_display = ["created_at", "channel", "status", "attempts", "next_attempt_at", "last_error"]
    list_filter = ["status", "channel"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
