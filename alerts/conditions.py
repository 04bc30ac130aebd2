"""The conditions of alert rules: for one rule, the subjects for which its condition holds now.

Each check reads streams, workers and meters through their selectors and returns
{subject: Finding}; a subject left out does not hold (alerts.evaluation resolves it). Subjects
are "source:<id>", "shard:<id>", "trigger:<id>", "cursor:<id>" or "role:<worker|reader>".

What N (Rule.threshold) means for each condition:
- source_inactive: minutes. The source's status (StreamSource.status, set from the AWS error
  of its last failed call: access denied, table gone, endpoint unreachable) is not "active";
  the alert fires once that has been seen for N minutes (plus the rule's duration).
- source_lag: seconds, from streams.selectors.sources_lag.
- gap: a count: more than N gaps detected over the rule's window.
- shard_stuck: minutes; see streams.selectors.shards_stuck for what "records waiting" can mean.
- trigger_age: seconds, the age of the trigger's oldest unprocessed record
  (workers.selectors.triggers_iterator_age, Lambda's IteratorAge).
- trigger_error_rate: a percentage of the invocations started over the window.
- dead_letters: a count: more than N added over the window.
- poison_record: retries, at least 1: a cursor whose batch was retried N times
  (TriggerCursor.attempt). The finding names the cursor's batch and its last invocation
  (workers.selectors.cursors_retrying), by the invocation's error type and a link, never
  by the handler's error message.
- no_worker: seconds: no heartbeat (meters.heartbeats) for N seconds from any worker, or from
  any reader: each role is its own subject, "role:worker" and "role:reader", since either
  dying stops half of Shardwatch while the other lives. Beat evaluates these rules and sends
  their notifications itself as well (config.beat), since no worker may be left to.
"""

from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.urls import reverse

from alerts.models import Rule
from meters.heartbeats import heartbeats_by_role
from streams.selectors import gaps_since, shards_stuck, sources_lag, sources_watched
from workers.invocations import invocation_failure, invocation_link
from workers.selectors import cursors_retrying, dead_letters_since, trigger_outcomes_since, triggers_iterator_age

Condition = Rule.Condition


@dataclass(frozen=True)
class Finding:
    label: str  # the subject in words: "orders (us-east-1)", "trigger notify-shipped"
    summary: str  # what holds, in words, with the figures
    details: dict = field(default_factory=dict)  # figures and links ({"links": {name: url}})


def link(*, path: str) -> str:
    """An absolute URL of a dashboard path, for notifications read outside the dashboard."""
    return settings.SHARDWATCH_PUBLIC_URL + path


def hold_s(*, rule: Rule) -> float:
    """How long the condition must be seen holding before the alert fires."""
    extra = rule.threshold * 60 if rule.condition == Condition.SOURCE_INACTIVE else 0
    return rule.duration_s + extra


def _sources(rule: Rule):
    return sources_watched(source_ids=None if rule.source_id is None else [rule.source_id])


def _source_inactive(rule, now):
    found = {}
    for source in _sources(rule):
        if source.status != source.Status.ACTIVE:
            error = f": {source.last_error[:500]}" if source.last_error else ""
            found[f"source:{source.pk}"] = Finding(
                label=str(source),
                summary=f"{source} is not active: {source.get_status_display()}{error}",
                details={"status": source.status, "last_error": source.last_error[:2000],
                         "last_error_at": source.last_error_at.isoformat() if source.last_error_at else None,
                         "links": {"streams": link(path=reverse("dashboard:overview"))}},
            )
    return found


def _source_lag(rule, now):
    sources = {source.pk: source for source in _sources(rule)}
    found = {}
    for source_id, lag in sources_lag(now=now, source_ids=list(sources)).items():
        if source_id not in sources or lag.lag_s is None or lag.lag_s <= rule.threshold:
            continue
        source = sources[source_id]
        rounded = (
            " Record times of this source are rounded down to the minute (DynamoDB Local), so the lag is "
            "measured from when records were received and when the shards were last polled."
            if lag.rounded else ""
        )
        found[f"source:{source_id}"] = Finding(
            label=str(source),
            summary=f"{source} lags {lag.lag_s:.0f} s behind its stream (threshold {rule.threshold:g} s).{rounded}",
            details={"lag_s": lag.lag_s, "rounded": bool(lag.rounded), "polled_ago_s": lag.polled_ago_s,
                     "links": {"streams": link(path=reverse("dashboard:overview"))}},
        )
    return found


def _gap(rule, now):
    sources = {source.pk: source for source in _sources(rule)}
    found = {}
    for source_id, gaps in gaps_since(since=now - timedelta(seconds=rule.window_s), source_ids=list(sources)).items():
        if gaps["count"] <= rule.threshold:
            continue
        latest = gaps["latest"]
        found[f"source:{source_id}"] = Finding(
            label=str(sources[source_id]),
            summary=f"{gaps['count']} gap(s) recorded on {sources[source_id]} in the last {rule.window_s} s; "
                    f"the latest, on shard {latest.shard or '?'}: {latest.reason[:500]}",
            details={"gaps": gaps["count"], "latest_reason": latest.reason[:2000],
                     "links": {"streams": link(path=reverse("dashboard:overview"))}},
        )
    return found


def _shard_stuck(rule, now):
    found = {}
    for item in shards_stuck(now=now, still_for_s=rule.threshold * 60,
                             source_ids=None if rule.source_id is None else [rule.source_id]):
        shard = item["shard"]
        source = shard.stream.source
        if not source.enabled:
            continue
        found[f"shard:{shard.pk}"] = Finding(
            label=f"{source} shard {shard.shard_id}",
            summary=f"Shard {shard.shard_id} of {source} is stuck: held by {shard.last_polled_by or 'a reader'}, "
                    f"{item['waiting']}; its checkpoint has not moved since "
                    f"{item['checkpoint_still_since']:%Y-%m-%d %H:%M:%S} UTC.",
            details={"shard_id": shard.shard_id, "checkpoint": shard.checkpoint, "waiting": item["waiting"],
                     "reader": shard.last_polled_by,
                     "links": {"streams": link(path=reverse("dashboard:overview"))}},
        )
    return found


def _trigger_age(rule, now):
    age = triggers_iterator_age(now=now, trigger_ids=[rule.trigger_id]).get(rule.trigger_id)
    if age is None or age <= rule.threshold:
        return {}
    return {f"trigger:{rule.trigger_id}": Finding(
        label=f"trigger {rule.trigger}",
        summary=f"Trigger {rule.trigger}'s oldest unprocessed record is {age:.0f} s old (threshold {rule.threshold:g} s).",
        details={"iterator_age_s": age, "links": {"triggers": link(path=reverse("dashboard:triggers"))}},
    )}


def _trigger_error_rate(rule, now):
    counts = trigger_outcomes_since(trigger_ids=[rule.trigger_id], since=now - timedelta(seconds=rule.window_s))
    failed, total = counts.get(rule.trigger_id, (0, 0))
    if not total or 100 * failed / total <= rule.threshold:
        return {}
    percent = 100 * failed / total
    return {f"trigger:{rule.trigger_id}": Finding(
        label=f"trigger {rule.trigger}",
        summary=f"Trigger {rule.trigger}: {failed} of {total} invocations failed in the last {rule.window_s} s "
                f"({percent:.0f} %, threshold {rule.threshold:g} %).",
        details={"failed": failed, "invocations": total, "error_percent": round(percent, 1),
                 "links": {"timeline": link(path=reverse("dashboard:timeline") + f"?trigger={rule.trigger_id}")}},
    )}


def _dead_letters(rule, now):
    added = dead_letters_since(trigger_ids=[rule.trigger_id], since=now - timedelta(seconds=rule.window_s))
    count = added.get(rule.trigger_id, 0)
    if count <= rule.threshold:
        return {}
    return {f"trigger:{rule.trigger_id}": Finding(
        label=f"trigger {rule.trigger}",
        summary=f"Trigger {rule.trigger} added {count} dead letter(s) in the last {rule.window_s} s.",
        details={"dead_letters": count,
                 "links": {"dead_letters": link(path=reverse("dashboard:dead_letters") + f"?trigger={rule.trigger_id}")}},
    )}


def _poison_record(rule, now):
    found = {}
    for item in cursors_retrying(trigger_ids=[rule.trigger_id], min_attempt=max(1, int(rule.threshold))):
        cursor, invocation, record_id = item["cursor"], item["invocation"], item["first_record_id"]
        links = {"batch": link(path=reverse("dashboard:cursor", args=[cursor.pk]))}
        if record_id is not None:
            links["record"] = link(path=reverse("dashboard:record", args=[record_id]))
        error = ""
        if invocation is not None:
            # Handlers put item data in their error messages: a notification names the error
            # type and links to the invocation, whose page (behind the login) has the message.
            links["invocation"] = invocation_link(invocation_id=invocation.pk)
            error = f" The last invocation failed with {invocation_failure(invocation)}: {links['invocation']}"
        found[f"cursor:{cursor.pk}"] = Finding(
            label=f"trigger {cursor.trigger} shard {cursor.shard.shard_id}"
                  + (f" lane {cursor.lane}" if cursor.trigger.parallelization_factor > 1 else ""),
            summary=f"Trigger {cursor.trigger} has retried the same batch {item['attempt']} time(s) on shard "
                    f"{cursor.shard.shard_id}; its first record is record {record_id}.{error} "
                    f"Skip the batch to the dead-letter list or bisect it: {links['batch']}",
            details={"attempt": item["attempt"], "record_id": record_id,
                     "invocation_id": invocation.pk if invocation else None, "cursor_id": cursor.pk, "links": links},
        )
    return found


# What stops when no process of a role is alive, for the notification.
_ROLE_STOPS = {
    "worker": "no trigger runs, no shard is discovered or handed to a reader, and no other alert is sent",
    "reader": "no stream is read",
}


def _no_worker(rule, now):
    roles = heartbeats_by_role(now=now, alive_within_s=rule.threshold)
    found = {}
    for role, stops in _ROLE_STOPS.items():
        if roles[role]["alive"]:
            continue
        found[f"role:{role}"] = Finding(
            label=f"{role}s",
            summary=f"No Celery {role} has sent a heartbeat in the last {rule.threshold:g} s: {stops}.",
            details={"role": role, "newest_heartbeat": roles[role]["seen_at"].isoformat() if roles[role]["seen_at"] else None},
        )
    return found


CHECKS = {
    Condition.SOURCE_INACTIVE: _source_inactive,
    Condition.SOURCE_LAG: _source_lag,
    Condition.GAP: _gap,
    Condition.SHARD_STUCK: _shard_stuck,
    Condition.TRIGGER_AGE: _trigger_age,
    Condition.TRIGGER_ERROR_RATE: _trigger_error_rate,
    Condition.DEAD_LETTERS: _dead_letters,
    Condition.POISON_RECORD: _poison_record,
    Condition.NO_WORKER: _no_worker,
}


def condition_findings(*, rule: Rule, now) -> dict[str, Finding]:
    """The subjects for which `rule`'s condition holds at `now` (an aware datetime), each with
    what was found. A trigger rule whose trigger is disabled holds for nobody."""
    if rule.condition in Rule.TRIGGER_CONDITIONS and (rule.trigger is None or not rule.trigger.enabled):
        return {}
    return CHECKS[rule.condition](rule, now)
