"""The chain itself: each entry linked to the one before, an edited or deleted entry found and
named by `manage.py audit_verify`, the head and the tables guarded, a damaged head never
stopping a write, and two writers at once never forking it."""

import threading
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import DatabaseError, connection, transaction
from django.test import RequestFactory

from audit.chain import GENESIS, HEAD_RESTORED, audit_record, entry_hash
from audit.models import AuditChainHead, AuditEntry


def verify() -> tuple[int, str, str]:
    out, err = StringIO(), StringIO()
    try:
        call_command("audit_verify", stdout=out, stderr=err)
        code = 0
    except SystemExit as exc:
        code = exc.code
    return code, out.getvalue(), err.getvalue()


def tamper(sql, params, *, table="audit_auditentry"):
    """What someone with the table owner's rights can do: switch off the table's triggers
    (audit/migrations/0002_append_only.py, 0004_truncate_and_head_guard.py), then change it."""
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE {table} DISABLE TRIGGER USER")
        cursor.execute(sql, params)
        cursor.execute(f"ALTER TABLE {table} ENABLE TRIGGER USER")


def three_entries():
    return [audit_record(actor=f"user{n}", action="test.thing.poke", details={"n": n}) for n in range(1, 4)]


@pytest.mark.django_db
def test_it_links_each_entry_to_the_one_before_and_verifies_the_chain():
    first, second, third = three_entries()

    assert (first.prev_hash, second.prev_hash, third.prev_hash) == (GENESIS, first.hash, second.hash)
    assert len({first.hash, second.hash, third.hash}) == 3
    code, out, _ = verify()
    assert code == 0 and "intact: 3 entries" in out


@pytest.mark.django_db
def test_it_names_an_entry_edited_in_the_database():
    _, second, _ = three_entries()
    tamper("UPDATE audit_auditentry SET actor = 'someone-else' WHERE id = %s", [second.id])

    code, _, err = verify()

    assert code == 1
    assert f"hash mismatch at entry {second.id}" in err
    assert "link broken" not in err


@pytest.mark.django_db
def test_it_names_the_entries_either_side_of_one_deleted_from_the_database():
    first, second, third = three_entries()
    tamper("DELETE FROM audit_auditentry WHERE id = %s", [second.id])

    code, _, err = verify()

    assert code == 1
    assert f"link broken between entry {first.id} and entry {third.id}" in err


@pytest.mark.django_db
def test_it_notices_the_last_entry_deleted():
    _, second, third = three_entries()
    tamper("DELETE FROM audit_auditentry WHERE id = %s", [third.id])

    code, _, err = verify()

    assert code == 1
    assert f"link broken between entry {second.id} and the head, which names entry {third.id}" in err


@pytest.mark.django_db
def test_it_refuses_an_update_or_delete_of_an_entry_through_sql():
    entry = audit_record(actor="someone", action="test.thing.poke")

    for sql in ("UPDATE audit_auditentry SET actor = 'x' WHERE id = %s", "DELETE FROM audit_auditentry WHERE id = %s"):
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql, [entry.id])

    assert AuditEntry.objects.get().actor == "someone"


@pytest.mark.django_db(transaction=True)
def test_it_never_forks_the_chain_when_two_writers_append_at_once():
    start = threading.Barrier(2)

    def writer(name):
        try:
            start.wait()
            for n in range(15):
                audit_record(actor=name, action="test.thing.poke", details={"n": n})
        finally:
            connection.close()

    threads = [threading.Thread(target=writer, args=(name,)) for name in ("one", "two")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert list(AuditEntry.objects.order_by("id").values_list("id", flat=True)) == list(range(1, 31))
    assert AuditEntry.objects.filter(actor="one").count() == AuditEntry.objects.filter(actor="two").count() == 15
    assert verify()[0] == 0


@pytest.mark.django_db
def test_it_takes_the_address_from_x_forwarded_for_only_behind_a_trusted_proxy(settings):
    user = get_user_model().objects.create_user("someone")
    request = RequestFactory().get("/", REMOTE_ADDR="10.0.0.5", HTTP_X_FORWARDED_FOR="203.0.113.9, 10.0.0.7")

    settings.AUDIT_TRUST_X_FORWARDED_FOR = False
    untrusted = audit_record(actor=user, action="test.thing.poke", request=request)
    settings.AUDIT_TRUST_X_FORWARDED_FOR = True
    trusted = audit_record(actor=user, action="test.thing.poke", request=request)

    assert (untrusted.address, trusted.address) == ("10.0.0.5", "203.0.113.9")
    assert (trusted.actor, trusted.actor_id) == ("someone", user.pk)


NUMBERS = {"big": 1e20, "one": 1.0, "int": 12345678901234567890123,
           "nested": {"floats": [0.1, 1.5e-07, 1e23, -2.5], "pi": 3.14159, "flag": True}}


@pytest.mark.django_db
def test_it_verifies_an_entry_whose_numbers_jsonb_spells_otherwise():
    audit_record(actor="someone", action="test.thing.poke", details=NUMBERS)

    stored = AuditEntry.objects.get()
    assert stored.details["big"] == 10**20 and isinstance(stored.details["big"], int)  # jsonb's spelling, not 1e+20
    assert entry_hash(stored) != stored.hash  # so the columns alone cannot be hashed again
    code, out, _ = verify()
    assert code == 0 and "intact: 1 entries" in out


@pytest.mark.django_db
def test_it_names_an_entry_whose_json_column_was_edited():
    entry = audit_record(actor="someone", action="test.thing.poke", details=NUMBERS)
    tamper("UPDATE audit_auditentry SET details = jsonb_set(details, '{nested,floats,1}', '0.0000002') WHERE id = %s",
           [entry.id])

    code, _, err = verify()

    assert code == 1
    assert f"hash mismatch at entry {entry.id}: its details changed after it was written" in err


@pytest.mark.django_db
def test_it_names_an_entry_whose_hashed_text_was_edited():
    _, second, _ = three_entries()
    tamper("UPDATE audit_auditentry SET canonical = replace(canonical, 'user2', 'userX') WHERE id = %s", [second.id])

    code, _, err = verify()

    assert code == 1
    assert f"hash mismatch at entry {second.id}: its hashed text was changed" in err
    assert "link broken" not in err


@pytest.mark.django_db
def test_it_hashes_the_columns_again_for_entries_written_before_the_text_was_kept():
    _, second, _ = three_entries()
    tamper("UPDATE audit_auditentry SET canonical = ''", [])
    assert verify()[0] == 0

    tamper("UPDATE audit_auditentry SET actor = 'someone-else' WHERE id = %s", [second.id])

    code, _, err = verify()
    assert code == 1
    assert f"hash mismatch at entry {second.id}: its content was changed" in err


@pytest.mark.django_db
def test_it_refuses_a_truncate_of_the_audit_tables():
    three_entries()

    for table in ("audit_auditentry", "audit_auditchainhead"):
        with pytest.raises(DatabaseError, match="cannot be truncated"), transaction.atomic(), connection.cursor() as cursor:
            # The test settings allow TRUNCATE for the flush between tests; a deployment does not.
            cursor.execute("SET LOCAL shardwatch.audit_allow_truncate = 'off'")
            cursor.execute(f"TRUNCATE {table}")

    assert AuditEntry.objects.count() == 3 and AuditChainHead.objects.get().last_id == 3


@pytest.mark.django_db
def test_it_refuses_to_delete_the_head_or_move_it_back():
    three_entries()

    for sql in ("DELETE FROM audit_auditchainhead", "UPDATE audit_auditchainhead SET last_id = 2",
                "UPDATE audit_auditchainhead SET hash = %s"):
        with pytest.raises(DatabaseError, match="head"), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql, [GENESIS] if "%s" in sql else None)

    head = AuditChainHead.objects.get()
    assert (head.last_id, head.hash) == (3, AuditEntry.objects.get(id=3).hash)


@pytest.mark.django_db
def test_it_names_a_deleted_head_and_keeps_writing_after_the_last_entry():
    three_entries()
    tamper("DELETE FROM audit_auditchainhead", [], table="audit_auditchainhead")

    code, _, err = verify()
    assert code == 1 and "the chain head is missing though entries run to 3" in err

    later = audit_record(actor="later", action="test.thing.poke")

    restored = AuditEntry.objects.get(id=4)
    assert (restored.action, restored.details) == (HEAD_RESTORED, {"head": None, "last_entry_id": 3})
    assert (later.id, later.prev_hash) == (5, restored.hash)
    code, _, err = verify()
    assert code == 1
    assert "head restored at entry 4: the chain head was missing" in err
    assert "link broken" not in err and "hash mismatch" not in err and "is missing" not in err


@pytest.mark.django_db
def test_it_names_a_head_set_back_and_keeps_writing_after_the_last_entry():
    first, _, third = three_entries()
    tamper("UPDATE audit_auditchainhead SET last_id = %s, hash = %s", [first.id, first.hash], table="audit_auditchainhead")

    code, _, err = verify()
    assert code == 1 and "the chain head names entry 1 though entries run to 3: it was set back" in err

    later = audit_record(actor="later", action="test.thing.poke")

    assert AuditEntry.objects.get(id=4).details == {"head": {"last_id": 1, "hash": first.hash}, "last_entry_id": 3}
    assert later.id == 5 and AuditEntry.objects.get(id=4).prev_hash == third.hash
    code, _, err = verify()
    assert code == 1 and "head restored at entry 4: the chain head had been set back to entry 1" in err
    assert "link broken" not in err and "it was set back" not in err
