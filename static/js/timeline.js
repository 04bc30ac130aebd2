// The invocation timeline (templates/dashboard/timeline.html). The server renders the newest
// invocations for the filter in the URL; this file adds new ones as the trigger runner records
// them, pushed over the /ws/invocations/ websocket (InvocationConsumer), and fetches what a
// dropped socket missed from /api/invocations (lib/live_socket.js). The server applies the
// filter: this file hands on the page's query string and shows what it is sent.
//
// Error types and messages come from handlers and are untrusted: rows are cloned from the
// page's <template> of templates/dashboard/_timeline_row.html and filled with textContent only,
// and the one link in a row is made from the numeric id.
//
// The page loads this as a classic script (<script defer>); the shared parts are ES modules in
// lib/, loaded with import(), which resolves them against this file's URL.
"use strict";

(async function () {
  const root = document.getElementById("timeline");
  if (!root) {
    return;
  }
  const [{ slotsFill, templateClone, text, validId }, { queryFields }, { liveSocketStart }] = await Promise.all([
    import("./lib/dom.js"),
    import("./lib/http.js"),
    import("./lib/live_socket.js"),
  ]);

  const MAX_ROWS = 500;
  const OUTCOMES = JSON.parse(document.getElementById("timeline-outcomes").textContent);
  const TRIGGERS = JSON.parse(document.getElementById("timeline-triggers").textContent);

  const wsPath = root.dataset.wsPath;
  const apiUrl = root.dataset.apiUrl;
  const invocationUrl = root.dataset.invocationUrl; // the detail URL of invocation 0
  const filterQuery = root.dataset.filterQuery || "";
  const filterValid = root.dataset.filterValid === "true";

  const tbody = document.getElementById("timeline-rows");
  const rowTemplate = document.getElementById("timeline-row-template");
  const stateLabel = document.getElementById("timeline-state");
  const emptyNote = document.getElementById("timeline-empty");
  const form = document.getElementById("timeline-filter");

  window.websocketConnected = false;

  const rendered = new Set();

  function pad(number) {
    return String(number).padStart(2, "0");
  }

  // Django's date:"Y-m-d H:i:s" in UTC.
  function utcText(iso) {
    const date = new Date(iso);
    if (Number.isNaN(date.getTime())) {
      return text(iso);
    }
    return (
      date.getUTCFullYear() + "-" + pad(date.getUTCMonth() + 1) + "-" + pad(date.getUTCDate()) + " " +
      pad(date.getUTCHours()) + ":" + pad(date.getUTCMinutes()) + ":" + pad(date.getUTCSeconds())
    );
  }

  function buildRow(row) {
    const tr = templateClone(rowTemplate);
    tr.classList.add("timeline-new");
    tr.dataset.id = String(row.id);
    const outcome = Object.prototype.hasOwnProperty.call(OUTCOMES, row.outcome) ? row.outcome : "unknown";
    tr.dataset.outcome = outcome;
    const triggerName = text(row.trigger_name) || TRIGGERS[String(row.trigger_id)];
    const duration = Number(row.duration_ms);
    return slotsFill(tr, {
      time: {
        text: utcText(row.started_at),
        href: invocationUrl.replace(/0\/$/, String(row.id) + "/"),
        title: text(row.started_at),
      },
      trigger: triggerName ? triggerName : "trigger #" + text(row.trigger_id),
      outcome: { text: OUTCOMES[outcome] || text(row.outcome), class: "outcome outcome-" + outcome },
      counts: text(row.record_count) + " / " + text(row.filtered_count),
      attempt: text(row.attempt),
      bisect: Boolean(row.from_bisect),
      duration: (Number.isFinite(duration) ? duration.toFixed(1) : "?") + " ms",
      error: { text: text(row.error_type), title: text(row.error_message) },
    });
  }

  function accept(rows) {
    const fresh = rows.filter((row) => row && validId(row.id) && !rendered.has(row.id));
    if (!fresh.length) {
      return;
    }
    fresh.sort((a, b) => b.id - a.id);
    const fragment = document.createDocumentFragment();
    for (const row of fresh) {
      fragment.appendChild(buildRow(row));
      rendered.add(row.id);
    }
    tbody.prepend(fragment);
    while (tbody.children.length > MAX_ROWS) {
      rendered.delete(Number(tbody.lastElementChild.dataset.id));
      tbody.lastElementChild.remove();
    }
    emptyNote.hidden = true;
  }

  function setState(state, label) {
    stateLabel.dataset.state = state;
    stateLabel.className = "trig-state trig-state-" + state;
    stateLabel.textContent = label;
  }

  function phaseChanged(state) {
    window.websocketConnected = state.phase === "live";
    if (state.phase === "live") {
      setState("live", "live");
    } else if (state.phase === "reconnecting") {
      // Never live yet: a refused handshake (code 4401, say) looks like a network error from here.
      setState("reconnecting", state.everLive ? "reconnecting" : "disconnected; retrying (log in again if this persists)");
    } else if (state.phase === "logged-out") {
      setState("logged-out", "logged out: reload the page to log in again");
    } else {
      setState("connecting", "connecting");
    }
  }

  form.addEventListener("change", (event) => {
    if (event.target.matches("select")) {
      form.requestSubmit();
    }
  });

  for (const tr of tbody.children) {
    const id = Number(tr.dataset.id);
    if (validId(id)) {
      rendered.add(id);
    }
  }

  if (!filterValid) {
    setState("stopped", "stopped");
    return;
  }
  liveSocketStart({
    wsPath,
    apiUrl,
    query: filterQuery,
    // {"type": "subscribe", "trigger": ..., "outcome": ...} (docs/API.md), from the query string.
    subscribe: { ...queryFields(filterQuery), type: "subscribe" },
    rowsKey: "invocations",
    syncedThrough: Math.max(0, ...rendered),
    accept,
    phaseChanged,
    refused: (message) => setState("error", "error: " + message),
  });
})();
