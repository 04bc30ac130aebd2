from django.urls import path

from dashboard import account, alerts, api, export, views

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
    path("triggers/cursors/<int:pk>/", alerts.cursor, name="cursor"),
    path("triggers/cursors/<int:pk>/skip", alerts.cursor_skip, name="cursor_skip"),
    path("triggers/cursors/<int:pk>/bisect", alerts.cursor_bisect, name="cursor_bisect"),
    path("alerts/", alerts.alerts, name="alerts"),
    path("audit/", views.audit, name="audit"),
    path("alerts/<int:pk>/silence", alerts.alert_silence_view, name="alert_silence"),
    path("export/records.<str:fmt>", export.export, name="export"),
    path("metrics", views.metrics, name="metrics"),
    path("settings/tokens/", account.api_tokens, name="api_tokens"),
    path("settings/tokens/<int:pk>/revoke", account.api_token_revoke, name="api_token_revoke"),
    path("api/sources", api.api_sources, name="api_sources"),
    path("api/alerts/firing", api.api_alerts_firing, name="api_alerts_firing"),
    path("api/series/sources", api.api_source_series, name="api_source_series"),
    path("api/series/triggers", api.api_trigger_series, name="api_trigger_series"),
    path("api/invocations", api.api_invocations, name="api_invocations"),
    path("api/records", api.api_records, name="api_records"),
    path("api/records/<int:pk>", api.api_record, name="api_record"),
    path("api/records/<int:pk>/lambda-event", api.api_lambda_event, name="api_lambda_event"),
    path("api/items/<int:source_id>", api.api_item, name="api_item"),
]
