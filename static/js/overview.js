// Streams overview: every few seconds, fetch the readers alive and each source's health from the
// JSON API (data-api-url) and bring the server-rendered page up to date.
//
// Table names, shard ids, function names, reader names and AWS error messages are untrusted. The
// page holds a <template> of each part (the readers panel, a source, a stream, a shard), made
// from the same partials as the server-rendered page (templates/dashboard/overview.html); they
// are copied and filled with textContent only (lib/dom.js), and the new tree is merged into the
// page node by node (morph below), so text that did not change stays put and can be selected
// while it updates. Each source's charts (records read and poll errors, lag) are uPlot's
// (lib/charts.js), fed from the range choice's data-series-url every 15 s; the merge leaves
// their boxes (data-morph-keep) as they are, and new sources' boxes are drawn after it.
//
// The page loads this as a classic script (<script defer>); the shared parts are ES modules in
// lib/, loaded with import(), which resolves them against this file's URL.
"use strict";

(async function () {
  const root = document.getElementById("sources");
  const readersPanel = document.getElementById("readers");
  if (!root || !readersPanel) return;
  const { slotRepeat, slotsFill, templateClone } = await import("./lib/dom.js");
  const { chartsLive, perStep } = await import("./lib/charts.js");
  const apiUrl = root.dataset.apiUrl;
  const refreshMs = Math.max(2000, Number(root.dataset.refreshMs) || 3000);
  const liveStatus = document.getElementById("live-status");
  const templates = {
    source: document.getElementById("source-template"),
    stream: document.getElementById("stream-template"),
    shard: document.getElementById("shard-template"),
    noSources: document.getElementById("no-sources-template"),
    readers: document.getElementById("readers-template"),
  };
  const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

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

  // A <time> slot: the moment, or false (the slot goes) when there is none.
  function timeSlot(iso) {
    return iso ? { datetime: iso, text: stamp(new Date(iso)) } : false;
  }

  // --- the readers panel: who holds the shards, and the shards no reader holds ---------

  function readersNode(readers) {
    const node = templateClone(templates.readers);
    slotRepeat(node, "reader", readers.alive, (row, reader) => {
      row.dataset.key = `reader-${reader.owner}`;
      slotsFill(row, {
        reader_name: { text: reader.name, title: reader.owner },
        reader_shards: reader.shards,
        reader_renewed_at: timeSlot(reader.renewed_at),
        reader_renewed_never: !reader.renewed_at,
      });
    });
    slotsFill(node, {
      reader_count: plural(readers.alive.length, "reader"),
      shard_count: plural(readers.shards, "shard"),
      waiting: readers.waiting > 0,
      waiting_count: readers.waiting,
      warning: Boolean(readers.warning),
      warning_text: readers.warning,
      table: readers.alive.length > 0,
      no_readers: readers.alive.length === 0,
    });
    return node;
  }

  // --- one source, from the page's templates ----------------------------------------

  function shardNode(shard) {
    const node = templateClone(templates.shard);
    node.dataset.key = `shard-${shard.shard_id}`;
    const children = shard.children || [];
    const open = shard.state !== "finished";
    slotsFill(node, {
      state: { text: shard.state_display, class: `badge shard-${shard.state}` },
      shard_id: shard.shard_id,
      parent: Boolean(shard.parent_shard_id && !shard.depth),
      parent_id: shard.parent_shard_id,
      leased: open && shard.lease_held,
      not_leased: open && !shard.lease_held,
      checkpoint: shard.checkpoint || "none",
      polled_at: timeSlot(shard.last_polled_at),
      polled_never: !shard.last_polled_at,
      polled_by: Boolean(shard.last_polled_by),
      polled_by_name: shard.last_polled_by,
      error: Boolean(shard.error),
      error_repeats: shard.error_count > 1,
      error_count: shard.error_count,
      error_text: shard.error,
      children: children.length > 0,
    });
    const list = node.querySelector(":scope > ul");
    if (list) list.append(...children.map(shardNode));
    return node;
  }

  // The stream's other consumers (Lambda event source mappings), as discovery last found them.
  function consumersFill(node, consumers) {
    const known = consumers.readers_per_shard !== null && consumers.readers_per_shard !== undefined;
    slotRepeat(node, "mapping", consumers.mappings, (item, mapping) => {
      item.dataset.key = `mapping-${mapping.uuid}`;
      slotsFill(item, {
        mapping_function: { text: mapping.function_name, title: mapping.function_arn },
        mapping_state: { text: mapping.state, class: `badge mapping-${mapping.reads ? "reads" : "idle"}` },
        mapping_idle: !mapping.reads,
        mapping_batch: Boolean(mapping.batch_size),
        mapping_batch_size: mapping.batch_size,
        mapping_start: Boolean(mapping.starting_position),
        mapping_position: mapping.starting_position,
        mapping_modified: Boolean(mapping.last_modified),
        mapping_modified_at: timeSlot(mapping.last_modified),
      });
    });
    slotsFill(node, {
      readers: known ? consumers.readers_per_shard : false,
      readers_who: known,
      readers_mappings: known && consumers.mappings_reading > 0,
      readers_mapping_count: plural(consumers.mappings_reading, "event source mapping"),
      readers_unknown: known ? false : consumers.lookup_display,
      checked: Boolean(consumers.checked_at),
      checked_at: timeSlot(consumers.checked_at),
      lookup_error: consumers.error || false,
      no_lambda: consumers.lookup === "no_lambda",
      no_lambda_text: consumers.lookup_display,
      too_many: consumers.too_many,
      too_many_count: consumers.readers_per_shard,
      too_many_functions: consumers.reading_functions.join(", "),
      mappings: consumers.mappings.length > 0,
      no_mappings: consumers.lookup === "listed" && consumers.mappings.length === 0,
    });
  }

  function streamNode(stream) {
    const node = templateClone(templates.stream);
    node.dataset.key = `stream-${stream.id}`;
    const counts = stream.shard_counts;
    consumersFill(node, stream.consumers);
    slotsFill(node, {
      label: stream.label || stream.arn,
      state: { text: stream.state_display, class: `badge stream-${stream.state}` },
      open: counts.open,
      closed: counts.closed,
      finished: counts.finished,
      lineage: stream.shards.length > 0,
      no_shards: stream.shards.length === 0,
      finished_hidden: Boolean(stream.finished_hidden),
      finished_hidden_count: plural(stream.finished_hidden, "shard"),
    });
    const lineage = node.querySelector("ul.lineage");
    if (lineage) lineage.append(...stream.shards.map(shardNode));
    return node;
  }

  function sourceNode(source) {
    const node = templateClone(templates.source);
    node.id = `source-${source.id}`;
    node.dataset.key = `source-${source.id}`;
    const recovered = source.status === "active";
    slotRepeat(node, "gap", source.gaps, (item, gap) => {
      item.dataset.key = `gap-${gap.id}`;
      slotsFill(item, {
        gap_at: timeSlot(gap.detected_at),
        gap_shard: gap.shard_id || false,
        gap_after: Boolean(gap.after_sequence_number),
        gap_sequence: gap.after_sequence_number,
        gap_reason: gap.reason,
      });
    });
    slotsFill(node, {
      table: source.table,
      where: source.endpoint_url ? `${source.region} · ${source.endpoint_url}` : source.region,
      status: { text: source.status_display, class: `badge status-${source.status}` },
      disabled: !source.enabled,
      lag: lagText(source.lag_seconds),
      lag_note: source.lag_rounded
        ? "record times rounded to the minute by DynamoDB Local; lag is from poll times"
        : "age of the newest record read, and the time since the poll",
      last_received_at: timeSlot(source.last_received_at),
      last_received_never: !source.last_received_at,
      last_polled_at: timeSlot(source.last_polled_at),
      last_polled_never: !source.last_polled_at,
      last_hour: source.records_last_hour,
      chart_records: { "data-id": source.id },
      chart_lag: { "data-id": source.id },
      lag_rounded: Boolean(source.lag_rounded),
      view_type: source.view_type || "unknown",
      start_position: source.start_position,
      retention_days: source.retention_days,
      error: source.last_error ? { class: recovered ? "alert alert-past" : "alert alert-error" } : false,
      error_recovered: recovered,
      error_current: !recovered,
      error_at: timeSlot(source.last_error_at),
      error_text: source.last_error,
      gaps: source.gaps.length > 0,
      gap_count: plural(source.gap_count, "gap"),
      gaps_more: source.gap_count > source.gaps.length,
      gaps_shown: source.gaps.length,
      no_streams: source.streams.length === 0,
    });
    node.append(...source.streams.map(streamNode));
    return node;
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
    // A chart box: what uPlot drew in it stays, and it is the same source's (same data-key).
    if (from.nodeType === Node.ELEMENT_NODE && from.hasAttribute("data-morph-keep")) return;
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
    morph(readersPanel, readersNode(data.readers));
    const next = document.createElement("div");
    if (!data.sources.length) next.appendChild(templateClone(templates.noSources));
    for (const source of data.sources) next.appendChild(sourceNode(source));
    morphChildren(root, next);
  }

  // --- charts -----------------------------------------------------------------------

  const COUNTS = [{ name: "n" }];
  const SECONDS = [{ name: "s", unit: "s" }];
  const sourceOf = (data, id) => data.sources.find((source) => source.id === id);
  const charts = chartsLive({
    control: document.getElementById("chart-ranges"),
    specs: {
      records: {
        item: sourceOf,
        scales: COUNTS,
        series: (data, source) => [
          { label: `Records ${perStep(data)}`, stroke: "#4c6fb8", fill: "rgba(76, 111, 184, 0.12)", values: source.records },
          { label: `Poll errors ${perStep(data)}`, stroke: "#c43d3d", values: source.poll_errors },
        ],
      },
      lag: {
        item: sourceOf,
        scales: SECONDS,
        series: (data, source) => [
          { label: "Lag", scale: "s", unit: "s", stroke: "#d49a14", points: true, values: source.lag_seconds },
        ],
      },
    },
  });

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
      charts.draw();
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

  refresh();
})();
