from django.apps import AppConfig


class DemoConfig(AppConfig):
    """What `make demo` adds on top of Shardwatch: the demo writer and admin commands and the
    example trigger handler. Nothing below imports it."""

    name = "demo"
    verbose_name = "Demo"
