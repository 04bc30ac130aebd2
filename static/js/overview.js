// Streams overview: every few seconds, fetch each source's health from the JSON API
// (data-api-url) and bring the server-rendered page up to date.
//
// Table names, shard ids and AWS error messages are untrusted: every node is built with
// createElement and text nodes, never innerHTML. The markup mirrors
// templates/dashboard/overview.html; the new tree is merged into the page node by node
// (morph below), so text that did not change stays put and can be selected while it updates.
(function () {
  "use strict";

  const root = document.getElementById("sources");
  if (!root) return;
  const apiUrl = root.dataset.apiUrl;
  const addUrl = root.dataset.addUrl;
  const refreshMs = Math.max(2000, Number(root.dataset.refreshMs) || 3000);
  const liveStatus = document.getElementById("live-status");
  const SVG_NS = "http://www.w3.org/2000/svg";
  const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
  const MINUTE_MS = 60 * 1000;

  // --- building nodes ---------------------------------------------------------------

  function build(node, attrs, children) {
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value !== null && value !== undefined && value !== false) node.setAttribute(name, String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false || child === "") continue;
      node.appendChild(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function el(tag, attrs, ...children) {
    return build(document.createElement(tag), attrs, children);
  }

  function svgEl(tag, attrs, ...children) {
    return build(document.createElementNS(SVG_NS, tag), attrs, children);
  }

  // --- formatting (the same output as the template's filters) -----------------------

  function pad(n) {
    return String(n).padStart(2, "0");
  }

  function clock(date) {
    return `${pad(date.getUTCHours())}:${pad(date.getUTCMinutes())}:${pad(date.getUTCSeconds())}`;
  }

  // Django's date:"M j, H:i:s" in UTC.
  function stamp(date) {
    return `${MONTHS[date.getUTCMonth()]} ${date.getUTCDate()}, ${clock(date)}`;
  }

  function timeNode(iso) {
    return el("time", { datetime: iso }, stamp(new Date(iso)));
  }

  function timeOr(iso, fallback) {
    return iso ? timeNode(iso) : fallback;
  }

  // Django's timesince: the two largest adjacent units, stopping at a zero.
  function timesince(seconds) {
    const units = [["year", 365 * 86400], ["month", 30 * 86400], ["week", 7 * 86400], ["day", 86400], ["hour", 3600], ["minute", 60]];
    let rest = Math.floor(seconds);
    const parts = units.map(([name, size]) => {
      const n = Math.floor(rest / size);
      rest -= n * size;
      return [name, n];
    });
    let i = parts.findIndex(([, n]) => n > 0);
    if (i < 0) return "0\u00a0minutes";
    const out = [];
    for (; i < parts.length && out.length < 2 && parts[i][1] > 0; i++) {
      const [name, n] = parts[i];
      out.push(`${n}\u00a0${name}${n === 1 ? "" : "s"}`);
    }
    return out.join(", ");
  }

  function lagText(seconds) {
    if (seconds === null || seconds === undefined) return "—";
    return seconds < 60 ? `${Math.round(seconds)} s` : timesince(seconds);
  }

  function plural(n, word) {
    return `${n} ${word}${n === 1 ? "" : "s"}`;
  }

  // --- the sparkline ----------------------------------------------------------------

  // Bars for the last 60 minutes, oldest first; the last bar is the minute still running.
  function sparkBars(counts, nowIso) {
    const now = nowIso ? new Date(nowIso) : new Date();
    const firstMinute = Math.floor(now.getTime() / MINUTE_MS) * MINUTE_MS - (counts.length - 1) * MINUTE_MS;
    const peak = Math.max(1, ...counts);
    const nodes = [svgEl("line", { class: "spark-base", x1: 0, y1: 23.5, x2: counts.length, y2: 23.5, "vector-effect": "non-scaling-stroke" })];
    counts.forEach((n, i) => {
      if (!n) return;
      const height = Math.max(1, (n / peak) * 22);
      const minute = new Date(firstMinute + i * MINUTE_MS);
      nodes.push(
        svgEl(
          "rect",
          {
            class: i === counts.length - 1 ? "spark-bar spark-now" : "spark-bar",
            x: i + 0.1,
            y: (24 - height).toFixed(2),
            width: 0.8,
            height: height.toFixed(2),
          },
          svgEl("title", null, `${clock(minute).slice(0, 5)} UTC: ${plural(n, "record")}`)
        )
      );
    });
    return nodes;
  }

  function sparkline(counts, nowIso) {
    return svgEl(
      "svg",
      {
        class: "sparkline",
        viewBox: "0 0 60 24",
        preserveAspectRatio: "none",
        role: "img",
        "aria-label": "Records per minute over the last hour",
        "data-per-minute": counts.join(","),
      },
      sparkBars(counts, nowIso)
    );
  }

  // --- one source -------------------------------------------------------------------

  function shardNode(shard) {
    const line = el(
      "div",
      { class: "shard-line" },
      el("span", { class: `badge shard-${shard.state}` }, shard.state_display),
      el("code", { class: "shard-id" }, shard.shard_id),
      shard.parent_shard_id && !shard.depth ? el("span", { class: "muted" }, `child of ${shard.parent_shard_id}`) : null,
      shard.state === "finished"
        ? null
        : shard.lease_held
          ? el("span", { class: "badge lease-held" }, "leased")
          : el("span", { class: "badge lease-free" }, "no lease")
    );
    const facts = el(
      "div",
      { class: "shard-facts" },
      el("span", null, "checkpoint ", el("code", null, shard.checkpoint || "none")),
      shard.last_polled_at ? el("span", null, "polled ", timeNode(shard.last_polled_at)) : el("span", null, "polled never"),
      shard.last_polled_by ? el("span", null, "by ", el("code", null, shard.last_polled_by)) : null
    );
    const error = shard.error
      ? el("p", { class: "error shard-error" }, `Error${shard.error_count > 1 ? ` (${shard.error_count} in a row)` : ""}: ${shard.error}`)
      : null;
    const children = shard.children && shard.children.length ? el("ul", null, shard.children.map(shardNode)) : null;
    return el("li", { class: "shard", "data-key": `shard-${shard.shard_id}` }, line, facts, error, children);
  }

  function streamNode(stream) {
    const counts = stream.shard_counts;
    return el(
      "div",
      { class: "stream", "data-key": `stream-${stream.id}` },
      el(
        "header",
        { class: "stream-head" },
        el("h3", null, `Stream ${stream.label || stream.arn}`),
        el("span", { class: `badge stream-${stream.state}` }, stream.state_display),
        el("span", { class: "muted" }, `${counts.open} open · ${counts.closed} closed · ${counts.finished} finished`)
      ),
      stream.shards.length
        ? el("ul", { class: "lineage" }, stream.shards.map(shardNode))
        : el("p", { class: "muted" }, "No shards discovered yet."),
      stream.finished_hidden
        ? el("p", { class: "muted" }, `${plural(stream.finished_hidden, "shard")} finished over 24 hours ago not shown.`)
        : null
    );
  }

  function errorNode(source) {
    if (!source.last_error) return null;
    const recovered = source.status === "active";
    return el(
      "div",
      { class: recovered ? "alert alert-past" : "alert alert-error" },
      el("strong", null, recovered ? "Last error, since recovered" : "Last error"),
      source.last_error_at ? timeNode(source.last_error_at) : null,
      el("p", { class: "alert-text" }, source.last_error)
    );
  }

  function gapsNode(source) {
    if (!source.gaps.length) return null;
    return el(
      "div",
      { class: "alert alert-gap" },
      el("strong", null, `${plural(source.gap_count, "gap")}: records lost before Shardwatch read them`),
      el(
        "ul",
        { class: "gaps" },
        source.gaps.map((gap) =>
          el(
            "li",
            { "data-key": `gap-${gap.id}` },
            timeNode(gap.detected_at),
            gap.shard_id ? el("code", null, gap.shard_id) : null,
            gap.after_sequence_number ? el("span", null, "after ", el("code", null, gap.after_sequence_number)) : null,
            el("span", { class: "alert-text" }, gap.reason)
          )
        )
      ),
      source.gap_count > source.gaps.length ? el("p", { class: "muted" }, `Only the newest ${source.gaps.length} are listed.`) : null
    );
  }

  function sourceNode(source, nowIso) {
    const metric = (extraClass, label, ...values) => el("div", { class: extraClass ? `metric ${extraClass}` : "metric" }, el("dt", null, label), values);
    return el(
      "section",
      { class: "source", id: `source-${source.id}`, "data-key": `source-${source.id}` },
      el(
        "header",
        { class: "source-head" },
        el("h2", null, source.table),
        el("span", { class: "muted" }, source.endpoint_url ? `${source.region} · ${source.endpoint_url}` : source.region),
        el("span", { class: `badge status-${source.status}` }, source.status_display),
        source.enabled ? null : el("span", { class: "badge status-disabled" }, "Disabled")
      ),
      el(
        "dl",
        { class: "metrics" },
        metric(
          "",
          "Lag",
          el("dd", { class: "metric-value" }, lagText(source.lag_seconds)),
          el("dd", { class: "muted" }, "age of the newest record read")
        ),
        metric("", "Last record received", el("dd", { class: "metric-value" }, timeOr(source.last_received_at, "never"))),
        metric("", "Last poll", el("dd", { class: "metric-value" }, timeOr(source.last_polled_at, "never"))),
        metric(
          "metric-rate",
          "Records per minute, last hour",
          el("dd", null, sparkline(source.per_minute, nowIso)),
          el("dd", { class: "muted" }, `${source.records_last_hour} in the last hour`)
        )
      ),
      el(
        "p",
        { class: "facts muted" },
        `View type ${source.view_type || "unknown"} · starts at ${source.start_position} · keeps ${source.retention_days} days`
      ),
      errorNode(source),
      gapsNode(source),
      source.streams.length ? source.streams.map(streamNode) : el("p", { class: "muted" }, "No stream discovered yet.")
    );
  }

  function emptyNode() {
    return el(
      "p",
      { class: "empty" },
      "No stream sources yet. Add one in the ",
      el("a", { href: addUrl }, "admin"),
      " or with ",
      el("code", null, "manage.py add_source TABLE"),
      "."
    );
  }

  // --- merging a freshly built tree into the page -----------------------------------

  function keyOf(node) {
    return node.nodeType === Node.ELEMENT_NODE ? node.getAttribute("data-key") : null;
  }

  function morph(from, to) {
    if (from.nodeType !== to.nodeType || from.nodeName !== to.nodeName) {
      from.replaceWith(to);
      return;
    }
    if (from.nodeType === Node.TEXT_NODE) {
      if (from.nodeValue !== to.nodeValue) from.nodeValue = to.nodeValue;
      return;
    }
    if (from.nodeType !== Node.ELEMENT_NODE) {
      from.replaceWith(to);
      return;
    }
    for (const { name } of Array.from(from.attributes)) {
      if (!to.hasAttribute(name)) from.removeAttribute(name);
    }
    for (const { name, value } of Array.from(to.attributes)) {
      if (from.getAttribute(name) !== value) from.setAttribute(name, value);
    }
    morphChildren(from, to);
  }

  // Children with a data-key are matched by key, the rest by position.
  function morphChildren(from, to) {
    const keyed = new Map();
    for (const child of Array.from(from.childNodes)) {
      const key = keyOf(child);
      if (key) keyed.set(key, child);
    }
    let cursor = from.firstChild;
    for (const next of Array.from(to.childNodes)) {
      const key = keyOf(next);
      let current = key ? keyed.get(key) : cursor;
      if (key) keyed.delete(key);
      if (!current || (!key && keyOf(current))) {
        from.insertBefore(next, cursor);
        continue;
      }
      if (current !== cursor) from.insertBefore(current, cursor);
      cursor = current.nextSibling;
      morph(current, next);
    }
    while (cursor) {
      const stale = cursor;
      cursor = cursor.nextSibling;
      stale.remove();
    }
  }

  function render(data) {
    const next = el("div");
    if (!data.sources.length) next.appendChild(emptyNode());
    for (const source of data.sources) next.appendChild(sourceNode(source, data.now));
    morphChildren(root, next);
  }

  // --- polling ----------------------------------------------------------------------

  let timer = null;
  let inFlight = false;
  let stopped = false;
  let failures = 0;

  function showStatus(text, trouble) {
    if (!liveStatus) return;
    liveStatus.textContent = text;
    liveStatus.classList.toggle("live-trouble", trouble);
  }

  function schedule() {
    if (stopped || timer !== null || document.hidden) return;
    // Back off while the server is in trouble, so a struggling server is not hammered.
    const delay = failures ? Math.min(30000, refreshMs * 2 ** failures) : refreshMs;
    timer = setTimeout(refresh, delay);
  }

  async function refresh() {
    timer = null;
    if (inFlight) return;
    inFlight = true;
    const controller = new AbortController();
    const timeout = setTimeout(() => controller.abort(), 10000);
    try {
      const response = await fetch(apiUrl, {
        headers: { Accept: "application/json" },
        credentials: "same-origin",
        cache: "no-store",
        signal: controller.signal,
      });
      if (response.status === 401 || response.status === 403) {
        stopped = true;
        showStatus("Your session has ended: reload the page to log in again.", true);
        return;
      }
      if (!response.ok) throw new Error(`the server answered ${response.status}`);
      const data = await response.json();
      render(data);
      failures = 0;
      showStatus(`Updated ${clock(new Date(data.now))} UTC`, false);
      root.dataset.updatedAt = data.now;
      root.dispatchEvent(new CustomEvent("overview:updated"));
    } catch (error) {
      failures += 1;
      const reason = error.name === "AbortError" ? "no answer in 10 s" : error.message;
      showStatus(`Live updates are failing (${reason}); retrying.`, true);
    } finally {
      clearTimeout(timeout);
      inFlight = false;
      schedule();
    }
  }

  // A hidden tab does not poll; it catches up as soon as it is shown again.
  document.addEventListener("visibilitychange", () => {
    if (document.hidden) {
      clearTimeout(timer);
      timer = null;
    } else if (timer === null && !inFlight) {
      refresh();
    }
  });

  // Draw the server-rendered sparklines at once, then start polling.
  for (const svg of root.querySelectorAll("svg.sparkline[data-per-minute]")) {
    const counts = svg.dataset.perMinute ? svg.dataset.perMinute.split(",").map(Number) : [];
    svg.replaceChildren(...sparkBars(counts, root.dataset.now));
  }
  refresh();
})();
