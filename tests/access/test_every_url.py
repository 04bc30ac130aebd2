"""Every URL pattern of the URLconf, asked for by every persona, with the answer its role gets
(dashboard/roles.py). The walk starts from django.urls.get_resolver(), so a view added without
an entry here fails test_it_knows_the_expected_answer_of_every_url_pattern; an entry decides
what each persona must get, so a view added without a permission check fails the walk."""

import re
from urllib.parse import urlencode

import pytest
from asgiref.sync import async_to_sync
from django.contrib.contenttypes.models import ContentType
from django.urls import URLResolver, get_resolver

pytestmark = pytest.mark.django_db

PERSONAS = ["anonymous", "outsider", "viewer", "operator", "admin"]
RANK = {"anonymous": 0, "outsider": 0, "viewer": 1, "operator": 2, "admin": 3}
LOGIN = "/admin/login/"


def url_patterns(resolver=None, prefix="", namespace=""):
    """(route, "namespace:name" or None) of every pattern, nested ones included."""
    for entry in (resolver or get_resolver()).url_patterns:
        if isinstance(entry, URLResolver):
            inner = ":".join(part for part in (namespace, entry.namespace) if part)
            yield from url_patterns(entry, prefix + str(entry.pattern), inner)
        else:
            name = entry.name and (f"{namespace}:{entry.name}" if namespace else entry.name)
            yield prefix + str(entry.pattern), name


# A dashboard page or form post: (URL from the world, method, the lowest role that may, what it gets).
def page(url, level, *, method="GET", ok=200, data=None):
    return {"kind": "page", "url": url, "level": level, "method": method, "ok": ok, "data": data or {}}


def api(url, level):
    return {"kind": "api", "url": url, "level": level, "method": "GET", "ok": 200}


def admin_page(url, level, *, ok=200):
    return {"kind": "admin", "url": url, "level": level, "method": "GET", "ok": ok}


def same_for_all(url, answers):
    """A URL with rules of its own (probes, /metrics): `answers` is {persona: status}."""
    return {"kind": "own", "url": url, "answers": answers, "method": "GET"}


def record_url(w, tail=""):
    return f"/records/{w.record.pk}/{tail}"


# route -> [checks]. POST-only views answer a GET with 405 to whom may post.
ROUTES = {
    "healthz": [same_for_all(lambda w: "/healthz", None)],
    "readyz": [same_for_all(lambda w: "/readyz", None)],
    "favicon.ico": [same_for_all(lambda w: "/favicon.ico", None)],
    # OpenID Connect login, off here (no OIDC_ISSUER): tests/browser_oidc logs in through it.
    "oidc/authenticate/": [same_for_all(lambda w: "/oidc/authenticate/", {p: 404 for p in PERSONAS})],
    "oidc/callback/": [same_for_all(lambda w: "/oidc/callback/", {p: 404 for p in PERSONAS})],
    # METRICS_TOKEN or any login: Prometheus' scrape keeps its own rule.
    "metrics": [same_for_all(lambda w: "/metrics", {"anonymous": 401, "outsider": 403, "viewer": 200, "operator": 200, "admin": 200})],
    "": [page(lambda w: "/", "viewer")],
    "feed/": [page(lambda w: "/feed/", "viewer")],
    "history/": [page(lambda w: "/history/", "viewer")],
    "records/<int:pk>/": [page(lambda w: record_url(w), "viewer")],
    "items/<int:source_id>/": [page(lambda w: f"/items/{w.source.pk}/?" + urlencode({"key": w.record.item_key}), "viewer")],
    "triggers/": [page(lambda w: "/triggers/", "viewer")],
    "triggers/timeline/": [page(lambda w: "/triggers/timeline/", "viewer")],
    "triggers/dead-letters/": [page(lambda w: "/triggers/dead-letters/", "viewer")],
    "invocations/<int:pk>/": [page(lambda w: f"/invocations/{w.invocation.pk}/", "viewer")],
    "triggers/cursors/<int:pk>/": [page(lambda w: f"/triggers/cursors/{w.cursor.pk}/", "viewer")],
    "triggers/cursors/<int:pk>/skip": [
        page(lambda w: f"/triggers/cursors/{w.cursor.pk}/skip", "operator", ok=405),
        page(lambda w: f"/triggers/cursors/{w.cursor.pk}/skip", "operator", method="POST", ok=302),
    ],
    "triggers/cursors/<int:pk>/bisect": [
        page(lambda w: f"/triggers/cursors/{w.cursor.pk}/bisect", "operator", ok=405),
        page(lambda w: f"/triggers/cursors/{w.cursor.pk}/bisect", "operator", method="POST", ok=302),
    ],
    "alerts/": [page(lambda w: "/alerts/", "viewer")],
    "alerts/<int:pk>/silence": [
        page(lambda w: f"/alerts/{w.state.pk}/silence", "operator", ok=405),
        page(lambda w: f"/alerts/{w.state.pk}/silence", "operator", method="POST", ok=302, data={"hours": "1"}),
    ],
    "audit/": [page(lambda w: "/audit/", "admin")],
    "export/records.<str:fmt>": [api(lambda w: "/export/records.ndjson", "operator"),
                                 api(lambda w: "/export/records.csv", "operator")],
    # Any role makes tokens for itself. Revoking another's token (the world's is "someone"'s) is 404.
    "settings/tokens/": [
        page(lambda w: "/settings/tokens/", "viewer"),
        page(lambda w: "/settings/tokens/", "viewer", method="POST", data={"name": "walk", "expires_in_days": "1"}),
    ],
    "settings/tokens/<int:pk>/revoke": [
        page(lambda w: f"/settings/tokens/{w.token.pk}/revoke", "viewer", ok=405),
        page(lambda w: f"/settings/tokens/{w.token.pk}/revoke", "viewer", method="POST", ok=404),
    ],
    "api/sources": [api(lambda w: "/api/sources", "viewer")],
    "api/alerts/firing": [api(lambda w: "/api/alerts/firing", "viewer")],
    "api/series/sources": [api(lambda w: "/api/series/sources", "viewer")],
    "api/series/triggers": [api(lambda w: "/api/series/triggers", "viewer")],
    "api/invocations": [api(lambda w: "/api/invocations", "viewer")],
    "api/records": [api(lambda w: "/api/records", "viewer")],
    "api/records/<int:pk>": [api(lambda w: f"/api/records/{w.record.pk}", "viewer")],
    "api/records/<int:pk>/lambda-event": [api(lambda w: f"/api/records/{w.record.pk}/lambda-event", "viewer")],
    "api/items/<int:source_id>": [api(lambda w: f"/api/items/{w.source.pk}?" + urlencode({"key": w.record.item_key}), "viewer")],
    # The admin's own pages. Who holds no permission is sent to its login page.
    "admin/": [admin_page(lambda w: "/admin/", "viewer")],
    "admin/password_change/": [admin_page(lambda w: "/admin/password_change/", "viewer")],
    "admin/password_change/done/": [admin_page(lambda w: "/admin/password_change/done/", "viewer")],
    "admin/jsi18n/": [admin_page(lambda w: "/admin/jsi18n/", "viewer")],
    # It lists what the viewing permission of the related model allows.
    "admin/autocomplete/": [
        admin_page(lambda w: "/admin/autocomplete/?app_label=workers&model_name=trigger&field_name=source", "viewer"),
        admin_page(lambda w: "/admin/autocomplete/?app_label=auth&model_name=user&field_name=groups", "admin"),
    ],
    # No model has a get_absolute_url.
    "admin/r/<path:content_type_id>/<path:object_id>/": [
        admin_page(lambda w: f"/admin/r/{ContentType.objects.get_for_model(w.trigger).pk}/{w.trigger.pk}/", "viewer", ok=404)],
    "admin/^(?P<app_label>streams|workers|alerts|dashboard|auth)/$": [
        admin_page(lambda w: "/admin/streams/", "viewer"),
        admin_page(lambda w: "/admin/workers/", "viewer"),
        admin_page(lambda w: "/admin/alerts/", "viewer"),
        # An app none of whose models the user may see is not there for them.
        {**admin_page(lambda w: "/admin/auth/", "admin"), "refused": 404},
        {**admin_page(lambda w: "/admin/dashboard/", "admin"), "refused": 404},
    ],
    "admin/(?P<url>.*)$": [admin_page(lambda w: "/admin/no-such-page/", "viewer", ok=404)],
    "admin/workers/trigger/<int:pk>/test-pattern/": [
        admin_page(lambda w: f"/admin/workers/trigger/{w.trigger.pk}/test-pattern/", "viewer")],
    "admin/auth/user/<id>/password/": [admin_page(lambda w: f"/admin/auth/user/{w.pk('auth.user')}/password/", "admin")],
    # Special cases of the login and logout pages: see test_it_logs_in_every_role_and_no_outsider.
    "admin/login/": [same_for_all(lambda w: "/admin/login/", {"anonymous": 200, "outsider": 200, "viewer": 302,
                                                               "operator": 302, "admin": 302})],
    # Logging out is a POST; who is not let into the admin is sent to its index (and so to login).
    "admin/logout/": [same_for_all(lambda w: "/admin/logout/", {"anonymous": 302, "outsider": 302, "viewer": 405,
                                                                 "operator": 405, "admin": 405})],
}

# Each model in the admin: the lowest role that may view it, add one, delete one (None: nobody,
# not even Admin: these are written by Shardwatch itself). Viewing covers the changelist, the
# change page (read-only without change_) and the history.
ADMIN_MODELS = {
    "auth.group": ("admin", None, None),
    "auth.user": ("admin", "admin", "admin"),
    "streams.streamsource": ("viewer", "admin", "admin"),
    "streams.stream": ("viewer", None, None),
    "streams.shard": ("viewer", None, None),
    "streams.gap": ("viewer", None, None),
    "streams.changerecord": ("viewer", None, None),
    "workers.trigger": ("viewer", "admin", "admin"),
    "workers.invocation": ("viewer", None, None),
    "workers.deadletter": ("viewer", None, None),
    "alerts.channel": ("admin", "admin", "admin"),
    "alerts.rule": ("viewer", "admin", "admin"),
    "alerts.alertstate": ("viewer", None, None),
    "alerts.alerttransition": ("viewer", None, None),
    "alerts.delivery": ("viewer", None, None),
    # Made by their owners on /settings/tokens/ only; an admin sees and revokes them.
    "dashboard.apitoken": ("admin", None, None),
}
# Change pages that send to the dashboard's page of the object, which masks item data.
ADMIN_SHOWN_BY_DASHBOARD = {"streams.changerecord"}
ADMIN_MODEL_ROUTE = re.compile(r"^admin/(\w+)/(\w+)/(|add/|<path:object_id>/|<path:object_id>/(history|delete|change)/)$")


def admin_model_checks(app, model, tail):
    view, add, delete = ADMIN_MODELS[f"{app}.{model}"]
    base = f"/admin/{app}/{model}/"

    def obj(w, suffix=""):
        return f"{base}{w.pk(f'{app}.{model}')}/{suffix}"

    if tail == "":
        return [admin_page(lambda w: base, view)]
    if tail == "add/":
        return [admin_page(lambda w: base + "add/", add)]
    if tail == "<path:object_id>/":
        # Django's redirect to the change page, for whoever may open the admin at all.
        return [admin_page(lambda w: obj(w), "viewer", ok=302)]
    suffix = tail.rsplit("/", 2)[-2] + "/"
    if f"{app}.{model}" in ADMIN_SHOWN_BY_DASHBOARD and suffix == "change/":
        return [admin_page(lambda w: obj(w, suffix), view, ok=302)]
    return [admin_page(lambda w: obj(w, suffix), delete if suffix == "delete/" else view)]


def checks_for(route):
    if route in ROUTES:
        return ROUTES[route]
    match = ADMIN_MODEL_ROUTE.match(route)
    if match and f"{match[1]}.{match[2]}" in ADMIN_MODELS:
        return admin_model_checks(match[1], match[2], match[3])
    return None


def test_it_knows_the_expected_answer_of_every_url_pattern():
    unknown = [route for route, _ in url_patterns() if checks_for(route) is None]
    assert unknown == []


def streamed(response) -> bytes:
    """The body of an async streaming response (the export), read to its end."""

    async def collect():
        return b"".join([chunk async for chunk in response.streaming_content])

    return async_to_sync(collect)()


def expected(check, persona):
    """(status, where a redirect must lead, or None)."""
    if check["kind"] == "own":
        return (check["answers"] or {}).get(persona), None
    allowed = check["level"] is not None and RANK[persona] >= RANK[check["level"]]
    if allowed:
        return check["ok"], None
    if persona == "anonymous":
        return (401, None) if check["kind"] == "api" else (302, LOGIN)
    if check["kind"] == "admin" and persona == "outsider":
        return 302, LOGIN
    return check.get("refused", 403), None


@pytest.mark.parametrize("persona", PERSONAS)
def test_it_answers_every_url_as_the_personas_role_allows(request, world, persona):
    client = request.getfixturevalue(persona)
    answers, wrong = {}, []
    for route, _ in url_patterns():
        for check in checks_for(route):
            url = check["url"](world)
            if check["method"] == "POST":
                response = client.post(url, check.get("data", {}))
            else:
                response = client.get(url)
            if getattr(response, "streaming", False):
                streamed(response)
            status, leads_to = expected(check, persona)
            answers[(check["method"], url)] = response.status_code
            if status is None:
                continue
            location = response.headers.get("Location", "")
            if response.status_code != status or (leads_to and not location.startswith(leads_to)):
                wrong.append((check["method"], url, response.status_code, location, "expected", status, leads_to))
    assert wrong == []


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/favicon.ico"])
def test_it_answers_the_probes_the_same_whoever_asks(world, anonymous, outsider, viewer, admin, path):
    assert len({client.get(path).status_code for client in (anonymous, outsider, viewer, admin)}) == 1
