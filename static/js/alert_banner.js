// The banner of firing alerts (templates/_alert_banner.html), on every dashboard and admin page:
// every 15 s, fetch the alerts firing (data-api-url, GET /api/alerts/firing) and rebuild the
// banner as the server renders it, or take it away when nothing fires. Rule names and subject
// labels are untrusted: they reach the page through textContent only.
//
// base.html and admin/base_site.html load this as a module, alongside each page's own script.

import { getJson } from "./lib/http.js";

const REFRESH_MS = 15000;
const slot = document.getElementById("alert-banner-slot");

function bannerBuild(firing) {
  const banner = document.createElement("aside");
  banner.className = "alert-banner";
  banner.id = "alert-banner";
  banner.setAttribute("role", "alert");
  const title = document.createElement("strong");
  title.textContent = `${firing.count} alert${firing.count === 1 ? "" : "s"} firing:`;
  banner.append(title, " ");
  for (const alert of firing.alerts) {
    const item = document.createElement("span");
    item.className = "alert-banner-item";
    item.textContent = alert.subject_label ? `${alert.rule} (${alert.subject_label})` : String(alert.rule);
    banner.append(item);
  }
  const more = firing.count - firing.alerts.length;
  if (more > 0) {
    const rest = document.createElement("span");
    rest.textContent = `and ${more} more`;
    banner.append(" ", rest);
  }
  const link = document.createElement("a");
  link.href = firing.url;
  link.textContent = "See alerts";
  banner.append(" ", link);
  return banner;
}

async function bannerRefresh() {
  let firing;
  try {
    firing = await getJson(slot.dataset.apiUrl);
  } catch (error) {
    return; // keep what is shown; the next round tries again
  }
  if (firing.count > 0) {
    slot.replaceChildren(bannerBuild(firing));
  } else {
    slot.replaceChildren();
  }
  slot.dataset.refreshedAt = String(Date.now());
}

if (slot && slot.dataset.apiUrl) {
  window.setInterval(bannerRefresh, REFRESH_MS);
}
