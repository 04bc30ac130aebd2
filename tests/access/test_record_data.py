"""Pages named after one model that show another's data: the trigger's FilterCriteria test and
a cursor's failing batch show change records, so they also want streams.view_changerecord. The
roles all hold it; a group an installation builds for itself may not."""

import pytest
from django.contrib.auth.models import Permission
from django.test import Client

from tests.support.personas import persona_user

pytestmark = pytest.mark.django_db


def holding(*names: str) -> Client:
    """A client logged in as a new user in no role holding exactly `names` ("app_label.codename")."""
    user = persona_user(name=f"holding-{len(names)}", role=None)
    for name in names:
        app_label, codename = name.split(".")
        user.user_permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.parametrize(("url", "needed"), [
    (lambda w: f"/admin/workers/trigger/{w.trigger.pk}/test-pattern/", "workers.view_trigger"),
    (lambda w: f"/triggers/cursors/{w.cursor.pk}/", "workers.view_triggercursor"),
])
def test_it_shows_record_data_only_to_who_may_view_change_records(world, url, needed):
    without = holding(needed).get(url(world))
    with_records = holding(needed, "streams.view_changerecord").get(url(world))

    assert without.status_code == 403 and b"ORDER#1" not in without.content
    assert with_records.status_code == 200

