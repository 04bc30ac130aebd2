"""Every websocket of dashboard/routing.py, opened by every persona through the whole ASGI
application: anonymous is refused with 4401, a user without the socket's permission with 4403,
the roles are let in. The walk starts from websocket_urlpatterns, so a socket added without an
entry in SOCKETS fails test_it_knows_every_socket."""

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.test import Client

from config.asgi import application
from dashboard.routing import websocket_urlpatterns
from tests.support.personas import PERSONAS, persona_user

pytestmark = pytest.mark.django_db(transaction=True)

ORIGIN = (b"origin", b"http://localhost")
HOST = (b"host", b"localhost")
# path -> the lowest role let in.
SOCKETS = {"/ws/feed/": "Viewer", "/ws/invocations/": "Viewer"}
# What each persona gets from a socket any role may open: True (open) or the close code.
ANSWERS = {"anonymous": 4401, "outsider": 4403, "viewer": True, "operator": True, "admin": True}


def test_it_knows_every_socket():
    assert sorted("/" + str(pattern.pattern) for pattern in websocket_urlpatterns) == sorted(SOCKETS)


def headers_of(persona):
    if persona == "anonymous":
        return [HOST, ORIGIN]
    client = Client()
    client.force_login(persona_user(name=persona, role=PERSONAS[persona]))
    return [HOST, ORIGIN, (b"cookie", f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}".encode())]


@pytest.mark.parametrize("persona", list(ANSWERS))
def test_it_opens_each_socket_to_the_roles_only(persona):
    headers = headers_of(persona)

    async def attempt(path):
        communicator = WebsocketCommunicator(application, path, headers=headers)
        connected, code = await communicator.connect()
        await communicator.disconnect()
        return True if connected else code

    assert {path: async_to_sync(attempt)(path) for path in SOCKETS} == {path: ANSWERS[persona] for path in SOCKETS}
