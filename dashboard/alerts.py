"""The Alerts page, silencing an alert, and the operator's actions on a batch that a trigger
keeps retrying (the links a poison-record alert gives). Thin views over alerts' and workers'
functions; every POST is CSRF-checked by the middleware and needs a login and the permission
it names (dashboard/roles.py)."""

from datetime import timedelta

from django import forms
from django.contrib import messages
from django.db import transaction
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from alerts.evaluation import alert_silence
from alerts.models import AlertState
from alerts.selectors import alerts_firing, alerts_history, alerts_silenced, deliveries_recent
from audit.chain import audit_record
from dashboard.http import page_permission_required, request_masking, unmask_context
from workers.models import TriggerCursor
from workers.operations import CursorActionRefused, cursor_batch_bisect, cursor_batch_skip
from workers.selectors import cursor_failing_batch


class SilenceForm(forms.Form):
    until = forms.DateTimeField(label="Silence until (UTC)", required=False,
                                widget=forms.DateTimeInput(attrs={"type": "datetime-local"}))
    hours = forms.FloatField(required=False, min_value=0.01, max_value=24 * 365)

    def clean(self):
        cleaned = super().clean()
        if not cleaned.get("until") and not cleaned.get("hours"):
            raise forms.ValidationError("Give a time to silence the alert until, or a number of hours.")
        # A past time would be stored and reported as a silence while silencing nothing.
        if cleaned.get("until") and cleaned["until"] <= timezone.now():
            raise forms.ValidationError(
                f"Not silenced: {cleaned['until']:%Y-%m-%d %H:%M} UTC is in the past; give a time to come (UTC).")
        return cleaned

    def until_at(self, *, now):
        if self.cleaned_data.get("until"):
            return self.cleaned_data["until"]
        return now + timedelta(hours=self.cleaned_data["hours"])


@page_permission_required("alerts.view_alertstate")
def alerts(request):
    now = timezone.now()
    return render(request, "dashboard/alerts.html", {
        "firing": alerts_firing(now=now),
        "silenced": alerts_silenced(now=now),
        "history": alerts_history(),
        "deliveries": deliveries_recent(),
        "silence_form": SilenceForm(auto_id=False),
        "now": now,
    })


@page_permission_required("alerts.silence_alertstate")
@require_POST
def alert_silence_view(request, pk: int):
    state = get_object_or_404(AlertState, pk=pk)
    if "lift" in request.POST:
        # One transaction with its audit entry: an entry that cannot be written undoes the action.
        with transaction.atomic():
            alert_silence(state_id=state.pk, until=None)
            audit_record(actor=request.user, action="alerts.alertstate.silence_lift", target=state, request=request,
                         before={"silenced_until": state.silenced_until}, after={"silenced_until": None})
        messages.success(request, f"{state}: silence lifted.")
        return redirect("dashboard:alerts")
    form = SilenceForm(request.POST)
    if not form.is_valid():
        messages.error(request, " ".join(error for errors in form.errors.values() for error in errors))
        return redirect("dashboard:alerts")
    until = form.until_at(now=timezone.now())
    with transaction.atomic():
        alert_silence(state_id=state.pk, until=until)
        audit_record(actor=request.user, action="alerts.alertstate.silence", target=state, request=request,
                     before={"silenced_until": state.silenced_until}, after={"silenced_until": until})
    messages.success(request, f"{state}: silenced until {until:%Y-%m-%d %H:%M} UTC.")
    return redirect("dashboard:alerts")


# The page shows the failing batch's records, not only the cursor.
@page_permission_required(("workers.view_triggercursor", "streams.view_changerecord"))
def cursor(request, pk: int):
    cursor = get_object_or_404(TriggerCursor.objects.select_related("trigger", "shard"), pk=pk)
    invocation, records = cursor_failing_batch(cursor=cursor)
    # Only the records' ids and sequence numbers are shown; the handler's error may quote them.
    masking = request_masking(request, surface="cursor")
    if invocation is not None:
        invocation.error_message = masking.text_shown(invocation.error_message, source_id=cursor.trigger.source_id)
    return render(request, "dashboard/cursor.html", {
        "cursor": cursor, "invocation": invocation, "records": records[:50], "record_count": len(records),
        **unmask_context(request, masking=masking),
    })


@page_permission_required("workers.operate_trigger")
@require_POST
def cursor_skip(request, pk: int):
    cursor = get_object_or_404(TriggerCursor, pk=pk)
    try:
        with transaction.atomic():
            letter = cursor_batch_skip(cursor_id=pk, who=request.user.get_username())
            audit_record(actor=request.user, action="workers.triggercursor.skip", target=cursor, request=request,
                         details={"dead_letter_id": letter.pk, "record_count": len(letter.record_ids)})
        messages.success(request, f"Skipped: {len(letter.record_ids)} record(s) are in the dead-letter list; the trigger goes on.")
    except CursorActionRefused as exc:
        messages.error(request, str(exc))
    return redirect("dashboard:cursor", pk=pk)


@page_permission_required("workers.operate_trigger")
@require_POST
def cursor_bisect(request, pk: int):
    cursor = get_object_or_404(TriggerCursor, pk=pk)
    try:
        with transaction.atomic():
            half = cursor_batch_bisect(cursor_id=pk)
            audit_record(actor=request.user, action="workers.triggercursor.bisect", target=cursor, request=request,
                         details={"next_batch_size": half})
        messages.success(request, f"Bisected: the next batch is the first {half} record(s), then the rest.")
    except CursorActionRefused as exc:
        messages.error(request, str(exc))
    return redirect("dashboard:cursor", pk=pk)
