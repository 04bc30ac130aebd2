"""Evaluating the rules: what each rule's condition finds, turned into alert transitions,
each claimed by one conditional UPDATE, and the deliveries they call for.

What must stay true (alerts.models states the invariants):
- A transition is acted on by the evaluator whose UPDATE on the state's `version` changed
  exactly one row; any other evaluator that read the same version changes nothing and sends
  nothing. So two beat processes, or a slow tick overlapping the next, never notify twice.
- The transition, its history row, its deliveries and the superseding of the alert's older
  pending deliveries to the same channels commit together; the deliveries' ids go
  back to the caller, which queues their sends once that has committed. An older delivery
  claimed by a sender (in flight) is not superseded: the new one's first attempt waits until
  that claim ends, and a failed in-flight send is superseded then (alerts.delivery), so a
  channel hears the alert's transitions in order.
- A silenced alert's firing leaves `last_notified_at` empty: the first evaluation after the
  silence ends that finds it still firing notifies "fired". A resolve is notified exactly
  when its firing was (silenced or not), so no receiver is left at FIRING.
- One rule whose check fails is logged and skipped; the other rules are still evaluated.
- A disabled rule's firing alerts resolve at the next evaluation, with a notification when
  their firing had one; pending ones go back to OK.
"""

import logging
from dataclasses import dataclass, field
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.db.models import F

from alerts.conditions import Finding, condition_findings, hold_s
from alerts.delivery import delivery_claimed
from alerts.models import AlertState, AlertTransition, Delivery, Rule

log = logging.getLogger(__name__)

Status = AlertState.Status
Kind = AlertTransition.Kind
# A delivery whose send was queued but has not been claimed this long after it was due is
# taken to be lost (a worker died with it) and is queued again by the next evaluation.
SWEEP_GRACE_S = 10.0


@dataclass
class Evaluation:
    transitions: list[int] = field(default_factory=list)  # AlertTransition ids, in order made
    deliveries: list[int] = field(default_factory=list)  # Delivery ids made now, to send
    due: list[int] = field(default_factory=list)  # older Delivery ids due (retries, lost sends)
    failed_rules: list[int] = field(default_factory=list)


def alerts_evaluate(*, now, conditions: set[str] | None = None) -> Evaluation:
    """Evaluate every enabled rule at `now` (an aware datetime): fire, repeat and resolve
    alerts, store their transitions and make their deliveries; resolve the alerts of disabled
    rules (those whose source or trigger was deleted among them, alerts.models). `conditions` (Rule.Condition
    values) limits it, and the deliveries found due, to rules of those conditions; None is
    every rule. Returns what it did; the caller sends `deliveries` and `due` (alerts.tasks
    does, one task each; beat sends the no_worker rules' itself, config.beat)."""
    result = Evaluation()
    rules = Rule.objects.filter(enabled=True)
    if conditions is not None:
        rules = rules.filter(condition__in=conditions)
    for rule in rules.select_related("trigger", "source").prefetch_related("channels"):
        try:
            findings = condition_findings(rule=rule, now=now)
            _rule_apply(rule=rule, findings=findings, now=now, result=result)
        except Exception:
            log.exception("alerts: evaluating rule %s (%s) failed", rule.pk, rule.name)
            result.failed_rules.append(rule.pk)
    # A disabled rule holds for nobody: its firing alerts resolve (notified as their firing
    # was), so no receiver stays at FIRING for a rule that is no longer watched.
    disabled = Rule.objects.filter(enabled=False, states__status__in=[Status.FIRING, Status.PENDING]).distinct()
    if conditions is not None:
        disabled = disabled.filter(condition__in=conditions)
    for rule in disabled.prefetch_related("channels"):
        try:
            _rule_apply(rule=rule, findings={}, now=now, result=result)
        except Exception:
            log.exception("alerts: resolving disabled rule %s (%s) failed", rule.pk, rule.name)
            result.failed_rules.append(rule.pk)
    made = set(result.deliveries)
    result.due = [pk for pk in deliveries_due(now=now, conditions=conditions) if pk not in made]
    return result


def deliveries_due(*, now, conditions: set[str] | None = None) -> list[int]:
    """Deliveries still to send whose attempt was due SWEEP_GRACE_S ago or more; of rules of
    `conditions` only, unless None."""
    due = Delivery.objects.filter(status=Delivery.Status.PENDING,
                                  next_attempt_at__lte=now - timedelta(seconds=SWEEP_GRACE_S))
    if conditions is not None:
        due = due.filter(transition__rule__condition__in=conditions)
    return list(due.order_by("next_attempt_at").values_list("pk", flat=True)[:500])


def _states_for(*, rule: Rule, findings: dict[str, Finding]) -> list[AlertState]:
    states = {state.subject: state for state in AlertState.objects.filter(rule=rule)}
    missing = [subject for subject in findings if subject not in states]
    if missing:
        # Two evaluators may make the same state at once: the unique (rule, subject) key keeps one.
        AlertState.objects.bulk_create(
            [AlertState(rule=rule, subject=subject, subject_label=findings[subject].label[:255]) for subject in missing],
            ignore_conflicts=True,
        )
        states = {state.subject: state for state in AlertState.objects.filter(rule=rule)}
    return list(states.values())


def _rule_apply(*, rule: Rule, findings: dict[str, Finding], now, result: Evaluation) -> None:
    for state in _states_for(rule=rule, findings=findings):
        finding = findings.get(state.subject)
        change, kind = _next(rule=rule, state=state, finding=finding, now=now)
        if change is None:
            continue
        try:
            with transaction.atomic():
                # The claim: exactly one evaluator moves this version on.
                claimed = AlertState.objects.filter(pk=state.pk, version=state.version).update(
                    version=F("version") + 1, evaluated_at=now, **change
                )
                if claimed != 1:
                    continue
                if kind is not None:
                    _transition_record(rule=rule, state=state, change=change, kind=kind, now=now, result=result)
        except IntegrityError:
            log.exception("alerts: could not record rule %s's %s", rule.pk, kind)


def _next(*, rule: Rule, state: AlertState, finding: Finding | None, now) -> tuple[dict | None, str | None]:
    """The fields to change on `state` and the transition it makes (a Kind, or None), or
    (None, None) when nothing changes."""
    if finding is None:
        if state.status == Status.FIRING:
            return {"status": Status.RESOLVED, "resolved_at": now, "holding_since": None}, Kind.RESOLVED
        if state.status == Status.PENDING:
            return {"status": Status.OK, "holding_since": None}, None
        return None, None
    seen = {"summary": finding.summary, "details": finding.details, "subject_label": finding.label[:255]}
    if state.status == Status.FIRING:
        silenced = state.silenced(now=now)
        if not silenced and state.last_notified_at is None:
            # It fired while silenced and still fires now the silence is over: nobody has
            # been told yet, so this is its first notification, whatever the repeat interval.
            return {**seen, "last_notified_at": now}, Kind.FIRED
        repeat = rule.repeat_interval_s
        if repeat and not silenced and now - state.last_notified_at >= timedelta(seconds=repeat):
            return {**seen, "last_notified_at": now}, Kind.REPEATED
        if finding.summary != state.summary:
            return seen, None
        return None, None
    since = state.holding_since or now
    if (now - since).total_seconds() >= hold_s(rule=rule):
        # A firing recorded while silenced notifies nobody, so it leaves last_notified_at empty.
        return {**seen, "status": Status.FIRING, "fired_at": now, "resolved_at": None, "holding_since": since,
                "last_notified_at": None if state.silenced(now=now) else now}, Kind.FIRED
    if state.status != Status.PENDING or state.holding_since is None:
        return {**seen, "status": Status.PENDING, "holding_since": since}, None
    return (seen, None) if finding.summary != state.summary else (None, None)


def resolved_summary(*, rule: Rule, state: AlertState) -> str:
    """What a resolve says: that the rule no longer holds for its subject, then the last firing
    summary as the past it is ("Resolved: errors on trigger t-orders; it was: 3 of 4 ...").
    Every channel sends this text, so none repeats a firing's words as news."""
    subject = f" on {state.subject_label}" if state.subject_label else ""
    return f"Resolved: {rule.name}{subject}; it was: {state.summary}" if state.summary else f"Resolved: {rule.name}{subject}."


def _transition_record(*, rule, state, change, kind, now, result: Evaluation) -> None:
    if kind == Kind.RESOLVED:
        # A resolve follows its firing's notification: told if and only if the firing was
        # told (last_notified_at is set by the notified FIRED of this run), silenced or not,
        # so receivers never stay at FIRING and never hear of an end without a start.
        silenced = state.last_notified_at is None
    else:
        silenced = state.silenced(now=now)
    summary = change.get("summary", state.summary)
    if kind == Kind.RESOLVED:
        summary = resolved_summary(rule=rule, state=state)
    transition = AlertTransition.objects.create(
        state=state, rule=rule, kind=kind, at=now, summary=summary,
        details=change.get("details", state.details), silenced=silenced,
    )
    result.transitions.append(transition.pk)
    if silenced:
        return
    channels = [channel for channel in rule.channels.all() if channel.enabled]
    # This transition is now the alert's word to these channels: an older notice still waiting
    # (say, "fired" in backoff) must not land after it. One already claimed may be on the wire
    # and cannot be called back: it is left to its sender, and this one waits until its claim
    # is over (its send is cut well before, alerts.delivery.SEND_DEADLINE_S), so it lands after.
    older = Delivery.objects.filter(transition__state=state, channel__in=channels, status=Delivery.Status.PENDING)
    claimed = delivery_claimed(now=now)
    claims = {}
    for channel_id, until in older.filter(claimed).values_list("channel_id", "next_attempt_at"):
        claims[channel_id] = max(until, claims.get(channel_id, until))
    older.exclude(claimed).update(status=Delivery.Status.SUPERSEDED, next_attempt_at=None)
    deliveries = Delivery.objects.bulk_create(
        [Delivery(transition=transition, channel=channel, next_attempt_at=max(now, claims.get(channel.pk, now)))
         for channel in channels]
    )
    result.deliveries.extend(delivery.pk for delivery in deliveries)


def alert_silence(*, state_id: int, until) -> bool:
    """Silence the alert until `until` (None lifts the silence). Its transitions are still
    recorded while silenced, but nobody is notified of its firing or reminders; one that
    still fires when the silence ends notifies "fired" at the next evaluation. The resolve
    of a firing that was notified is always notified. Returns whether the alert exists."""
    return AlertState.objects.filter(pk=state_id).update(silenced_until=until) == 1
