// Record detail: old and new images as trees with the diff highlighted, the compact change
// list, the raw DynamoDB JSON, and copying the record or its Lambda test event.
// The record arrives through json_script (#record-data); it is untrusted, so only textContent.
(function () {
  "use strict";

  const D = window.ShardwatchDiff;
  const { el } = D;
  const CARRIES_OLD = new Set(["OLD_IMAGE", "NEW_AND_OLD_IMAGES"]);
  const CARRIES_NEW = new Set(["NEW_IMAGE", "NEW_AND_OLD_IMAGES"]);

  const root = document.getElementById("record");
  const record = JSON.parse(document.getElementById("record-data").textContent);
  const status = document.getElementById("copy-status");
  const manual = document.getElementById("copy-manual");

  // Why an image is not shown: never an empty tree that would read as "no attributes".
  function missingReason(side) {
    if (side === "old") {
      if (record.event_name === "INSERT") return "None: the item did not exist before this INSERT.";
      if (!CARRIES_OLD.has(record.view_type)) return "Not in this record: the stream's view type " + record.view_type + " carries no old image.";
      return "Not in this record.";
    }
    if (record.event_name === "REMOVE") return "None: this change removed the item.";
    if (!CARRIES_NEW.has(record.view_type)) return "Not in this record: the stream's view type " + record.view_type + " carries no new image.";
    return "Not in this record.";
  }

  function renderImage(side) {
    const image = side === "old" ? record.old_image : record.new_image;
    const target = root.querySelector('[data-image="' + side + '"]');
    target.replaceChildren();
    if (image === null || image === undefined) {
      target.append(el("p", "image-missing", missingReason(side)));
      return;
    }
    target.append(D.renderTree(image, { side, diff: record.diff }));
  }

  function renderChanges() {
    const target = document.getElementById("changes");
    target.replaceChildren();
    const diff = record.diff || [];
    if (!diff.length) {
      // A partial record says why in the server-rendered note; a complete one really changed nothing we can see.
      target.append(el("p", "muted", record.diff_complete ? "No attribute changed." : "Changes unknown for this record (see above)."));
      return;
    }
    target.append(el("p", "changes-count", diff.length + (diff.length === 1 ? " change" : " changes")));
    target.append(D.renderChangeList(diff, (path) => D.focusPath(document.getElementById("images"), path)));
  }

  // The record as the Streams API's GetRecords returned it: what "Raw" shows and "Copy as JSON" copies.
  // Images the server put into AWS's shape are shown as the stream sent them (images_as_sent).
  function streamRecord() {
    const sent = record.images_as_sent || {};
    const image = (name, stored) => (Object.prototype.hasOwnProperty.call(sent, name) ? sent[name] : stored);
    const data = {
      ApproximateCreationDateTime: Date.parse(record.approximate_creation_time) / 1000,
      Keys: image("Keys", record.keys),
    };
    const newImage = image("NewImage", record.new_image);
    const oldImage = image("OldImage", record.old_image);
    if (newImage !== null && newImage !== undefined) data.NewImage = newImage;
    if (oldImage !== null && oldImage !== undefined) data.OldImage = oldImage;
    data.SequenceNumber = record.sequence_number;
    data.SizeBytes = record.size_bytes;
    data.StreamViewType = record.view_type;
    const out = {
      eventID: record.event_id,
      eventName: record.event_name,
      eventVersion: record.event_version,
      eventSource: "aws:dynamodb",
      awsRegion: record.region,
      dynamodb: data,
    };
    if (record.user_identity) out.userIdentity = record.user_identity;
    return out;
  }

  const rawText = JSON.stringify(streamRecord(), null, 2);

  function showView(view) {
    for (const button of root.querySelectorAll("[data-view]")) {
      button.setAttribute("aria-pressed", String(button.dataset.view === view));
    }
    document.getElementById("diff-view").hidden = view !== "diff";
    document.getElementById("raw-view").hidden = view !== "raw";
  }

  function say(text) {
    status.textContent = text;
  }

  function offerManualCopy(text, what) {
    manual.hidden = false;
    manual.value = text;
    manual.focus();
    manual.select();
    say("Copying is blocked here: " + what + " is selected below, press Ctrl+C (⌘C) to copy it.");
  }

  function copy(text, what) {
    manual.hidden = true;
    return D.copyText(text).then((outcome) => {
      if (outcome === "copied") say("Copied " + what + ".");
      else offerManualCopy(text, what);
      return outcome;
    });
  }

  function copyLambdaEvent(button) {
    const url = record.links.lambda_event;
    button.disabled = true;
    say("Fetching the Lambda test event…");
    return fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then((response) => {
        if (!response.ok) throw new Error("the server answered " + response.status);
        return response.text();
      })
      .then((text) => copy(text, "the Lambda test event"))
      .catch((error) => say("Could not fetch the Lambda test event: " + error.message))
      .finally(() => {
        button.disabled = false;
      });
  }

  renderImage("old");
  renderImage("new");
  renderChanges();
  document.getElementById("raw-json").textContent = rawText;

  for (const button of root.querySelectorAll("[data-view]")) {
    button.addEventListener("click", () => showView(button.dataset.view));
  }
  document.getElementById("copy-json").addEventListener("click", () => copy(rawText, "the record as JSON"));
  const lambdaButton = document.getElementById("copy-lambda");
  lambdaButton.addEventListener("click", () => copyLambdaEvent(lambdaButton));
  for (const node of root.querySelectorAll(".needs-js")) node.hidden = false;
  showView("diff");

  // For browser tests: the page has rendered everything it will render.
  root.dataset.ready = "true";
  window.recordPageReady = true;
})();
