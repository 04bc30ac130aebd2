// The live feed (templates/dashboard/feed.html). The server renders the newest rows for the
// filter in the URL; this file keeps them current over the /ws/feed/ websocket, fetches what a
// dropped socket missed from /api/records, and pages back through older records.
//
// Everything in a row came from DynamoDB and is untrusted: rows are built with createElement
// and textContent only, and the one link in a row is made from the record's numeric id.
"use strict";

(function () {
  const root = document.getElementById("feed");
  if (!root) {
    return;
  }

  // At most this many rows in the DOM; the oldest go first and "Load older" brings them back.
  const MAX_ROWS = 500;
  // Rows arriving at hundreds a second are rendered together, at most once per frame and per 100 ms.
  const FLUSH_INTERVAL_MS = 100;
  const CATCH_UP_LIMIT = 500;
  // Ids are given when a batch is saved, but two shards' batches can commit a few
  // milliseconds out of id order. A catch-up therefore starts below the lowest id that arrived
  // live in the last few seconds before the drop; ids already shown are skipped.
  const OVERLAP_MS = 5000;
  // Past this many pages of missed records, show the newest page instead of all of them.
  const CATCH_UP_MAX_PAGES = 10;
  const OLDER_LIMIT = 100;
  const BACKOFF_BASE_MS = 1000;
  const BACKOFF_MAX_MS = 10000;
  const EVENTS = new Set(["INSERT", "MODIFY", "REMOVE"]);

  const apiUrl = root.dataset.apiUrl;
  const wsPath = root.dataset.wsPath;
  const recordUrl = root.dataset.recordUrl; // the detail URL of record 0, e.g. /records/0/
  const feedUrl = root.dataset.feedUrl;
  const filterQuery = root.dataset.filterQuery || "";
  const filterValid = root.dataset.filterValid === "true";

  const tbody = document.getElementById("feed-rows");
  const stateLabel = document.getElementById("feed-state");
  const pauseButton = document.getElementById("feed-pause");
  const newCounter = document.getElementById("feed-new");
  const errorBox = document.getElementById("feed-filter-error");
  const emptyNote = document.getElementById("feed-empty");
  const olderButton = document.getElementById("feed-older");
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

  // Every record matching the filter with an id up to this one has been received. Live rows
  // move it only once a connection has caught up, so a failed catch-up cannot skip records.
  let syncedThrough = 0;
  let recentLive = [];
  let socket = null;
  let phase = "connecting";
  let attempt = 0;
  let reconnectTimer = null;
  let countdownTimer = null;
  let reconnectAt = 0;

  // ---- rows -------------------------------------------------------------------------------

  function validId(id) {
    return Number.isSafeInteger(id) && id > 0;
  }

  function recordHref(id) {
    return recordUrl.replace(/0\/$/, String(id) + "/");
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

  function badge(className, label, title) {
    const span = document.createElement("span");
    span.className = "badge " + className;
    span.textContent = label;
    span.title = title;
    return span;
  }

  // The same markup as the server-rendered rows in feed.html.
  function buildRow(row) {
    const tr = document.createElement("tr");
    tr.className = "feed-row";
    tr.dataset.id = String(row.id);

    const created = text(row.approximate_creation_time);
    const time = cell("feed-time");
    const link = document.createElement("a");
    link.href = recordHref(row.id);
    link.title = created;
    link.textContent = created.slice(0, 10) + " " + created.slice(11, 19);
    time.appendChild(link);
    tr.appendChild(time);

    tr.appendChild(cell("feed-table-name", text(row.table)));

    const eventName = text(row.event_name);
    const eventCell = cell("");
    const eventBadge = document.createElement("span");
    eventBadge.className = "event event-" + (EVENTS.has(eventName) ? eventName.toLowerCase() : "other");
    eventBadge.textContent = eventName;
    eventCell.appendChild(eventBadge);
    tr.appendChild(eventCell);

    tr.appendChild(cell("feed-key-cell", text(row.key)));

    const summary = cell("feed-summary");
    if (row.is_ttl_delete) {
      summary.append(badge("badge-ttl", "TTL", "Deleted by DynamoDB's time to live"), " ");
    }
    if (row.decode_error) {
      summary.append(badge("badge-error", "undecodable", text(row.decode_error)), " ");
    }
    if (row.summary) {
      summary.append(text(row.summary));
    } else if (row.diff_complete === false) {
      const note = document.createElement("small");
      note.textContent = "(the stream's view type does not show what changed)";
      summary.appendChild(note);
    }
    tr.appendChild(summary);
    return tr;
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

  function highestId(rows) {
    let highest = 0;
    for (const row of rows || []) {
      if (row && validId(row.id) && row.id > highest) {
        highest = row.id;
      }
    }
    return highest;
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
      olderButton.hidden = false;
      olderStatus.textContent = "";
    }
  }

  function updateList() {
    emptyNote.hidden = tbody.firstElementChild !== null;
    if (!tbody.firstElementChild) {
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
    let label;
    let key = phase;
    if (phase === "reconnecting") {
      label = "reconnecting in " + Math.max(1, Math.ceil((reconnectAt - Date.now()) / 1000)) + "s";
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

  function setPhase(value) {
    phase = value;
    if (phase !== "reconnecting" && countdownTimer !== null) {
      window.clearInterval(countdownTimer);
      countdownTimer = null;
    }
    renderState();
  }

  function showError(message) {
    errorBox.textContent = message;
    errorBox.hidden = false;
  }

  // ---- HTTP --------------------------------------------------------------------------------

  function apiQuery(extra) {
    const url = new URL(apiUrl, window.location.href);
    url.search = filterQuery;
    for (const [name, value] of Object.entries(extra)) {
      url.searchParams.set(name, String(value));
    }
    return url.href;
  }

  async function getJson(url) {
    const response = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
    if (!response.ok) {
      let message = "HTTP " + response.status;
      try {
        message = (await response.json()).error || message;
      } catch (ignored) {
        // not JSON: keep the status
      }
      const error = new Error(message);
      error.status = response.status;
      throw error;
    }
    return response.json();
  }

  // ---- the socket --------------------------------------------------------------------------

  function filterObject() {
    const params = new URLSearchParams(filterQuery);
    const filter = { source: params.getAll("source"), event: params.getAll("event") };
    for (const name of ["key", "key_match", "path", "q", "from", "to"]) {
      if (params.has(name)) {
        filter[name] = params.get(name);
      }
    }
    return filter;
  }

  function connect() {
    reconnectTimer = null;
    setPhase("connecting");
    const url = new URL(wsPath, window.location.href);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(url.href);
    socket = ws;
    let opened = false;
    let subscribed = false;
    let caughtUp = false;
    let liveHighest = 0;

    ws.addEventListener("open", () => {
      opened = true;
      ws.send(JSON.stringify({ type: "subscribe", filter: filterObject() }));
    });

    ws.addEventListener("message", (event) => {
      if (socket !== ws) {
        return;
      }
      let message;
      try {
        message = JSON.parse(event.data);
      } catch (ignored) {
        return;
      }
      if (!message || typeof message !== "object") {
        return;
      }
      if (message.type === "subscribed") {
        subscribed = true;
        catchUp(ws).then((through) => {
          if (socket !== ws || through === null) {
            return;
          }
          caughtUp = true;
          syncedThrough = Math.max(syncedThrough, through, liveHighest);
          attempt = 0;
          setPhase("live");
          window.websocketConnected = true;
        });
      } else if (message.type === "records" && subscribed) {
        // Rows sent before the subscription was confirmed may not match the filter; the
        // catch-up that follows it fetches them from the database instead.
        accept(message.records);
        rememberLive(message.records);
        const highest = highestId(message.records);
        if (caughtUp) {
          syncedThrough = Math.max(syncedThrough, highest);
        } else {
          liveHighest = Math.max(liveHighest, highest);
        }
      } else if (message.type === "error") {
        showError(text(message.message) || "The server refused the filter.");
      }
    });

    ws.addEventListener("close", () => {
      if (socket !== ws) {
        return;
      }
      socket = null;
      window.websocketConnected = false;
      if (opened) {
        scheduleReconnect();
        return;
      }
      // A refused handshake looks like any network error; the API tells a lapsed login apart.
      getJson(apiQuery({ limit: 1 })).then(
        () => scheduleReconnect(),
        (error) => (error.status === 401 ? setPhase("logged-out") : scheduleReconnect()),
      );
    });
  }

  function rememberLive(rows) {
    const now = performance.now();
    let lowest = Infinity;
    for (const row of rows) {
      if (row && validId(row.id) && row.id < lowest) {
        lowest = row.id;
      }
    }
    recentLive = recentLive.filter((entry) => now - entry.at <= OVERLAP_MS);
    if (lowest !== Infinity) {
      recentLive.push({ at: now, id: lowest });
    }
  }

  function catchUpFrom() {
    let floor = syncedThrough;
    for (const entry of recentLive) {
      floor = Math.min(floor, entry.id - 1);
    }
    return Math.max(0, floor);
  }

  // Fetches what was saved after syncedThrough (less the overlap above), page by page. Resolves to the id it has
  // everything up to, or null when this socket is no longer the current one.
  async function catchUp(ws) {
    setPhase("catching-up");
    let cursor = catchUpFrom();
    try {
      for (let page = 0; ; page += 1) {
        if (page === CATCH_UP_MAX_PAGES) {
          // Far behind: rendering thousands of rows to keep MAX_ROWS of them is wasted work.
          // The newest page replaces the list instead; "Load older" reaches the rest.
          const body = await getJson(apiQuery({ limit: MAX_ROWS }));
          if (socket !== ws) {
            return null;
          }
          pendingOverflow = true;
          accept(body.records);
          return highestId(body.records);
        }
        const body = await getJson(apiQuery({ since: cursor, limit: CATCH_UP_LIMIT }));
        if (socket !== ws) {
          return null;
        }
        accept(body.records);
        cursor = validId(body.last_id) ? Math.max(cursor, body.last_id) : Math.max(cursor, highestId(body.records));
        if (!body.more) {
          return cursor;
        }
      }
    } catch (error) {
      if (socket !== ws) {
        return null;
      }
      if (error.status === 401) {
        socket = null;
        ws.close();
        window.websocketConnected = false;
        setPhase("logged-out");
        return null;
      }
      // Try the whole connection again later rather than go live with a hole in the list.
      ws.close();
      return null;
    }
  }

  function scheduleReconnect() {
    const base = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** attempt);
    // Jitter: browsers that lost the server together do not all come back at the same moment.
    const delay = base / 2 + Math.random() * (base / 2);
    attempt += 1;
    reconnectAt = Date.now() + delay;
    setPhase("reconnecting");
    countdownTimer = window.setInterval(renderState, 250);
    reconnectTimer = window.setTimeout(connect, delay);
  }

  // Back online: no need to wait out the backoff.
  window.addEventListener("online", () => {
    if (reconnectTimer !== null) {
      window.clearTimeout(reconnectTimer);
      connect();
    }
  });

  // ---- older records -----------------------------------------------------------------------

  async function loadOlder() {
    const oldest = tbody.lastElementChild;
    if (!oldest) {
      return;
    }
    if (!paused && filterValid) {
      // Live rows would push the older ones out of the list again at once.
      setPaused(true);
    }
    olderButton.disabled = true;
    olderStatus.textContent = "Loading…";
    try {
      const body = await getJson(apiQuery({ before: rowId(oldest), limit: OLDER_LIMIT }));
      if (tbody.lastElementChild !== oldest) {
        olderStatus.textContent = "";
        return; // the list changed meanwhile; the button is there to try again
      }
      const fragment = document.createDocumentFragment();
      for (const row of body.records || []) {
        if (validId(row.id) && row.id < rowId(oldest) && !rendered.has(row.id)) {
          fragment.appendChild(buildRow(row));
          rendered.add(row.id);
        }
      }
      tbody.appendChild(fragment);
      if (body.next_before === null || body.next_before === undefined) {
        olderButton.hidden = true;
        olderStatus.textContent = "No older records.";
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
      syncedThrough = Math.max(syncedThrough, id);
    }
  }

  if (!filterValid) {
    setPhase("stopped");
    return;
  }
  // The server's own spelling of the filter, so the address bar is a clean permalink.
  window.history.replaceState(window.history.state, "", feedUrl + (filterQuery ? "?" + filterQuery : "") + window.location.hash);
  connect();
})();
