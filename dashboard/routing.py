from django.urls import path

from dashboard.consumers import FeedConsumer, InvocationConsumer

websocket_urlpatterns = [
    path("ws/feed/", FeedConsumer.as_asgi()),
    path("ws/invocations/", InvocationConsumer.as_asgi()),
]
