"""promtool, from Debian's `prometheus` package (scripts/test.sh installs it): checks an
exposition as Prometheus' own parser and linter see it."""

import shutil
import subprocess


def promtool_check_metrics(text: bytes) -> subprocess.CompletedProcess:
    """`promtool check metrics` on `text`. Raises AssertionError, saying how to install it,
    when promtool is missing: the check must never be skipped."""
    promtool = shutil.which("promtool")
    if promtool is None:
        raise AssertionError(
            "promtool is missing: install Debian's prometheus package "
            "(apt-get install -y --no-install-recommends prometheus), as scripts/test.sh does"
        )
    return subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, timeout=60)
