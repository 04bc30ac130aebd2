// The live feed (templates/dashboard/feed.html). The server renders the newest rows for the
// filter in the URL; this file keeps them current over the /ws/feed/ websocket, fetches what a
// dropped socket missed from /api/records (lib/live_socket.js), and pages back through older records.
//
// Everything in a row came from DynamoDB and is untrusted: rows are cloned from the page's
// <template> of templates/dashboard/_feed_row.html and filled with textContent only, and the one
// link in a row is made from the record's numeric id.
//
// The page loads this as a classic script (<script defer>); the shared parts are ES modules in
// lib/, loaded with import(), which resolves them against this file's URL.
"use strict";

(async function () {
  const root = document.getElementById("feed");
  if (!root) {
    return;
  }
  const [{ slotsFill, templateClone, text, validId }, { apiUrl, getJson, queryFields }, { liveSocketStart }] =
    await Promise.all([import("./lib/dom.js"), import("./lib/http.js"), import("./lib/live_socket.js")]);

  // At most this many rows in the DOM; the oldest go first and "Load older" brings them back.
  const MAX_ROWS = 500;
  // Rows arriving at hundreds a second are rendered together, at most once per frame and per 100 ms.
  const FLUSH_INTERVAL_MS = 100;
  const OLDER_LIMIT = 100;
  const EVENTS = new Set(["INSERT", "MODIFY", "REMOVE"]);

  const apiBase = root.dataset.apiUrl;
  const wsPath = root.dataset.wsPath;
  const recordUrl = root.dataset.recordUrl; // the detail URL of record 0, e.g. /records/0/
  const feedUrl = root.dataset.feedUrl;
  const filterQuery = root.dataset.filterQuery || "";
  const filterValid = root.dataset.filterValid === "true";

  const tbody = document.getElementById("feed-rows");
  const rowTemplate = document.getElementById("feed-row-template");
  const stateLabel = document.getElementById("feed-state");
  const pauseButton = document.getElementById("feed-pause");
  const newCounter = document.getElementById("feed-new");
  const errorBox = document.getElementById("feed-filter-error");
  const emptyNote = document.getElementById("feed-empty");
  const olderButton = document.getElementById("feed-older");
  // Where "Load older" goes on from: the list's last row, or, after a search that stopped at its
  // scan budget before finding a page (streams.records.RecordsPage.resume_id), the last record
  // it looked at, which the server gives as next_before (or data-before on the page).
  let nextBefore = validId(Number(olderButton.dataset.before)) ? Number(olderButton.dataset.before) : null;
  const olderStatus = document.getElementById("feed-older-status");
  const form = document.getElementById("feed-filter");

  window.websocketConnected = false;

  // Ids of the rows in the DOM, and rows received but not rendered yet (batched, or paused).
  const rendered = new Set();
  const pending = new Map();
  let pendingOverflow = false; // pending dropped rows: the next render replaces the list
  let flushScheduled = false;
  let lastFlush = 0;

  let paused = false;
  let newWhilePaused = 0;

  let connection = { phase: "connecting", reconnectAt: 0 };

  // ---- rows -------------------------------------------------------------------------------

  function recordHref(id) {
    return recordUrl.replace(/0\/$/, String(id) + "/");
  }

  function buildRow(row) {
    const tr = templateClone(rowTemplate);
    tr.dataset.id = String(row.id);
    const created = text(row.approximate_creation_time);
    const eventName = text(row.event_name);
    return slotsFill(tr, {
      time: { text: created.slice(0, 10) + " " + created.slice(11, 19), href: recordHref(row.id), title: created },
      table: text(row.table),
      event: { text: eventName, class: "event event-" + (EVENTS.has(eventName) ? eventName.toLowerCase() : "other") },
      key: text(row.key),
      ttl: Boolean(row.is_ttl_delete),
      decode_error: row.decode_error ? { title: text(row.decode_error) } : false,
      summary: row.summary ? text(row.summary) : false,
      diff_unknown: !row.summary && row.diff_complete === false,
    });
  }

  function rowId(tr) {
    return Number(tr.dataset.id);
  }

  // Takes rows from the socket or the API; returns how many were new.
  function accept(rows) {
    if (!Array.isArray(rows)) {
      return 0;
    }
    let added = 0;
    for (const row of rows) {
      if (!row || !validId(row.id) || rendered.has(row.id) || pending.has(row.id)) {
        continue;
      }
      pending.set(row.id, row);
      added += 1;
    }
    if (pending.size > 2 * MAX_ROWS) {
      // Only the newest MAX_ROWS can be shown; keeping the rest would grow without bound
      // while paused or in a background tab, where animation frames do not run.
      const ids = Array.from(pending.keys()).sort((a, b) => a - b);
      for (const id of ids.slice(0, ids.length - MAX_ROWS)) {
        pending.delete(id);
      }
      pendingOverflow = true;
    }
    if (paused) {
      newWhilePaused += added;
      showCounter();
    } else if (added) {
      scheduleFlush();
    }
    return added;
  }

  function scheduleFlush() {
    if (paused || flushScheduled) {
      return;
    }
    flushScheduled = true;
    const wait = Math.max(0, lastFlush + FLUSH_INTERVAL_MS - performance.now());
    window.setTimeout(() => window.requestAnimationFrame(flush), wait);
  }

  function flush() {
    flushScheduled = false;
    lastFlush = performance.now();
    if (paused || pending.size === 0) {
      return;
    }
    let rows = Array.from(pending.values()).sort((a, b) => b.id - a.id);
    pending.clear();
    if (pendingOverflow) {
      // Rows between the dropped ones and the list would be missing: start the list afresh
      // from the newest rows; "Load older" reaches the rest.
      pendingOverflow = false;
      tbody.replaceChildren();
      rendered.clear();
      rows = rows.slice(0, MAX_ROWS);
    }
    // Merge, newest first: rows from different sources' batches can arrive out of id order.
    let ref = tbody.firstElementChild;
    let fragment = document.createDocumentFragment();
    for (const row of rows) {
      while (ref && rowId(ref) > row.id) {
        if (fragment.firstChild) {
          tbody.insertBefore(fragment, ref);
        }
        ref = ref.nextElementSibling;
      }
      fragment.appendChild(buildRow(row));
      rendered.add(row.id);
    }
    tbody.insertBefore(fragment, ref);
    trim();
    updateList();
  }

  function trim() {
    let dropped = false;
    while (rendered.size > MAX_ROWS && tbody.lastElementChild) {
      const last = tbody.lastElementChild;
      rendered.delete(rowId(last));
      last.remove();
      dropped = true;
    }
    if (dropped) {
      nextBefore = null; // the list's last row is where older records start again
      olderButton.hidden = false;
      olderStatus.textContent = "";
    }
  }

  function updateList() {
    emptyNote.hidden = tbody.firstElementChild !== null;
    if (!tbody.firstElementChild && nextBefore === null) {
      olderButton.hidden = true;
    }
  }

  // ---- pause -------------------------------------------------------------------------------

  function showCounter() {
    newCounter.hidden = !paused || newWhilePaused === 0;
    newCounter.textContent = newWhilePaused + " new";
  }

  function setPaused(value) {
    paused = value;
    pauseButton.textContent = paused ? "Resume" : "Pause";
    pauseButton.setAttribute("aria-pressed", paused ? "true" : "false");
    if (!paused) {
      newWhilePaused = 0;
      flush();
    }
    showCounter();
    renderState();
  }

  pauseButton.addEventListener("click", () => setPaused(!paused));

  // ---- connection state --------------------------------------------------------------------

  function renderState() {
    const phase = connection.phase;
    let label;
    let key = phase;
    if (phase === "reconnecting") {
      label = "reconnecting in " + Math.max(1, Math.ceil((connection.reconnectAt - Date.now()) / 1000)) + "s";
    } else if (phase === "catching-up") {
      label = "catching up";
    } else if (phase === "logged-out") {
      label = "logged out: reload the page to log in again";
    } else if (phase === "stopped") {
      label = "stopped";
    } else {
      label = phase;
    }
    if (paused && phase === "live") {
      label = "paused";
      key = "paused";
    } else if (paused) {
      label += " · paused";
    }
    stateLabel.textContent = label;
    stateLabel.dataset.state = key;
    stateLabel.className = "feed-state feed-state-" + key;
  }

  function phaseChanged(state) {
    connection = state;
    window.websocketConnected = state.phase === "live";
    renderState();
  }

  function showError(message) {
    errorBox.textContent = message;
    errorBox.hidden = false;
  }

  function apiQuery(extra) {
    return apiUrl(apiBase, filterQuery, extra);
  }

  // ---- older records -----------------------------------------------------------------------

  async function loadOlder() {
    const oldest = tbody.lastElementChild;
    const before = nextBefore !== null ? nextBefore : oldest ? rowId(oldest) : null;
    if (before === null) {
      return;
    }
    if (!paused && filterValid) {
      // Live rows would push the older ones out of the list again at once.
      setPaused(true);
    }
    olderButton.disabled = true;
    olderStatus.textContent = "Loading…";
    try {
      const body = await getJson(apiQuery({ before, limit: OLDER_LIMIT }));
      if (tbody.lastElementChild !== oldest) {
        olderStatus.textContent = "";
        return; // the list changed meanwhile; the button is there to try again
      }
      const fragment = document.createDocumentFragment();
      const records = body.records || [];
      for (const row of records) {
        if (validId(row.id) && row.id < before && !rendered.has(row.id)) {
          fragment.appendChild(buildRow(row));
          rendered.add(row.id);
        }
      }
      tbody.appendChild(fragment);
      updateList();
      nextBefore = validId(body.next_before) ? body.next_before : null;
      if (nextBefore === null) {
        olderButton.hidden = true;
        olderStatus.textContent = "No older records.";
      } else if (records.length === 0) {
        olderStatus.textContent = "No match among the records searched so far; Load older searches further back.";
      } else {
        olderStatus.textContent = paused && filterValid ? "Paused while you read back; Resume shows the new rows." : "";
      }
    } catch (error) {
      olderStatus.textContent = "Could not load older records: " + error.message;
    } finally {
      olderButton.disabled = false;
    }
  }

  olderButton.addEventListener("click", loadOlder);

  // ---- the filter form ---------------------------------------------------------------------

  // Empty fields stay out of the URL, so the permalink reads like the filter.
  form.addEventListener("formdata", (event) => {
    const data = event.formData;
    for (const name of Array.from(new Set(data.keys()))) {
      const values = data.getAll(name).filter((value) => value !== "");
      data.delete(name);
      for (const value of values) {
        data.append(name, value);
      }
    }
    if (!data.has("key")) {
      data.delete("key_match");
    }
  });

  form.addEventListener("change", (event) => {
    if (event.target.matches("select, input[type=checkbox]")) {
      form.requestSubmit();
    }
  });

  // ---- start -------------------------------------------------------------------------------

  for (const tr of tbody.children) {
    const id = rowId(tr);
    if (validId(id)) {
      rendered.add(id);
    }
  }

  if (!filterValid) {
    phaseChanged({ phase: "stopped" });
    return;
  }
  // The server's own spelling of the filter, so the address bar is a clean permalink.
  window.history.replaceState(window.history.state, "", feedUrl + (filterQuery ? "?" + filterQuery : "") + window.location.hash);
  liveSocketStart({
    wsPath,
    apiUrl: apiBase,
    query: filterQuery,
    subscribe: { type: "subscribe", filter: queryFields(filterQuery) },
    rowsKey: "records",
    syncedThrough: Math.max(0, ...rendered),
    accept,
    phaseChanged,
    refused: (message) => showError(message || "The server refused the filter."),
    farBehind: {
      limit: MAX_ROWS,
      replace(rows) {
        pendingOverflow = true;
        accept(rows);
      },
    },
  });
})();
