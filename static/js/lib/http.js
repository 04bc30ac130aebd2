// Reading the dashboard's JSON API (docs/API.md) with the page's session.

// `base` (a path) with the page's filter `query` (a query string) and `extra` parameters.
export function apiUrl(base, query, extra) {
  const url = new URL(base, window.location.href);
  url.search = query || "";
  for (const [name, value] of Object.entries(extra || {})) {
    url.searchParams.set(name, String(value));
  }
  return url.href;
}

// The JSON an API URL answers. A failure throws an Error whose message is the server's own
// ("error" in the body) or "HTTP <status>", with .status set.
export async function getJson(url, init) {
  const response = await fetch(url, {
    headers: { Accept: "application/json" },
    credentials: "same-origin",
    ...(init || {}),
  });
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

// A query string as the fields of a subscribe message: each name once, a repeated name as a
// list of its values. The server reads them as it reads the same query string over HTTP.
export function queryFields(query) {
  const params = new URLSearchParams(query || "");
  const fields = {};
  for (const name of new Set(params.keys())) {
    const values = params.getAll(name);
    fields[name] = values.length > 1 ? values : values[0];
  }
  return fields;
}
