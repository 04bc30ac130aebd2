"""Each audited action, taken by a persona (tests/support/personas.py) through the admin or the
dashboard, writes the entry it should: who, the action, the target, before and after; secrets
never in it. The Audit page shows them to admins."""

import json

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from alerts.models import Channel, Rule
from audit.capture import MASK
from audit.chain import audit_record, audit_verify
from audit.models import AuditEntry
from streams.models import StreamSource
from tests.dashboard.test_api import body_of
from tests.support.personas import PASSWORD, persona_user
from tests.support.triggering import retry_rounds, trigger_for
from workers.models import TriggerCursor

pytestmark = pytest.mark.django_db


def entries(action):
    return list(AuditEntry.objects.filter(action=action).order_by("id"))


def only(action):
    found = entries(action)
    assert len(found) == 1, [entry.action for entry in AuditEntry.objects.order_by("id")]
    return found[0]


def test_it_records_a_channel_created_edited_and_deleted_in_the_admin_without_its_secrets(admin):
    url = "https://hooks.example.com/very-secret-path"
    admin.post("/admin/alerts/channel/add/", {"name": "ops", "kind": "webhook", "url": url, "email_to": "", "enabled": "on"})
    channel = Channel.objects.get(name="ops")
    admin.post(f"/admin/alerts/channel/{channel.pk}/change/", {"name": "ops-2", "kind": "webhook", "url": url, "email_to": "", "enabled": "on"})
    admin.post("/admin/alerts/channel/", {"action": "new_secret", "_selected_action": [channel.pk]})
    admin.post(f"/admin/alerts/channel/{channel.pk}/delete/", {"post": "yes"})

    created = only("alerts.channel.add")
    changes = entries("alerts.channel.change")
    deleted = only("alerts.channel.delete")
    assert (created.actor, created.target_type, created.target_id) == ("admin", "alerts.channel", str(channel.pk))
    assert created.after["name"] == "ops" and created.after["url"] == MASK and created.after["secret_encrypted"] == MASK
    assert [(entry.before, entry.after) for entry in changes] == [
        ({"name": "ops"}, {"name": "ops-2"}),
        ({"secret_encrypted": MASK}, {"secret_encrypted": MASK}),
    ]
    assert deleted.before["name"] == "ops-2" and deleted.after == {}
    every = json.dumps(list(AuditEntry.objects.values("before", "after", "details")))
    assert "very-secret-path" not in every and channel.secret_encrypted not in every
    assert audit_verify()[1] == []


def test_it_records_a_password_change_without_the_password_and_a_role_given(admin):
    someone = get_user_model().objects.create_user("someone", password="first-password-1")
    admin.post(f"/admin/auth/user/{someone.pk}/password/", {"password1": "second-password-2", "password2": "second-password-2",
                                                            "usable_password": "true"})
    changed = [entry for entry in entries("auth.user.change") if entry.target_id == str(someone.pk)]
    assert [(entry.actor, entry.before, entry.after) for entry in changed] == [("admin", {"password": MASK}, {"password": MASK})]
    persona_user(name="newcomer", role="Operator")
    added = [entry for entry in entries("auth.user.groups_add") if entry.target_repr == "newcomer"]
    assert len(added) == 1 and added[0].after == {"groups": [get_user_model().objects.get(username="newcomer").groups.get().pk]}


def test_it_records_each_operator_action_on_triggers_and_dead_letters(world, operator):
    trigger = world.trigger
    operator.post("/admin/workers/trigger/", {"action": "disable", "_selected_action": [trigger.pk]})
    operator.post("/admin/workers/trigger/", {"action": "enable", "_selected_action": [trigger.pk]})
    operator.post("/admin/workers/trigger/", {"action": "reset_to_latest", "_selected_action": [trigger.pk]})
    operator.post("/admin/workers/trigger/", {"action": "replay_range", "_selected_action": [trigger.pk], "apply": "1",
                                              "start": "2026-01-01 00:00:00", "end": "2026-01-02 00:00:00"})
    operator.post("/admin/workers/deadletter/", {"action": "retry", "_selected_action": [world.letter.pk]})

    disabled, enabled = only("workers.trigger.disable"), only("workers.trigger.enable")
    assert (disabled.actor, disabled.target_id, disabled.before, disabled.after) == ("operator", str(trigger.pk), {"enabled": True}, {"enabled": False})
    assert (enabled.before, enabled.after) == ({"enabled": False}, {"enabled": True})
    resets = entries("workers.trigger.reset")
    assert [entry.details for entry in resets] == [{"position": "LATEST"}]
    replay = only("workers.trigger.replay")
    assert replay.actor == "operator" and replay.details["start"].startswith("2026-01-01T00:00:00")
    retry = only("workers.deadletter.retry")
    assert (retry.actor, retry.target_type, retry.target_id) == ("operator", "workers.deadletter", str(world.letter.pk))
    assert {entry.address for entry in AuditEntry.objects.filter(actor="operator", action__startswith="workers.")} == {"127.0.0.1"}


def test_it_records_an_admin_disabling_a_source_and_a_rule_and_nothing_for_no_change(world, admin):
    rule = Rule.objects.get()
    admin.post("/admin/streams/streamsource/", {"action": "disable", "_selected_action": [world.source.pk]})
    admin.post("/admin/alerts/rule/", {"action": "disable", "_selected_action": [rule.pk]})
    admin.post("/admin/alerts/rule/", {"action": "disable", "_selected_action": [rule.pk]})

    source_entry, rule_entry = only("streams.streamsource.disable"), only("alerts.rule.disable")
    assert (source_entry.actor, source_entry.target_id, source_entry.after) == ("admin", str(world.source.pk), {"enabled": False})
    assert (rule_entry.actor, rule_entry.target_id, rule_entry.before) == ("admin", str(rule.pk), {"enabled": True})
    assert not StreamSource.objects.get().enabled


def test_it_records_a_silence_and_its_lifting(world, operator):
    operator.post(f"/alerts/{world.state.pk}/silence", {"hours": "1"})
    operator.post(f"/alerts/{world.state.pk}/silence", {"lift": "1"})

    silenced, lifted = only("alerts.alertstate.silence"), only("alerts.alertstate.silence_lift")
    assert silenced.actor == "operator" and silenced.before == {"silenced_until": None} and silenced.after["silenced_until"]
    assert lifted.before == silenced.after and lifted.after == {"silenced_until": None}


def test_it_records_an_export_with_its_filters_and_row_count_and_no_item_data(world, operator):
    response = operator.get(f"/export/records.ndjson?source={world.source.pk}")
    body = body_of(response).encode()

    entry = only("streams.changerecord.export")
    assert body.count(b"\n") == 1
    assert (entry.actor, entry.details["format"], entry.details["rows"], entry.details["complete"]) == ("operator", "ndjson", 1, True)
    assert ["source", str(world.source.pk)] in entry.details["filters"]
    assert "ORDER#1" not in json.dumps([entry.before, entry.after, entry.details])


def test_it_keeps_the_filters_of_an_export_but_not_the_item_data_they_name(world, operator):
    body_of(operator.get(f"/export/records.ndjson?source={world.source.pk}&key=ORDER%231&q=secret-note"))

    filters = dict(map(tuple, only("streams.changerecord.export").details["filters"]))

    assert filters["source"] == str(world.source.pk)
    assert filters["key"] == filters["q"] == "<given>"


def test_it_records_skipping_and_bisecting_a_failing_batch(orders_table, operator):
    for key in ("a", "b", "c"):
        orders_table.put(key)
    orders_table.ingest()
    trigger = trigger_for(orders_table, "fail_always", maximum_retry_attempts=-1)
    retry_rounds(trigger, 2)
    cursor = TriggerCursor.objects.get(trigger=trigger)

    operator.post(f"/triggers/cursors/{cursor.pk}/bisect")
    retry_rounds(trigger, 1)
    operator.post(f"/triggers/cursors/{cursor.pk}/skip")

    bisect, skip = only("workers.triggercursor.bisect"), only("workers.triggercursor.skip")
    assert (bisect.actor, bisect.target_id, bisect.details) == ("operator", str(cursor.pk), {"next_batch_size": 1})
    assert skip.actor == "operator" and skip.details["record_count"] == 1


def test_it_records_logins_and_failed_logins_without_the_password():
    persona_user(name="viewer", role="Viewer")
    Client().post("/admin/login/", {"username": "viewer", "password": "wrong-password-9"})
    Client().post("/admin/login/", {"username": "viewer", "password": PASSWORD})

    failed, succeeded = only("auth.user.login_failed"), only("auth.user.login")
    assert (failed.actor, failed.details) == ("", {"username": "viewer"})
    # By no one, to the viewer's account: the Audit page's user filter finds it with theirs.
    assert (failed.target_type, failed.target_repr) == ("auth.user", "viewer")
    assert (succeeded.actor, succeeded.address) == ("viewer", "127.0.0.1")
    assert "wrong-password-9" not in json.dumps(list(AuditEntry.objects.values("before", "after", "details")))
    assert not entries("auth.user.change")


def test_it_keeps_no_typed_name_of_a_failed_login_for_a_user_that_does_not_exist():
    # People type their password into the username box: such a name must not be kept readable.
    Client().post("/admin/login/", {"username": "hunter2-my-password", "password": "x"})
    Client().post("/admin/login/", {"username": "hunter2-my-password", "password": "y"})

    first, second = entries("auth.user.login_failed")
    assert first.details["username"] == "unknown user" and first.target_type == ""
    assert first.details["attempt"] == second.details["attempt"]  # attempts with one name group
    assert "hunter2" not in json.dumps(list(AuditEntry.objects.values("before", "after", "details")))


def test_it_shows_admins_the_audit_log_filtered_and_paged(admin):
    someone = get_user_model().objects.create_user("someone")
    for n in range(55):
        audit_record(actor=someone, action="test.thing.poke", details={"n": n})
    audit_record(actor="admin", action="test.thing.other")

    first = admin.get("/audit/?user=someone&action=test.thing.poke")
    assert first.status_code == 200
    shown = first.context["entries"]
    assert len(shown) == 50 and all(entry.actor == "someone" for entry in shown)
    assert shown[0].details == {"n": 54}
    second = admin.get("/audit/" + first.context["next_url"])
    assert [entry.details["n"] for entry in second.context["entries"]] == [4, 3, 2, 1, 0]
    assert second.context["next_url"] is None
    assert admin.get("/audit/?since=2000-01-01T00:00&until=2000-01-02T00:00").context["entries"] == []
    assert admin.get("/audit/?since=not-a-time").context["error"].startswith("since must be")


def test_it_finds_an_accounts_failed_logins_by_its_user(admin):
    persona_user(name="viewer", role="Viewer")
    Client().post("/admin/login/", {"username": "viewer", "password": "wrong-password-9"})

    shown = admin.get("/audit/?user=viewer&action=auth.user.login_failed").context["entries"]

    assert [(entry.action, entry.actor) for entry in shown] == [("auth.user.login_failed", "")]
