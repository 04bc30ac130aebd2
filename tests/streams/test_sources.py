"""Adding a source through the command line and the admin: validated against the real table."""

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command

from streams.models import Stream, StreamSource
from streams.sources import source_add

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client):
    user = User.objects.create_superuser("owner", "owner@example.com", "a-long-password-1")
    client.force_login(user)
    return client


def test_it_adds_a_source_from_the_command_line(make_table, capsys):
    table = make_table(view_type="NEW_IMAGE")

    call_command("add_source", table, "--region", "us-east-1", "--retention-days", "3")

    source = StreamSource.objects.get(table_name=table)
    assert source.view_type == "NEW_IMAGE"
    assert source.key_schema == ["pk", "sk"]
    assert source.retention_days == 3
    assert Stream.objects.get(source=source).arn == source.stream_arn
    assert f"Watching {table}" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("table_kind", "message"),
    [("missing", "does not exist in region us-east-1"), ("streamless", "has no stream enabled")],
)
def test_it_explains_why_a_table_cannot_be_added(make_table, dynamodb_endpoint, table_kind, message):
    table = "no-such-table" if table_kind == "missing" else make_table(stream=False)
    with pytest.raises(CommandError, match=message):
        call_command("add_source", table, "--region", "us-east-1")
    assert not StreamSource.objects.exists()


def test_it_refuses_the_same_table_twice(make_table):
    table = make_table()
    call_command("add_source", table, "--region", "us-east-1")
    with pytest.raises(CommandError, match="already a source"):
        call_command("add_source", table, "--region", "us-east-1")
    assert StreamSource.objects.count() == 1


# The source form's inline of masking rules (streams.admin.MaskingRuleInline), posted empty.
NO_MASKING_RULES = {"masking_rules-TOTAL_FORMS": "0", "masking_rules-INITIAL_FORMS": "0"}


def test_it_adds_a_source_in_the_admin(admin_client, make_table):
    table = make_table()
    response = admin_client.post(
        "/admin/streams/streamsource/add/",
        {"table_name": table, "region": "us-east-1", "endpoint_url": "", "start_position": "LATEST",
         "retention_days": "7", "enabled": "on", **NO_MASKING_RULES},
    )
    assert response.status_code == 302
    source = StreamSource.objects.get(table_name=table)
    assert source.start_position == "LATEST"
    assert source.stream_arn.startswith("arn:aws:dynamodb")
    assert Stream.objects.filter(source=source).count() == 1


def test_it_changes_a_sources_retention_in_the_admin_without_asking_aws_again(admin_client, make_table):
    # The table, region and endpoint are read-only once added: the change form does not post them.
    source = source_add(table_name=make_table(), region="us-east-1")

    response = admin_client.post(f"/admin/streams/streamsource/{source.pk}/change/", {"retention_days": "30", **NO_MASKING_RULES})

    assert response.status_code == 302, response.content.decode()[:2000]
    source.refresh_from_db()
    assert source.retention_days == 30 and not source.enabled


def test_it_shows_the_admin_why_a_table_cannot_be_added(admin_client, make_table):
    table = make_table(stream=False)
    response = admin_client.post(
        "/admin/streams/streamsource/add/",
        {"table_name": table, "region": "us-east-1", "endpoint_url": "", "start_position": "TRIM_HORIZON",
         "retention_days": "7", "enabled": "on"},
    )
    assert response.status_code == 200
    assert "has no stream enabled" in response.content.decode()
    assert not StreamSource.objects.exists()


def test_it_shows_sources_and_shards_on_the_overview(admin_client, make_table):
    table = make_table()
    call_command("add_source", table, "--region", "us-east-1")
    from streams.sources import source_discover

    source_discover(source_id=StreamSource.objects.get().pk)
    page = admin_client.get("/").content.decode()
    assert table in page
    assert "Active" in page
    assert "shardId-" in page


def test_it_sends_anonymous_visitors_to_log_in(client):
    response = client.get("/")
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]
