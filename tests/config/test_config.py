"""Settings come from the environment and refuse bad values loudly, naming the variable."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from config.env import env_bool, env_choice, env_float, env_int, env_list, env_secret_key, env_url

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("helper", "value", "message"),
    [
        (lambda: env_bool("SW_TEST"), "maybe", "SW_TEST='maybe' is not a boolean"),
        (lambda: env_int("SW_TEST"), "12x", "SW_TEST='12x' is not a whole number"),
        (lambda: env_int("SW_TEST", minimum=1), "0", "SW_TEST=0 is below the minimum of 1"),
        (lambda: env_int("SW_TEST", maximum=5), "6", "SW_TEST=6 is above the maximum of 5"),
        (lambda: env_float("SW_TEST", minimum=0.2), "0.1", "SW_TEST=0.1 is below the minimum of 0.2"),
        (lambda: env_url("SW_TEST", schemes={"redis"}), "http://x", "must be a URL with one of the schemes redis"),
        (lambda: env_url("SW_TEST", schemes={"postgres"}), "postgres://", "has no host"),
        (lambda: env_choice("SW_TEST", choices=("text", "json")), "yaml", "SW_TEST='yaml' is not one of text, json"),
    ],
)
def test_it_refuses_bad_values_naming_the_variable(monkeypatch, helper, value, message):
    monkeypatch.setenv("SW_TEST", value)
    with pytest.raises(ImproperlyConfigured, match=message.replace("(", r"\(").replace(")", r"\)")):
        helper()


def test_it_reads_good_values_and_defaults(monkeypatch):
    monkeypatch.setenv("SW_BOOL", "Yes")
    monkeypatch.setenv("SW_LIST", "a.example, b.example ,")
    monkeypatch.delenv("SW_MISSING", raising=False)
    assert env_bool("SW_BOOL") is True
    assert env_list("SW_LIST") == ["a.example", "b.example"]
    assert env_int("SW_MISSING", 7) == 7
    monkeypatch.setenv("SW_CHOICE", " JSON")
    assert env_choice("SW_CHOICE", "text", choices=("text", "json")) == "json"
    with pytest.raises(ImproperlyConfigured, match="SW_MISSING is required"):
        env_int("SW_MISSING")


def test_it_requires_a_secret_key_in_production_and_keeps_a_generated_one_for_local_runs(tmp_path, monkeypatch):
    monkeypatch.delenv("SW_SECRET", raising=False)
    with pytest.raises(ImproperlyConfigured, match="SW_SECRET is required when DEBUG is off"):
        env_secret_key("SW_SECRET", fallback_file=tmp_path / "key", allow_fallback=False)
    first = env_secret_key("SW_SECRET", fallback_file=tmp_path / "key", allow_fallback=True)
    second = env_secret_key("SW_SECRET", fallback_file=tmp_path / "key", allow_fallback=True)
    assert first == second and len(first) >= 50
    assert oct((tmp_path / "key").stat().st_mode)[-3:] == "600"
    monkeypatch.setenv("SW_SECRET", "short")
    with pytest.raises(ImproperlyConfigured, match="too short"):
        env_secret_key("SW_SECRET", fallback_file=tmp_path / "key", allow_fallback=True)


def test_it_stops_the_process_at_start_up_on_a_bad_setting():
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings", "SHARDWATCH_POLL_INTERVAL_S": "0.05"}
    result = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert "SHARDWATCH_POLL_INTERVAL_S=0.05 is below the minimum of 0.2" in result.stderr
