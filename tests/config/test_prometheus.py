"""deploy/prometheus: the alerting rules pass their own unit tests (rules_test.yml) and
`promtool check rules`, and the sample scrape config passes `promtool check config`.
promtool is Debian's `prometheus` package, which scripts/test.sh installs as it does Chromium."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from meters.heartbeats import HEARTBEAT_ALIVE_S
from workers.models import FAILED_OUTCOMES

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"


def promtool(*args: str, cwd: Path = DEPLOY) -> subprocess.CompletedProcess:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(
            "promtool is missing. scripts/test.sh installs it when run as root; otherwise:\n"
            "  sudo apt-get update && sudo apt-get install -y --no-install-recommends prometheus"
        )
    return subprocess.run([path, *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def test_it_passes_the_alerting_rules_unit_tests():
    result = promtool("test", "rules", "rules_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_it_checks_the_alerting_rules():
    result = promtool("check", "rules", "rules.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 12 rules found" in result.stdout


def test_it_accepts_the_sample_scrape_config_with_its_token_file(tmp_path):
    for name in ("prometheus.yml", "rules.yml"):
        shutil.copy(DEPLOY / name, tmp_path / name)
    missing = promtool("check", "config", "prometheus.yml", cwd=tmp_path)
    assert missing.returncode != 0 and "shardwatch-metrics-token" in missing.stdout + missing.stderr

    (tmp_path / "shardwatch-metrics-token").write_text("a-metrics-token\n")
    result = promtool("check", "config", "prometheus.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 12 rules found" in result.stdout


def test_it_uses_the_heartbeat_figure_of_meters_in_the_rules():
    rules = {rule["alert"]: rule for group in yaml.safe_load((DEPLOY / "rules.yml").read_text())["groups"]
             for rule in group["rules"]}
    heartbeat_rules = {name: rule for name, rule in rules.items() if "shardwatch_heartbeat_age_seconds" in rule["expr"]}
    assert heartbeat_rules, "no rule reads shardwatch_heartbeat_age_seconds"
    for name, rule in heartbeat_rules.items():
        figures = re.findall(r"shardwatch_heartbeat_age_seconds\{[^}]*\}\)\s*>\s*([0-9.]+)", rule["expr"])
        assert figures and {float(figure) for figure in figures} == {HEARTBEAT_ALIVE_S}, (name, rule["expr"])
        assert f"{HEARTBEAT_ALIVE_S:g} s" in rule["annotations"]["description"], name


def test_it_counts_the_failed_outcomes_of_workers_in_the_error_rate_rule():
    rules = {rule["alert"]: rule for group in yaml.safe_load((DEPLOY / "rules.yml").read_text())["groups"]
             for rule in group["rules"]}
    [failed] = re.findall(r'outcome=~"([^"]+)"', rules["ShardwatchTriggerErrorRateHigh"]["expr"])
    assert set(failed.split("|")) == FAILED_OUTCOMES
