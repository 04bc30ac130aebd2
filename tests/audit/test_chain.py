"""The chain itself: each entry linked to the one before, an edited or deleted entry found and
named by `manage.py audit_verify`, and two writers at once never forking it."""

import threading
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import DatabaseError, connection, transaction
from django.test import RequestFactory

from audit.chain import GENESIS, audit_record
from audit.models import AuditEntry


def verify() -> tuple[int, str, str]:
    out, err = StringIO(), StringIO()
    try:
        call_command("audit_verify", stdout=out, stderr=err)
        code = 0
    except SystemExit as exc:
        code = exc.code
    return code, out.getvalue(), err.getvalue()


def tamper(sql, params):
    """What someone with the table owner's rights can do: switch off the append-only trigger
    (audit/migrations/0002_append_only.py), then change the table."""
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE audit_auditentry DISABLE TRIGGER audit_entry_append_only")
        cursor.execute(sql, params)
        cursor.execute("ALTER TABLE audit_auditentry ENABLE TRIGGER audit_entry_append_only")


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
