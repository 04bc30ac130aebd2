import json

from django import forms
from django.contrib import admin, messages
from django.db.models import Max

from streams.filters import InvalidPattern, compile_pattern
from streams.models import ChangeRecord
from workers.models import DeadLetter, Invocation, Trigger, TriggerCursor

MAX_PATTERNS = 5
MAX_PATTERN_LENGTH = 4096


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
                from workers.targets import handler_check

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
    actions = ["enable", "disable", "reset_to_trim_horizon", "reset_to_latest"]

    def save_model(self, request, obj, form, change):
        fresh_secret = None
        if obj.target == Trigger.Target.WEBHOOK and not obj.webhook_secret_encrypted:
            from workers.targets import webhook_secret_new

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
        behind = 0
        slowest = {}
        for shard_id, position in TriggerCursor.objects.filter(trigger=trigger).values_list("shard_id", "position"):
            slowest[shard_id] = min(slowest.get(shard_id, position), position)
        for shard_id, position in slowest.items():
            behind += ChangeRecord.objects.filter(shard_id=shard_id, sequence_key__gt=position).count()
        return behind

    @admin.display(description="Last invocation")
    def last_invocation(self, trigger):
        return Invocation.objects.filter(trigger=trigger).aggregate(last=Max("started_at"))["last"]

    @admin.display(description="Errors (last 100)")
    def error_rate(self, trigger):
        outcomes = list(Invocation.objects.filter(trigger=trigger).values_list("outcome", flat=True)[:100])
        if not outcomes:
            return "—"
        failed = sum(outcome != Invocation.Outcome.SUCCESS for outcome in outcomes)
        return f"{100 * failed / len(outcomes):.0f}%"

    @admin.action(description="Enable the selected triggers")
    def enable(self, request, queryset):
        self.message_user(request, f"Enabled {queryset.update(enabled=True)} trigger(s).")

    @admin.action(description="Disable the selected triggers")
    def disable(self, request, queryset):
        self.message_user(request, f"Disabled {queryset.update(enabled=False)} trigger(s).")

    @admin.action(description="Reset position to TRIM_HORIZON (every stored record)")
    def reset_to_trim_horizon(self, request, queryset):
        from workers.triggers import cursors_reset

        for trigger in queryset:
            cursors_reset(trigger=trigger, position="TRIM_HORIZON")
        self.message_user(request, "Reset; the triggers start again from the oldest stored record.")

    @admin.action(description="Reset position to LATEST")
    def reset_to_latest(self, request, queryset):
        from workers.triggers import cursors_reset

        for trigger in queryset:
            cursors_reset(trigger=trigger, position="LATEST")
        self.message_user(request, "Reset; the triggers skip what is stored now.")


@admin.register(Invocation)
class InvocationAdmin(admin.ModelAdmin):
    list_display = ["started_at", "trigger", "outcome", "record_count", "filtered_count", "attempt", "from_bisect", "duration_ms", "error_type"]
    list_filter = ["outcome", "trigger"]
    show_full_result_count = False

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(DeadLetter)
class DeadLetterAdmin(admin.ModelAdmin):
    list_display = ["created_at", "trigger", "first_sequence_number", "last_sequence_number", "reason", "retried_at"]
    list_filter = ["trigger"]

    def has_add_permission(self, request):
        return False
