import json

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from audit.chain import audit_record, audit_update
from streams.filters import MAX_PATTERN_LENGTH, InvalidPattern, compile_pattern
from workers.cursors import cursors_reset, cursors_reset_to
from workers.models import MAX_PATTERNS, DeadLetter, Invocation, Trigger
from streams.admin import ListFilterLookupsOnly
from streams.masking import UNMASK_PERMISSION
from streams.records import masking_load
from workers.operations import pattern_try
from workers.selectors import trigger_errors, trigger_lag, trigger_last_invocation
from workers.targets.python import handler_check
from workers.targets.webhook import webhook_secret_new
from workers.tasks import replay_records, retry_dead_letter


class PatternsField(forms.CharField):
    """FilterCriteria as Lambda takes it: a JSON list of up to 5 patterns (objects or strings)."""

    widget = forms.Textarea(attrs={"rows": 4, "cols": 80})

    def prepare_value(self, value):
        if isinstance(value, list):
            return json.dumps([json.loads(text) for text in value], indent=2) if value else ""
        return value

    def to_python(self, value):
        value = (value or "").strip()
        if not value:
            return []
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError as exc:
            raise forms.ValidationError(f"Not valid JSON: {exc}") from None
        if isinstance(parsed, dict):
            parsed = [parsed]
        if not isinstance(parsed, list):
            raise forms.ValidationError("Give a pattern object, or a list of up to 5 of them.")
        if len(parsed) > MAX_PATTERNS:
            raise forms.ValidationError(f"At most {MAX_PATTERNS} patterns (Lambda's limit); got {len(parsed)}.")
        texts = []
        for number, pattern in enumerate(parsed, start=1):
            text = pattern if isinstance(pattern, str) else json.dumps(pattern, separators=(",", ":"))
            if len(text) > MAX_PATTERN_LENGTH:
                raise forms.ValidationError(f"Pattern {number} is {len(text)} characters; the limit is {MAX_PATTERN_LENGTH}.")
            try:
                compile_pattern(text)
            except InvalidPattern as exc:
                raise forms.ValidationError(f"Pattern {number} is not valid: {exc}") from None
            texts.append(text)
        return texts


class PositionForm(forms.Form):
    at = forms.DateTimeField(required=False, label="Time (UTC)", help_text="Start at the first record saved at or after this ApproximateCreationDateTime.")
    sequence_number = forms.RegexField(regex=r"^\d+$", required=False, help_text="Or: start at this sequence number.")

    def clean(self):
        cleaned = super().clean()
        if bool(cleaned.get("at")) == bool(cleaned.get("sequence_number")):
            raise forms.ValidationError("Give a time or a sequence number (one of the two).")
        return cleaned


class ReplayForm(forms.Form):
    start = forms.DateTimeField(label="From (UTC)")
    end = forms.DateTimeField(label="To (UTC)")

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("start") and cleaned.get("end") and cleaned["start"] > cleaned["end"]:
            raise forms.ValidationError("From must be before To.")
        return cleaned


class TriggerForm(forms.ModelForm):
    filter_patterns = PatternsField(required=False, label="FilterCriteria", help_text=Trigger._meta.get_field("filter_patterns").help_text)

    class Meta:
        model = Trigger
        exclude = ["created_at"]

    def clean(self):
        cleaned = super().clean()
        target = cleaned.get("target")
        if target == Trigger.Target.PYTHON:
            if not cleaned.get("handler"):
                self.add_error("handler", "A Python trigger needs a handler path, such as myapp.handlers.on_change.")
            else:
                problem = handler_check(cleaned["handler"])
                if problem:
                    self.add_error("handler", problem)
        elif target == Trigger.Target.WEBHOOK and not cleaned.get("webhook_url"):
            self.add_error("webhook_url", "A webhook trigger needs a URL.")
        elif target == Trigger.Target.LAMBDA and not cleaned.get("function_name"):
            self.add_error("function_name", "A Lambda trigger needs a function name or ARN.")
        age = cleaned.get("maximum_record_age_s")
        if age is not None and age != -1 and age < 60:
            self.add_error("maximum_record_age_s", "MaximumRecordAgeInSeconds is -1 (no limit) or between 60 and 604800.")
        return cleaned


@admin.register(Trigger)
class TriggerAdmin(admin.ModelAdmin):
    form = TriggerForm
    list_display = ["name", "source", "target", "enabled", "lag", "last_invocation", "error_rate"]
    list_filter = ["enabled", "target", "source"]
    search_fields = ["name", "handler", "function_name", "webhook_url"]
    actions = ["enable", "disable", "reset_to_trim_horizon", "reset_to_latest", "reset_to_time_or_sequence", "replay_range"]
    readonly_fields = ["pattern_test"]

    @admin.display(description="FilterCriteria test")
    def pattern_test(self, trigger):
        if not trigger.pk:
            return "Save the trigger first."
        url = reverse("admin:workers_trigger_pattern_try", args=[trigger.pk])
        return format_html('<a class="button" href="{}">Test the patterns against the last 100 records</a>', url)

    def has_operate_permission(self, request):
        """The actions that run a trigger differently (enable, disable, reset, replay), which
        the Operator role may take without configuring triggers (change_trigger)."""
        return request.user.has_perm("workers.operate_trigger")

    def get_urls(self):
        return [
            path("<int:pk>/test-pattern/", self.admin_site.admin_view(self.pattern_try_view), name="workers_trigger_pattern_try"),
            *super().get_urls(),
        ]

    def pattern_try_view(self, request, pk):
        # The page shows the records' items, not only the trigger's settings.
        if not (self.has_view_permission(request) and request.user.has_perm("streams.view_changerecord")):
            raise PermissionDenied
        trigger = get_object_or_404(Trigger, pk=pk)
        try:
            last = max(1, min(int(request.GET.get("last", 100)), 5000))
        except ValueError:
            last = 100
        # The page shows the records masked, as the dashboard does before "Show unmasked". The
        # patterns are tried on them as shown, except for holders of the unmask permission, who
        # try them on the stored data, as the trigger will.
        masking = masking_load()
        match_stored = request.user.has_perm(UNMASK_PERMISSION)
        tried, matched = pattern_try(trigger=trigger, last=last, masking=masking, match_stored=match_stored)
        tried_masked = masking.covers(trigger.source_id) and not match_stored
        if match_stored and masking.covers(trigger.source_id):
            # Which records match the stored values tells masked values, as "Show unmasked"
            # would: audited as that is (dashboard.http.masking_for), the pattern left out since
            # it may hold them.
            audit_record(actor=request.user, action="streams.changerecord.unmask", request=request,
                         details={"surface": "pattern_try", "path": request.path, "query": [["last", str(last)]]})
        context = {**self.admin_site.each_context(request), "trigger": trigger, "tried": tried, "tried_asked": last,
                   "tried_masked": tried_masked,
                   "matched": matched, "skipped": tried - len(matched), "title": "Test FilterCriteria"}
        return TemplateResponse(request, "admin/workers/pattern_try.html", context)

    def _action_form(self, request, queryset, *, form_class, action, title, submit):
        form = form_class(request.POST if "apply" in request.POST else None)
        if "apply" in request.POST and form.is_valid():
            return form
        context = {**self.admin_site.each_context(request), "form": form, "triggers": queryset, "action": action,
                   "title": title, "submit": submit}
        return TemplateResponse(request, "admin/workers/trigger_action_form.html", context)

    @admin.action(description="Reset position to a time or a sequence number", permissions=["operate"])
    def reset_to_time_or_sequence(self, request, queryset):
        form = self._action_form(request, queryset, form_class=PositionForm, action="reset_to_time_or_sequence",
                                 title="Reset position", submit="Reset")
        if not isinstance(form, PositionForm):
            return form
        for trigger in queryset:
            cursors_reset_to(trigger=trigger, at=form.cleaned_data["at"], sequence_number=form.cleaned_data["sequence_number"])
            audit_record(actor=request.user, action="workers.trigger.reset", target=trigger, request=request,
                         details={"at": form.cleaned_data["at"], "sequence_number": form.cleaned_data["sequence_number"]})
        self.message_user(request, "Reset; the triggers continue from there.")
        return None

    @admin.action(description="Replay a range of records", permissions=["operate"])
    def replay_range(self, request, queryset):
        form = self._action_form(request, queryset, form_class=ReplayForm, action="replay_range",
                                 title="Replay records saved between two times", submit="Replay")
        if not isinstance(form, ReplayForm):
            return form
        for trigger in queryset:
            start, end = form.cleaned_data["start"], form.cleaned_data["end"]
            audit_record(actor=request.user, action="workers.trigger.replay", target=trigger, request=request,
                         details={"start": start, "end": end})
            transaction.on_commit(lambda t=trigger.pk, s=start, e=end: replay_records.delay(t, s.isoformat(), e.isoformat()))
        self.message_user(request, "Replay queued; its invocations appear in the timeline.")
        return None

    def save_model(self, request, obj, form, change):
        fresh_secret = None
        if obj.target == Trigger.Target.WEBHOOK and not obj.webhook_secret_encrypted:
            fresh_secret, obj.webhook_secret_encrypted = webhook_secret_new()
        super().save_model(request, obj, form, change)
        if fresh_secret:
            messages.warning(
                request,
                f"Webhook signing secret for {obj.name}: {fresh_secret} — copy it now; it is not shown again.",
            )

    @admin.display(description="Lag (records)")
    def lag(self, trigger):
        """Records stored after the furthest-behind lane of each shard."""
        return trigger_lag(trigger=trigger)

    @admin.display(description="Last invocation")
    def last_invocation(self, trigger):
        return trigger_last_invocation(trigger=trigger)

    @admin.display(description="Errors (last 100)")
    def error_rate(self, trigger):
        failed, looked_at = trigger_errors(trigger=trigger)
        return f"{100 * failed / looked_at:.0f}%" if looked_at else "—"

    @admin.action(description="Enable the selected triggers", permissions=["operate"])
    def enable(self, request, queryset):
        updated = audit_update(queryset=queryset, changes={"enabled": True}, verb="enable", request=request)
        self.message_user(request, f"Enabled {updated} trigger(s).")

    @admin.action(description="Disable the selected triggers", permissions=["operate"])
    def disable(self, request, queryset):
        updated = audit_update(queryset=queryset, changes={"enabled": False}, verb="disable", request=request)
        self.message_user(request, f"Disabled {updated} trigger(s).")

    @admin.action(description="Reset position to TRIM_HORIZON (every stored record)", permissions=["operate"])
    def reset_to_trim_horizon(self, request, queryset):
        for trigger in queryset:
            cursors_reset(trigger=trigger, position="TRIM_HORIZON")
            audit_record(actor=request.user, action="workers.trigger.reset", target=trigger, request=request,
                         details={"position": "TRIM_HORIZON"})
        self.message_user(request, "Reset; the triggers start again from the oldest stored record.")

    @admin.action(description="Reset position to LATEST", permissions=["operate"])
    def reset_to_latest(self, request, queryset):
        for trigger in queryset:
            cursors_reset(trigger=trigger, position="LATEST")
            audit_record(actor=request.user, action="workers.trigger.reset", target=trigger, request=request,
                         details={"position": "LATEST"})
        self.message_user(request, "Reset; the triggers skip what is stored now.")


@admin.register(Invocation)
class InvocationAdmin(ListFilterLookupsOnly, admin.ModelAdmin):
    list_display = ["started_at", "trigger", "outcome", "record_count", "filtered_count", "attempt", "from_bisect", "duration_ms", "error_type"]
    # A handler's error and response may quote item data; the dashboard's invocation page shows
    # them as the viewer's masking allows, the admin knows nothing of masking.
    exclude = ["error_message", "response_body"]
    list_filter = ["outcome", "trigger"]
    show_full_result_count = False

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(DeadLetter)
class DeadLetterAdmin(ListFilterLookupsOnly, admin.ModelAdmin):
    list_display = ["created_at", "trigger", "first_sequence_number", "last_sequence_number", "retried_at"]
    # The reason quotes the handler's last error (see InvocationAdmin); the Dead letters page shows it.
    exclude = ["reason"]
    list_filter = ["trigger"]
    actions = ["retry"]

    @admin.action(description="Retry the selected dead-letter entries", permissions=["retry"])
    def retry(self, request, queryset):
        for letter in queryset:
            letter_id = letter.pk
            audit_record(actor=request.user, action="workers.deadletter.retry", target=letter, request=request)
            transaction.on_commit(lambda pk=letter_id: retry_dead_letter.delay(pk))
        self.message_user(request, "Retry queued; the entries are marked when it has run.")

    def has_retry_permission(self, request):
        return request.user.has_perm("workers.retry_deadletter")

    def has_add_permission(self, request):
        return False
