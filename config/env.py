"""Settings from the environment.

Every setting Shardwatch reads from the environment goes through these helpers, so that a
bad value stops the process at start-up with a message naming the variable, instead of
surfacing later as a confusing failure deep in a worker.
"""

import os
from pathlib import Path
from urllib.parse import urlparse

from django.core.exceptions import ImproperlyConfigured
from django.core.management.utils import get_random_secret_key

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
_MISSING = object()


def _raw(name, default):
    value = os.environ.get(name)
    if value is None:
        if default is _MISSING:
            raise ImproperlyConfigured(f"Environment variable {name} is required but not set.")
        return None
    return value.strip()


def env_str(name, default=_MISSING):
    value = _raw(name, default)
    return default if value is None else value


def env_bool(name, default=_MISSING):
    value = _raw(name, default)
    if value is None:
        return default
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name}={value!r} is not a boolean; use one of 1/0, true/false, yes/no, on/off.")


def env_int(name, default=_MISSING, *, minimum=None, maximum=None):
    value = _raw(name, default)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={value!r} is not a whole number.") from None
    if minimum is not None and number < minimum:
        raise ImproperlyConfigured(f"{name}={number} is below the minimum of {minimum}.")
    if maximum is not None and number > maximum:
        raise ImproperlyConfigured(f"{name}={number} is above the maximum of {maximum}.")
    return number


def env_float(name, default=_MISSING, *, minimum=None):
    value = _raw(name, default)
    if value is None:
        return default
    try:
        number = float(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={value!r} is not a number.") from None
    if minimum is not None and number < minimum:
        raise ImproperlyConfigured(f"{name}={number} is below the minimum of {minimum}.")
    return number


def env_choice(name, default=_MISSING, *, choices):
    """One of `choices` (strings), compared without regard to case; returned as listed there."""
    value = _raw(name, default)
    if value is None:
        return default
    for choice in choices:
        if value.lower() == choice.lower():
            return choice
    raise ImproperlyConfigured(f"{name}={value!r} is not one of {', '.join(choices)}.")


def env_list(name, default=_MISSING):
    value = _raw(name, default)
    if value is None:
        return list(default)
    return [item.strip() for item in value.split(",") if item.strip()]


def env_url(name, default=_MISSING, *, schemes):
    value = _raw(name, default)
    if value is None:
        return default
    parsed = urlparse(value)
    if parsed.scheme not in schemes:
        raise ImproperlyConfigured(f"{name}={value!r} must be a URL with one of the schemes {', '.join(sorted(schemes))}.")
    if parsed.scheme not in {"sqlite"} and not parsed.hostname:
        raise ImproperlyConfigured(f"{name}={value!r} has no host.")
    return value


def env_secret_key(name, *, fallback_file: Path, allow_fallback: bool):
    """SECRET_KEY from the environment; for local runs, a key generated once into an ignored file.

    Production (allow_fallback false) must set the variable: a key invented per process would
    silently log everybody out on every restart and differ between web and workers.
    """
    value = _raw(name, None)
    if value:
        if len(value) < 32:
            raise ImproperlyConfigured(f"{name} is too short; use at least 32 random characters.")
        return value
    if not allow_fallback:
        raise ImproperlyConfigured(f"{name} is required when DEBUG is off.")
    if not fallback_file.exists():
        fallback_file.parent.mkdir(parents=True, exist_ok=True)
        fallback_file.write_text(get_random_secret_key())
        fallback_file.chmod(0o600)
    return fallback_file.read_text().strip()


def env_mapping(name, default=_MISSING, *, values):
    """{key: value} from "key=value,key=value", every value one of `values` (compared without
    regard to case, returned as listed there). Keys are kept as written; a key given twice, an
    item without "=" or an empty key is refused."""
    raw = _raw(name, default)
    if raw is None:
        return dict(default)
    mapping = {}
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        key, sep, value = (part.strip() for part in item.rpartition("="))
        if not sep or not key:
            raise ImproperlyConfigured(f"{name}: {item!r} is not key=value.")
        if key in mapping:
            raise ImproperlyConfigured(f"{name}: {key!r} is given twice.")
        matched = [choice for choice in values if choice.lower() == value.lower()]
        if not matched:
            raise ImproperlyConfigured(f"{name}: {value!r} (for {key!r}) is not one of {', '.join(values)}.")
        mapping[key] = matched[0]
    return mapping
