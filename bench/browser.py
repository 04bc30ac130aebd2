"""Write-to-browser latency: from put_item to the row in Chromium's DOM, on the live feed page.

The whole stack runs as in production (bench.live: DynamoDB Local, a Celery worker and beat,
daphne), and Debian's Chromium, driven by Playwright, shows /feed/ for the watched table,
logged in with a session cookie of the bench user. A MutationObserver in the page notes
performance.timeOrigin + performance.now() when a row whose key cell names a written item
is added; the item's key carries the wall-clock time just before its put_item (same machine,
same clock). The delay includes feed.js's batching of rows (at most one render per 100 ms
and animation frame), as a person sees it.

A listener on the source's channel group splits the delay: up to the worker's push, and from
the push to the DOM (daphne, the websocket, feed.js and the browser's rendering).
"""

import asyncio
import time

from playwright.async_api import async_playwright

from bench import live, writer
from bench.common import percentile
from tests.support.chromium import CHROMIUM, CHROMIUM_ARGS

WRITES = 300
RATE_PER_S = 20
WARMUP_WRITES = 20
TIMEOUT_S = 30

# Runs in the page once it is live: records when each row for a written item appears.
_OBSERVER = """
(prefixes) => {
  window.__seen = {};
  const tbody = document.getElementById("feed-rows");
  const note = (tr, now) => {
    const cell = tr.querySelector && tr.querySelector(".feed-key-cell");
    const text = cell ? cell.textContent : "";
    if (prefixes.some((prefix) => text.startsWith(prefix)) && !(text in window.__seen)) {
      window.__seen[text] = now;
    }
  };
  new MutationObserver((mutations) => {
    const now = performance.timeOrigin + performance.now();
    for (const mutation of mutations) {
      for (const node of mutation.addedNodes) {
        note(node, now);
      }
    }
  }).observe(tbody, { childList: true });
  return tbody !== null;
}
"""


async def _wait_seen(page, keys: set[str], timeout: float) -> dict[str, float]:
    deadline = time.monotonic() + timeout
    while True:
        seen = await page.evaluate("() => window.__seen")
        if keys <= seen.keys() or time.monotonic() > deadline:
            return seen
        await asyncio.sleep(0.25)


async def _run(stack, cookie: tuple[str, str]) -> dict:
    stop = asyncio.Event()
    pushed: dict[str, float] = {}
    listener = asyncio.create_task(live.listen_group(stack.source.group_name, pushed, stop))
    problems: list[str] = []
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = await browser.new_context()
            await context.add_cookies([{"name": cookie[0], "value": cookie[1], "url": stack.base_url}])
            page = await context.new_page()
            page.on("pageerror", lambda error: problems.append(f"pageerror: {error}"))
            page.on("console", lambda message: message.type == "error" and problems.append(f"console: {message.text}"))
            page.on("response", lambda response: response.status >= 400 and problems.append(f"{response.status} {response.url}"))
            await page.goto(f"{stack.base_url}/feed/?source={stack.source.pk}")
            await page.wait_for_function("() => window.websocketConnected === true", timeout=TIMEOUT_S * 1000)
            await page.evaluate(_OBSERVER, ["pk=browserwarm-", "pk=browser-"])
            # An idle shard is polled once a second; warm-up writes bring the reader to its
            # working cadence first, as in the latency benchmark.
            warm = await writer.write_items(stack, prefix="browserwarm", count=WARMUP_WRITES, rate_per_s=RATE_PER_S)
            await _wait_seen(page, {f"pk={w['key']}" for w in warm}, TIMEOUT_S)
            writes = await writer.write_items(stack, prefix="browser", count=WRITES, rate_per_s=RATE_PER_S)
            seen = await _wait_seen(page, {f"pk={w['key']}" for w in writes}, TIMEOUT_S)
            rows_in_dom = await page.evaluate("() => document.querySelectorAll('#feed-rows tr').length")
        finally:
            await browser.close()
    stop.set()
    await listener

    delays, push_delays, after_push = [], [], []
    for w in writes:
        shown = seen.get(f"pk={w['key']}")
        if shown is None:
            continue
        delays.append(shown - w["put_at"] * 1000)
        if w["key"] in pushed:
            push_delays.append((pushed[w["key"]] - w["put_at"]) * 1000)
            after_push.append(shown - pushed[w["key"]] * 1000)

    def figure(values, fraction):
        return round(percentile(values, fraction), 1) if values else None

    return {
        "write_to_browser_writes": len(writes),
        "write_to_browser_rows_seen": len(delays),
        "write_to_browser_ms_p50": figure(delays, 0.50),
        "write_to_browser_ms_p95": figure(delays, 0.95),
        "write_to_browser_ms_p99": figure(delays, 0.99),
        "write_to_browser_push_ms_p50": figure(push_delays, 0.50),
        "write_to_browser_push_ms_p99": figure(push_delays, 0.99),
        "write_to_browser_after_push_ms_p50": figure(after_push, 0.50),
        "write_to_browser_after_push_ms_p99": figure(after_push, 0.99),
        "write_to_browser_rows_in_dom": rows_in_dom,
        "write_to_browser_writer": writer.writer_summary(writes),
        "write_to_browser_page_problems": problems[:5],
        "write_to_browser_server_exceptions": live.server_exceptions(),
    }


def bench_write_to_browser() -> dict:
    cookie = live.session_cookie()
    with live.running_stack("browser") as stack:
        return asyncio.run(_run(stack, cookie))
