// One live connection for a page whose list grows as rows are saved (the feed, the timeline): a
// websocket that subscribes with the page's filter, fetches over the JSON API what was saved
// while it was away, and reconnects with backoff when it drops. The server applies the filter,
// on the socket and in the API alike; the page only hands on its query string.
//
// Nothing is lost across a drop: every row matching the filter with an id up to `syncedThrough`
// has been handed to the page. Live rows move it only once a connection has caught up, so a
// failed catch-up cannot skip rows; a catch-up that fails drops the socket and starts again.
//
// Pages set window.websocketConnected while the phase is "live": browser tests wait on it.

import { validId } from "./dom.js";
import { apiUrl, getJson } from "./http.js";

const BACKOFF_BASE_MS = 1000;
const BACKOFF_MAX_MS = 10000;
const CATCH_UP_LIMIT = 500;
// Past this many pages of missed rows, the page is far behind (see farBehind below).
const CATCH_UP_MAX_PAGES = 10;
// Ids are given when a batch is saved, but two shards' batches can commit a few milliseconds
// out of id order. A catch-up therefore starts below the lowest id that arrived live in the
// last few seconds before the drop; the page skips ids it already shows.
const OVERLAP_MS = 5000;
const COUNTDOWN_TICK_MS = 250;

// How long to wait before reconnect attempt number `attempt` (0 for the first): doubling up to
// BACKOFF_MAX_MS, with jitter, so that browsers that lost the server together do not all come
// back at the same moment.
export function reconnectDelay(attempt) {
  const base = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** attempt);
  return base / 2 + Math.random() * (base / 2);
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

// Starts the connection. Options:
//   wsPath, apiUrl, query    the socket's path, the API's URL, and the page's filter as a query
//                            string, which every API call carries;
//   subscribe                the message that subscribes the socket to the filter;
//   rowsKey                  where rows are in messages and API answers ("records", "invocations"):
//                            a message {"type": rowsKey, [rowsKey]: rows} carries live rows;
//   syncedThrough            the highest id the page's server-rendered list is complete through;
//   accept(rows)             new rows, from the socket or the API; ids may repeat: skip those shown;
//   phaseChanged(state)      {phase, reconnectAt, everLive}: phase is "connecting", "catching-up",
//                            "live", "reconnecting" (until reconnectAt, in ms since the epoch; told
//                            again every 250 ms for a countdown) or "logged-out" (the end);
//   refused(message)         the server refused the subscription (a filter it does not accept);
//   farBehind (optional)     {limit, replace(rows)}: when the catch-up would take more than
//                            CATCH_UP_MAX_PAGES pages, fetch the newest `limit` rows instead and
//                            hand them to replace(), which starts the list afresh. Without it the
//                            catch-up stops there and the page goes live.
export function liveSocketStart(options) {
  const state = { phase: "connecting", reconnectAt: 0, everLive: false };
  let syncedThrough = options.syncedThrough || 0;
  let recentLive = [];
  let socket = null;
  let attempt = 0;
  let reconnectTimer = null;
  let countdownTimer = null;

  function query(extra) {
    return apiUrl(options.apiUrl, options.query, extra);
  }

  function setPhase(phase) {
    state.phase = phase;
    if (phase !== "reconnecting" && countdownTimer !== null) {
      window.clearInterval(countdownTimer);
      countdownTimer = null;
    }
    options.phaseChanged(state);
  }

  function connect() {
    reconnectTimer = null;
    setPhase("connecting");
    const url = new URL(options.wsPath, window.location.href);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(url.href);
    socket = ws;
    let opened = false;
    let subscribed = false;
    let caughtUp = false;
    let liveHighest = 0;

    ws.addEventListener("open", () => {
      opened = true;
      ws.send(JSON.stringify(options.subscribe));
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
        // Subscribed first, then fetch what was saved before: a row saved in between arrives
        // both ways and is shown once.
        catchUp(ws).then((through) => {
          if (socket !== ws || through === null) {
            return;
          }
          caughtUp = true;
          syncedThrough = Math.max(syncedThrough, through, liveHighest);
          attempt = 0;
          state.everLive = true;
          setPhase("live");
        });
      } else if (message.type === options.rowsKey && subscribed) {
        // Rows sent before the subscription was confirmed may not match the filter; the
        // catch-up that follows it fetches them from the database instead.
        const rows = Array.isArray(message[options.rowsKey]) ? message[options.rowsKey] : [];
        options.accept(rows);
        rememberLive(rows);
        if (caughtUp) {
          syncedThrough = Math.max(syncedThrough, highestId(rows));
        } else {
          liveHighest = Math.max(liveHighest, highestId(rows));
        }
      } else if (message.type === "error") {
        options.refused(typeof message.message === "string" ? message.message : "");
      }
    });

    ws.addEventListener("close", () => {
      if (socket !== ws) {
        return;
      }
      socket = null;
      if (opened) {
        scheduleReconnect();
        return;
      }
      // A refused handshake looks like any network error; the API tells a lapsed login apart.
      getJson(query({ limit: 1 })).then(
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

  // Fetches what was saved after syncedThrough (less the overlap above), page by page. Resolves
  // to the id the page has everything up to, or null when this socket is no longer the current one.
  async function catchUp(ws) {
    setPhase("catching-up");
    let cursor = catchUpFrom();
    try {
      for (let page = 0; ; page += 1) {
        if (page === CATCH_UP_MAX_PAGES) {
          if (!options.farBehind) {
            return cursor;
          }
          // Far behind: rendering thousands of rows to keep a few hundred of them is wasted work.
          const body = await getJson(query({ limit: options.farBehind.limit }));
          if (socket !== ws) {
            return null;
          }
          options.farBehind.replace(body[options.rowsKey] || []);
          return highestId(body[options.rowsKey]);
        }
        const body = await getJson(query({ since: cursor, limit: CATCH_UP_LIMIT }));
        if (socket !== ws) {
          return null;
        }
        options.accept(body[options.rowsKey] || []);
        cursor = validId(body.last_id) ? Math.max(cursor, body.last_id) : Math.max(cursor, highestId(body[options.rowsKey]));
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
        setPhase("logged-out");
        return null;
      }
      // Try the whole connection again later rather than go live with a hole in the list.
      ws.close();
      return null;
    }
  }

  function scheduleReconnect() {
    const delay = reconnectDelay(attempt);
    attempt += 1;
    state.reconnectAt = Date.now() + delay;
    setPhase("reconnecting");
    countdownTimer = window.setInterval(() => options.phaseChanged(state), COUNTDOWN_TICK_MS);
    reconnectTimer = window.setTimeout(connect, delay);
  }

  // Back online: no need to wait out the backoff.
  window.addEventListener("online", () => {
    if (reconnectTimer !== null) {
      window.clearTimeout(reconnectTimer);
      connect();
    }
  });

  connect();
}
