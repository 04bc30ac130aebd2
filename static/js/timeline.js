// The invocation timeline (templates/dashboard/timeline.html). The server renders the newest
// invocations for the filter in the URL; this file adds new ones as the trigger runner records
// them, pushed over the /ws/invocations/ websocket (InvocationConsumer).
//
// Error types and messages come from handlers and are untrusted: rows are built with
// createElement and textContent only, and the one link in a row is made from the numeric id.
"use strict";

(function () {
  const root = document.getElementById("timeline");
  if (!root) {
    return;
  }

  const MAX_ROWS = 500;
  const BACKOFF_BASE_MS = 1000;
  const BACKOFF_MAX_MS = 10000;
  const OUTCOMES = JSON.parse(document.getElementById("timeline-outcomes").textContent);
  const TRIGGERS = JSON.parse(document.getElementById("timeline-triggers").textContent);

  const wsPath = root.dataset.wsPath;
  const apiUrl = root.dataset.apiUrl;
  const invocationUrl = root.dataset.invocationUrl; // the detail URL of invocation 0
  const triggerFilter = root.dataset.trigger ? Number(root.dataset.trigger) : null;
  const outcomeFilter = root.dataset.outcome || "";
  const filterValid = root.dataset.filterValid === "true";

  const tbody = document.getElementById("timeline-rows");
  const stateLabel = document.getElementById("timeline-state");
  const emptyNote = document.getElementById("timeline-empty");
  const form = document.getElementById("timeline-filter");

  window.websocketConnected = false;

  const rendered = new Set();
  let attempt = 0;
  let everOpened = false;

  function validId(id) {
    return Number.isSafeInteger(id) && id > 0;
  }

  function text(value) {
    return value === null || value === undefined ? "" : String(value);
  }

  function cell(className, content) {
    const td = document.createElement("td");
    if (className) {
      td.className = className;
    }
    if (content !== undefined) {
      td.textContent = content;
    }
    return td;
  }

  function pad(number) {
    return String(number).padStart(2, "0");
  }

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

  // The same markup as the server-rendered rows in timeline.html.
  function buildRow(row) {
    const tr = document.createElement("tr");
    tr.className = "timeline-row timeline-new";
    tr.dataset.id = String(row.id);
    const outcome = Object.prototype.hasOwnProperty.call(OUTCOMES, row.outcome) ? row.outcome : "unknown";
    tr.dataset.outcome = outcome;

    const time = cell("timeline-time");
    const link = document.createElement("a");
    link.href = invocationUrl.replace(/0\/$/, String(row.id) + "/");
    link.title = text(row.started_at);
    link.textContent = utcText(row.started_at);
    time.appendChild(link);
    tr.appendChild(time);

    const triggerName = text(row.trigger_name) || TRIGGERS[String(row.trigger_id)];
    tr.appendChild(cell("", triggerName ? triggerName : "trigger #" + text(row.trigger_id)));

    const outcomeCell = cell("");
    const badge = document.createElement("span");
    badge.className = "outcome outcome-" + outcome;
    badge.textContent = OUTCOMES[outcome] || text(row.outcome);
    outcomeCell.appendChild(badge);
    tr.appendChild(outcomeCell);

    tr.appendChild(cell("num", text(row.record_count) + " / " + text(row.filtered_count)));
    tr.appendChild(cell("num", text(row.attempt)));

    const bisect = cell("");
    if (row.from_bisect) {
      const span = document.createElement("span");
      span.className = "trig-badge trig-bisect";
      span.title = "Half of a batch split after a function error (BisectBatchOnFunctionError)";
      span.textContent = "bisect";
      bisect.appendChild(span);
    }
    tr.appendChild(bisect);

    const duration = Number(row.duration_ms);
    tr.appendChild(cell("num", (Number.isFinite(duration) ? duration.toFixed(1) : "?") + " ms"));
    const error = cell("timeline-error", text(row.error_type));
    error.title = text(row.error_message);
    tr.appendChild(error);
    return tr;
  }

  function matches(row) {
    if (triggerFilter !== null && row.trigger_id !== triggerFilter) {
      return false;
    }
    return !outcomeFilter || row.outcome === outcomeFilter;
  }

  function accept(rows) {
    const fresh = (rows || []).filter((row) => row && validId(row.id) && !rendered.has(row.id) && matches(row));
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

  function highestRendered() {
    let highest = 0;
    for (const id of rendered) {
      highest = Math.max(highest, id);
    }
    return highest;
  }

  async function catchUp() {
    let since = highestRendered();
    for (let page = 0; page < 10; page += 1) {
      const url = new URL(apiUrl, window.location.href);
      url.searchParams.set("since", String(since));
      if (triggerFilter !== null) {
        url.searchParams.set("trigger", String(triggerFilter));
      }
      if (outcomeFilter) {
        url.searchParams.set("outcome", outcomeFilter);
      }
      const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
      if (!response.ok) {
        throw new Error("catch-up failed: " + response.status);
      }
      const body = await response.json();
      accept(body.invocations);
      since = validId(body.last_id) ? body.last_id : since;
      if (!body.more) {
        return;
      }
    }
  }

  function connect() {
    setState("connecting", "connecting");
    const scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    const ws = new WebSocket(scheme + window.location.host + wsPath);
    let opened = false;

    ws.addEventListener("open", () => {
      opened = true;
      ws.send(JSON.stringify({ type: "subscribe", trigger: triggerFilter, outcome: outcomeFilter }));
    });

    ws.addEventListener("message", (event) => {
      let message;
      try {
        message = JSON.parse(event.data);
      } catch (error) {
        return;
      }
      if (message.type === "subscribed") {
        attempt = 0;
        // Subscribed first, then fetch what was recorded before: an invocation recorded in
        // between arrives both ways and is shown once.
        catchUp().then(
          () => {
            setState("live", "live");
            everOpened = true;
            window.websocketConnected = true;
          },
          () => ws.close(),
        );
      } else if (message.type === "invocations") {
        accept(message.invocations);
      } else if (message.type === "error") {
        setState("error", "error: " + text(message.message));
      }
    });

    ws.addEventListener("close", () => {
      window.websocketConnected = false;
      if (!opened && !everOpened) {
        // A refused handshake (code 4401, say) looks like a network error from here.
        setState("reconnecting", "disconnected; retrying (log in again if this persists)");
      } else {
        setState("reconnecting", "reconnecting");
      }
      const base = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** attempt);
      attempt += 1;
      window.setTimeout(connect, base / 2 + Math.random() * (base / 2));
    });
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
  connect();
})();
