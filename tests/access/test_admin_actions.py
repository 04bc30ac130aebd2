"""The admin for each role: which changelists it reaches, which actions it is offered there
(admin actions' allowed_permissions), and that an action it is not offered is refused when
posted anyway."""

import pytest

from alerts.models import Rule
from streams.models import StreamSource
from workers.models import DeadLetter, Trigger

pytestmark = pytest.mark.django_db

# changelist -> the actions each role is offered there (beside nothing: no list, no actions).
ACTIONS = {
    "/admin/workers/trigger/": {
        "viewer": set(),
        "operator": {"enable", "disable", "reset_to_trim_horizon", "reset_to_latest", "reset_to_time_or_sequence", "replay_range"},
        "admin": {"enable", "disable", "reset_to_trim_horizon", "reset_to_latest", "reset_to_time_or_sequence", "replay_range",
                  "delete_selected"},
    },
    "/admin/workers/deadletter/": {"viewer": set(), "operator": {"retry"}, "admin": {"retry"}},
    "/admin/streams/streamsource/": {"viewer": set(), "operator": set(), "admin": {"enable", "disable", "delete_selected"}},
    "/admin/alerts/rule/": {"viewer": set(), "operator": set(), "admin": {"enable", "disable", "delete_selected"}},
    "/admin/alerts/channel/": {"viewer": None, "operator": None, "admin": {"send_test", "new_secret", "delete_selected"}},
    "/admin/auth/user/": {"viewer": None, "operator": None, "admin": {"delete_selected"}},
    "/admin/dashboard/apitoken/": {"viewer": None, "operator": None, "admin": {"revoke"}},
}


def offered(response) -> set[str] | None:
    """The actions in a changelist's action menu; None when the changelist is refused."""
    if response.status_code == 403:
        return None
    assert response.status_code == 200
    form = response.context["action_form"]
    return {value for value, _ in form.fields["action"].choices if value} if form else set()


@pytest.mark.parametrize("persona", ["viewer", "operator", "admin"])
def test_it_offers_each_role_only_the_actions_it_may_take(request, world, persona):
    client = request.getfixturevalue(persona)
    assert {url: offered(client.get(url)) for url in ACTIONS} == {url: roles[persona] for url, roles in ACTIONS.items()}


def test_it_lets_an_operator_disable_a_trigger_and_not_a_source(world, operator):
    operator.post("/admin/workers/trigger/", {"action": "disable", "_selected_action": [world.trigger.pk]})
    operator.post("/admin/streams/streamsource/", {"action": "disable", "_selected_action": [world.source.pk]})

    world.trigger.refresh_from_db()
    world.source.refresh_from_db()
    assert not world.trigger.enabled
    assert world.source.enabled


def test_it_refuses_a_viewer_the_operators_actions_posted_anyway(world, viewer):
    viewer.post("/admin/workers/trigger/", {"action": "disable", "_selected_action": [world.trigger.pk]})
    viewer.post("/admin/workers/deadletter/", {"action": "retry", "_selected_action": [world.letter.pk]})
    viewer.post("/admin/alerts/rule/", {"action": "disable", "_selected_action": [Rule.objects.get().pk]})

    assert Trigger.objects.get(pk=world.trigger.pk).enabled
    assert DeadLetter.objects.get(pk=world.letter.pk).retried_at is None
    assert Rule.objects.get().enabled


def test_it_lets_an_operator_silence_an_alert_in_the_admin_and_a_viewer_not(world, operator, viewer):
    url = f"/admin/alerts/alertstate/{world.state.pk}/change/"
    refused = viewer.post(url, {"silenced_until_0": "2099-01-01", "silenced_until_1": "00:00:00"})
    world.state.refresh_from_db()
    assert refused.status_code == 403 and world.state.silenced_until is None

    operator.post(url, {"silenced_until_0": "2099-01-01", "silenced_until_1": "00:00:00"})
    world.state.refresh_from_db()
    assert world.state.silenced_until is not None and world.state.silenced_until.year == 2099


def test_it_lets_only_an_admin_disable_a_source(world, operator, admin):
    action = {"action": "disable", "_selected_action": [world.source.pk]}
    operator.post("/admin/streams/streamsource/", action)
    assert StreamSource.objects.get(pk=world.source.pk).enabled

    admin.post("/admin/streams/streamsource/", action)
    assert not StreamSource.objects.get(pk=world.source.pk).enabled
