// Item history: each change's own diff, and the item's full state after any chosen change.
// The history arrives through json_script (#item-data); it is untrusted, so only textContent.
(function () {
  "use strict";

  const D = window.ShardwatchDiff;
  const { el } = D;

  const root = document.getElementById("item");
  const history = JSON.parse(document.getElementById("item-data").textContent);
  const changes = history.changes || [];
  const byId = new Map(changes.map((change, index) => [String(change.id), { change, index }]));
  const stateBody = document.getElementById("state-body");
  const stateTitle = document.getElementById("state-title");
  let selectedId = null;

  function when(change) {
    const iso = change.approximate_creation_time || "";
    return iso.slice(0, 10) + " " + iso.slice(11, 19) + " UTC";
  }

  function renderState(entry) {
    const { change, index } = entry;
    stateTitle.textContent = "State after change " + (index + 1) + " (" + change.event_name + ", " + when(change) + ")";
    stateBody.replaceChildren();
    if (change.event_name === "REMOVE") {
      stateBody.append(el("p", "state-removed", "Removed: the item did not exist after this change."));
      return;
    }
    if (!change.state_known || change.state_after === null || change.state_after === undefined) {
      stateBody.append(
        el("p", "state-unknown", "Unknown: the stream's view type " + change.view_type + " carries no new image, so the item's state after this change was never recorded."),
      );
      return;
    }
    if (change.diff && change.diff.length) {
      stateBody.append(el("p", "muted", "Highlighted: what this change added or changed."));
    }
    stateBody.append(D.renderTree(change.state_after, { side: "new", diff: change.diff }));
  }

  function select(id, path) {
    const entry = byId.get(String(id));
    if (!entry) return;
    selectedId = String(id);
    for (const item of root.querySelectorAll(".item-change")) {
      const chosen = item.dataset.id === selectedId;
      item.classList.toggle("selected", chosen);
      const button = item.querySelector(".show-state");
      if (button) button.setAttribute("aria-pressed", String(chosen));
      if (chosen) item.setAttribute("aria-current", "step");
      else item.removeAttribute("aria-current");
    }
    renderState(entry);
    if (path) D.focusPath(stateBody, path);
  }

  for (const item of root.querySelectorAll(".item-change")) {
    const entry = byId.get(item.dataset.id);
    if (!entry) continue;
    const { change } = entry;
    const button = el("button", "show-state", "State after");
    button.type = "button";
    button.setAttribute("aria-pressed", "false");
    button.addEventListener("click", () => {
      select(change.id);
      window.history.replaceState(null, "", "#change-" + change.id);
    });
    item.querySelector(".item-change-head").append(button);
    // The whole entry selects its change too; its links and buttons keep their own meaning.
    item.addEventListener("click", (event) => {
      if (!event.target.closest("a, button, summary")) button.click();
    });
    const target = item.querySelector(".change-diff");
    if (change.diff && change.diff.length) {
      target.append(D.renderChangeList(change.diff, (path) => select(change.id, path)));
    }
  }

  const fromHash = /^#change-(\d+)$/.exec(window.location.hash);
  if (fromHash && byId.has(fromHash[1])) select(fromHash[1]);
  else if (changes.length) select(changes[changes.length - 1].id);
  const hint = root.querySelector(".needs-js-hint");
  if (hint) hint.hidden = true;

  // For browser tests: the page has rendered everything it will render.
  root.dataset.ready = "true";
  window.itemPageReady = true;
})();
