# The live feed consumer arrives with the dashboard issue; until then no websocket route exists
# and the ASGI router refuses every websocket.
websocket_urlpatterns: list = []
