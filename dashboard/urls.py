from django.urls import path

from dashboard import api, api_records, export, views

app_name = "dashboard"
urlpatterns = [
    path("", views.overview, name="overview"),
    path("feed/", views.feed, name="feed"),
    path("history/", views.history, name="history"),
    path("records/<int:pk>/", views.record, name="record"),
    path("items/<int:source_id>/", views.item, name="item"),
    path("triggers/", views.triggers, name="triggers"),
    path("triggers/timeline/", views.timeline, name="timeline"),
    path("triggers/dead-letters/", views.dead_letters, name="dead_letters"),
    path("invocations/<int:pk>/", views.invocation, name="invocation"),
    path("export/records.<str:fmt>", export.export, name="export"),
    path("api/sources", api.api_sources, name="api_sources"),
    path("api/invocations", api.api_invocations, name="api_invocations"),
    path("api/records", api_records.records, name="api_records"),
    path("api/records/<int:pk>", api_records.record, name="api_record"),
    path("api/records/<int:pk>/lambda-event", api_records.record_lambda_event, name="api_lambda_event"),
    path("api/items/<int:source_id>", api_records.item, name="api_item"),
]
