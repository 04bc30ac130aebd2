"""Sparklines: per-minute counts drawn as SVG bars, in one place for every page.

The server draws them: the trigger list needs no script, and the overview's script fills the
bars /api/sources sends (templates/dashboard/_sparkline.html is the markup, for both)."""

from datetime import datetime, timedelta

# Bars are drawn in a 60 x 24 box: one unit per minute, up to 22 high over a baseline at 23.5.
BOX_HEIGHT = 24
BAR_MAX = 22


def spark_bars(*, counts: list[int], now: datetime, noun: str) -> list[dict]:
    """The bars for per-minute `counts`, oldest minute first, the last being the minute `now`
    is in (still running). Minutes with no count get no bar. Each bar: {"x", "y", "height"}
    (SVG user units as text), "now" (the running minute), "title" ("12:30 UTC: 3 records",
    `noun` made plural as needed)."""
    peak = max([1, *counts])
    first = now.replace(second=0, microsecond=0) - timedelta(minutes=len(counts) - 1)
    bars = []
    for index, count in enumerate(counts):
        if not count:
            continue
        height = max(1.0, count / peak * BAR_MAX)
        minute = first + timedelta(minutes=index)
        bars.append({
            "x": f"{index + 0.1:.1f}", "y": f"{BOX_HEIGHT - height:.2f}", "height": f"{height:.2f}",
            "now": index == len(counts) - 1, "title": f"{minute:%H:%M} UTC: {count} {noun}{'s' if count != 1 else ''}",
        })
    return bars


# What a <template> holds to draw bars from: one bar, for a script to copy once per bar.
BLANK_BARS = [{"x": "0", "y": "0", "height": "0", "now": False, "title": ""}]
