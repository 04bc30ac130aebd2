import logging.config
import os

from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("shardwatch")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


def _logging_configure(*, loglevel=None) -> None:
    from django.conf import settings

    logging.config.dictConfig(settings.LOGGING)
    # Celery's own warnings (running as root, say) are issued before it sets logging up.
    logging.captureWarnings(True)
    if loglevel:
        logging.getLogger().setLevel(loglevel)


@signals.setup_logging.connect
def _logging_setup(loglevel=None, **kwargs):
    """Workers and beat log through settings.LOGGING, as the web process does: LOG_FORMAT's
    format and the log context's fields on every record, Celery's and the tasks' included.

    Celery configures no logging of its own when this signal has a receiver (it would give its
    task loggers a text handler of their own); so the command line's --loglevel is applied here,
    and print() output still goes to the log, as Celery does by default (worker_redirect_stdouts).
    """
    _logging_configure(loglevel=loglevel)
    if app.conf.worker_redirect_stdouts:
        app.log.redirect_stdouts(app.conf.worker_redirect_stdouts_level)


@signals.celeryd_init.connect
def _worker_init(sender=None, instance=None, **kwargs):
    """Logging from the worker's first step on, and with LOG_FORMAT=json no start-up banner,
    which Celery prints rather than logs. Beat prints its banner before any signal: start it
    with `celery -q beat` (or CELERY_QUIET=1) for the same. Celery also writes "worker: Warm
    shutdown (MainProcess)" straight to stdout on SIGTERM; nothing here can make that JSON."""
    from django.conf import settings

    _logging_configure()
    if settings.LOG_FORMAT == "json" and instance is not None:
        instance.quiet = True
