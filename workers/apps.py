from django.apps import AppConfig

from streams.signals import batch_saved, records_expired


class WorkersConfig(AppConfig):
    name = "workers"
    verbose_name = "Workers"

    def ready(self):
        # Imported here, not at the top: workers.tasks imports models, and models can only
        # be imported once the app registry that is importing this module is ready.
        from workers.tasks import expire_invocations, kick_triggers, mark_cursors_pending, recount_cursors_pending

        # Marked before the kick, so a runner the kick starts finds the mark to clear.
        batch_saved.connect(mark_cursors_pending, dispatch_uid="workers.mark_cursors_pending")
        batch_saved.connect(kick_triggers, dispatch_uid="workers.kick_triggers")
        records_expired.connect(expire_invocations, dispatch_uid="workers.expire_invocations")
        records_expired.connect(recount_cursors_pending, dispatch_uid="workers.recount_cursors_pending")
