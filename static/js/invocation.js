// Invocation detail: each record the invocation sent, with the list of what it changed.
// The diffs arrive through json_script (#invocation-diffs); they hold DynamoDB data, which is
// untrusted, so diffview.js builds every node with textContent.
(function () {
  "use strict";

  const D = window.ShardwatchDiff;
  const diffs = JSON.parse(document.getElementById("invocation-diffs").textContent);

  for (const record of diffs) {
    const cell = document.querySelector('td.invocation-diff[data-id="' + record.id + '"]');
    if (!cell || !record.diff.length) continue; // keep the server's text: no change, or a view type that hides it
    cell.replaceChildren(D.renderChangeList(record.diff));
    if (!record.diff_complete) {
      cell.append(D.el("small", "muted", "Only what the stream's view type shows."));
    }
  }
  document.getElementById("invocation").dataset.diffsDrawn = "true";
})();
