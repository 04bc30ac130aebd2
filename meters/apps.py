from django.apps import AppConfig


class MetersConfig(AppConfig):
    name = "meters"
    verbose_name = "Meters"

    def ready(self):
        from meters import heartbeats, store  # noqa: F401  (connects the Celery signal receivers)
