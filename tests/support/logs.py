"""Log lines as LOG_FORMAT=json writes them, captured from one logger for a test."""

import io
import json
import logging
from contextlib import contextmanager

from django.conf import settings
from pythonjsonlogger.json import JsonFormatter

from meters.logcontext import LogContextFilter


@contextmanager
def json_lines(logger_name: str):
    """Yields a function returning the lines `logger_name` logged so far, each decoded, through
    the JSON formatter and context filter that settings.LOGGING configures."""
    options = {name: value for name, value in settings.LOGGING["formatters"]["json"].items() if name != "()"}
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter(**options))
    handler.addFilter(LogContextFilter())
    logger = logging.getLogger(logger_name)
    logger.addHandler(handler)
    try:
        yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    finally:
        logger.removeHandler(handler)
