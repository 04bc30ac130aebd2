// Shared by the record and item pages: typed DynamoDB images as trees, diffs as change lists,
// and copying text. Everything shown comes from DynamoDB and is untrusted, so nodes are built
// with createElement and filled with textContent only; nothing here parses HTML.
(function () {
  "use strict";

  const SET_TAGS = new Set(["SS", "NS", "BS"]);
  const SHORT = 80;

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }

  // (tag, inner) of a typed value. DynamoDB Local sends an empty map as a bare {}; like
  // streams.codec.typed_entry, that reads as an empty map.
  function typedEntry(value) {
    if (value === null || typeof value !== "object" || Array.isArray(value)) return ["?", value];
    const tags = Object.keys(value);
    if (tags.length === 0) return ["M", {}];
    return [tags[0], value[tags[0]]];
  }

  // Paths spelt exactly as streams/diff.py spells them: plain identifiers join with dots,
  // anything else is JSON-quoted in brackets, list elements take an index.
  const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]*$/;

  // A masked value keeps its tag and holds a stand-in whatever the tag ({"B": "•••"},
  // {"M": "hmac:…"}, {"SS": "•••"}); mirror of streams.codec.is_mask, checked before the inner
  // is read as its tag promises. Neither stand-in is valid base64, so a masked B is never binary.
  const MASK_REDACTED = "\u2022\u2022\u2022";
  const MASK_HASH = /^hmac:[0-9a-f]{16}$/;

  function isMask(inner) {
    return typeof inner === "string" && (inner === MASK_REDACTED || MASK_HASH.test(inner));
  }

  function childPath(prefix, name) {
    if (IDENTIFIER.test(name)) return prefix ? prefix + "." + name : name;
    return prefix + "[" + JSON.stringify(name) + "]";
  }

  function indexPath(prefix, index) {
    return prefix + "[" + index + "]";
  }

  function binarySize(text) {
    const padding = text.endsWith("==") ? 2 : text.endsWith("=") ? 1 : 0;
    return Math.floor((text.length * 3) / 4) - padding;
  }

  function compareNumbers(a, b) {
    const x = Number(a);
    const y = Number(b);
    return x < y ? -1 : x > y ? 1 : 0;
  }

  // What streams.codec.to_display gives: plain values, numbers as their exact digit strings.
  // Whether a typed value holds what its tag promises to hold; records that failed to decode
  // are shown as received, so nothing below may assume the shape.
  function isContainer(tag, inner) {
    if (tag === "M") return inner !== null && typeof inner === "object" && !Array.isArray(inner);
    if (tag === "L" || SET_TAGS.has(tag)) return Array.isArray(inner);
    return false;
  }

  function toDisplay(value) {
    const [tag, inner] = typedEntry(value);
    if (isMask(inner)) return inner;
    if ((tag === "M" || tag === "L" || SET_TAGS.has(tag)) && !isContainer(tag, inner)) return inner;
    if (tag === "M") {
      const out = {};
      for (const name of Object.keys(inner).sort()) out[name] = toDisplay(inner[name]);
      return out;
    }
    if (tag === "L") return inner.map(toDisplay);
    if (tag === "NULL") return null;
    if (tag === "SS" || tag === "BS") return inner.slice().sort();
    if (tag === "NS") return inner.slice().sort(compareNumbers);
    return inner;
  }

  function shorten(text, width) {
    const limit = width || SHORT;
    return text.length > limit ? text.slice(0, limit - 1) + "…" : text;
  }

  function memberText(tag, member) {
    if (isMask(member)) return member;
    if (tag === "SS") return JSON.stringify(member);
    if (tag === "BS") return "<" + binarySize(member) + " bytes>";
    return String(member);
  }

  // One line for a typed value, the way the feed's summaries write them: strings quoted,
  // numbers bare, binary as <n bytes>, sets in braces, maps and lists as compact JSON.
  function valueText(value, width) {
    const [tag, inner] = typedEntry(value);
    let text;
    if (isMask(inner)) text = inner;
    else if (tag === "S") text = JSON.stringify(inner);
    else if (tag === "N") text = String(inner);
    else if (tag === "BOOL") text = inner ? "true" : "false";
    else if (tag === "NULL") text = "null";
    else if (tag === "B") text = "<" + binarySize(String(inner)) + " bytes>";
    else if (SET_TAGS.has(tag) && isContainer(tag, inner)) text = "{" + inner.map((member) => memberText(tag, member)).join(", ") + "}";
    else text = JSON.stringify(toDisplay(value));
    return shorten(text, width);
  }

  function tagOf(value) {
    return typedEntry(value)[0];
  }

  function isMasked(value) {
    return isMask(typedEntry(value)[1]);
  }

  // "node-value", and "masked" too when the value is a stand-in, so it reads as masked.
  function valueClass(value, className) {
    return isMasked(value) ? className + " masked" : className;
  }

  function typedValue(value, width) {
    const wrap = el("span", "typed");
    wrap.append(el("span", "node-tag", tagOf(value)), " ", el("span", valueClass(value, "node-value"), valueText(value, width)));
    return wrap;
  }

  // path -> change, for highlighting tree nodes.
  function changeIndex(diff) {
    const index = new Map();
    for (const change of diff || []) index.set(change.path, change);
    return index;
  }

  // Every proper prefix of a changed path ("a" and "a.b" for "a.b[0]"), so the maps and lists
  // that hold a change can be marked too. Quoted names (["x.y"]) are skipped whole.
  function pathPrefixes(path) {
    const prefixes = [];
    let at = 0;
    while (at < path.length) {
      const char = path[at];
      if (char === "[") {
        if (at > 0) prefixes.push(path.slice(0, at));
        if (path[at + 1] === '"') {
          let end = at + 2;
          while (end < path.length && path[end] !== '"') end += path[end] === "\\" ? 2 : 1;
          at = end + 2;
        } else {
          const close = path.indexOf("]", at);
          at = close < 0 ? path.length : close + 1;
        }
        continue;
      }
      if (char === "." && at > 0) prefixes.push(path.slice(0, at));
      at += 1;
    }
    return prefixes;
  }

  function ancestorPaths(diff) {
    const found = new Set();
    for (const change of diff || []) for (const prefix of pathPrefixes(change.path)) found.add(prefix);
    return found;
  }

  const SIDE_KINDS = {
    old: { removed: "hl-removed", changed: "hl-changed", type_changed: "hl-changed" },
    new: { added: "hl-added", changed: "hl-changed", type_changed: "hl-changed" },
  };

  function highlightClass(change, side) {
    if (!change) return "";
    return SIDE_KINDS[side][change.kind] || "";
  }

  function nodeHead(name, value, isIndex) {
    const head = document.createDocumentFragment();
    head.append(el("span", isIndex ? "node-name node-index" : "node-name", name), " ", el("span", "node-tag", tagOf(value)));
    return head;
  }

  function setMembers(tag, members, change, side) {
    const wrap = el("span", "node-set");
    const marked = new Set();
    let markClass = "";
    if (change && change.kind === "changed" && change.added) {
      // The diff names the members as each side spells them (NS keeps "1.0" apart from "1").
      const names = side === "new" ? change.added : change.removed;
      for (const member of names || []) marked.add(member);
      markClass = side === "new" ? "member member-added" : "member member-removed";
    }
    wrap.append("{");
    members.forEach((member, position) => {
      if (position) wrap.append(", ");
      const className = marked.has(member) ? markClass : "member";
      wrap.append(el("span", isMask(member) ? className + " masked" : className, memberText(tag, member)));
    });
    wrap.append("}");
    return wrap;
  }

  function scalarText(tag, inner) {
    if (tag === "S") return JSON.stringify(inner);
    if (tag === "N") return String(inner);
    if (tag === "BOOL") return inner ? "true" : "false";
    if (tag === "NULL") return "null";
    if (tag === "B") return String(inner);
    return JSON.stringify(inner);
  }

  function treeNode(name, value, path, context, isIndex) {
    const [tag, inner] = typedEntry(value);
    const change = context.changes.get(path);
    const item = el("li", "node");
    item.dataset.path = path;
    const mark = highlightClass(change, context.side);
    if (mark) item.classList.add(mark);
    else if (context.within.has(path)) item.classList.add("hl-within");

    if ((tag === "M" || tag === "L") && isContainer(tag, inner)) {
      const names = tag === "M" ? Object.keys(inner).sort() : inner.map((_, index) => index);
      const details = el("details");
      details.open = true;
      const summary = el("summary");
      summary.append(nodeHead(name, value, isIndex), " ");
      const count = names.length;
      summary.append(el("span", "node-count", tag === "M" ? count + (count === 1 ? " key" : " keys") : count + (count === 1 ? " element" : " elements")));
      details.append(summary);
      const list = el("ul", "tree");
      for (const child of names) {
        if (tag === "M") list.append(treeNode(child, inner[child], childPath(path, child), context, false));
        else list.append(treeNode("[" + child + "]", inner[child], indexPath(path, child), context, true));
      }
      if (!count) list.append(el("li", "node node-empty", tag === "M" ? "(empty map)" : "(empty list)"));
      details.append(list);
      item.append(details);
      return item;
    }

    item.append(nodeHead(name, value, isIndex), " ");
    if (isMask(inner)) {
      item.append(el("span", "node-value masked", inner));
    } else if (SET_TAGS.has(tag) && isContainer(tag, inner)) {
      item.append(setMembers(tag, inner, change, context.side));
    } else {
      item.append(el("span", "node-value v-" + tag, scalarText(tag, inner)));
      if (tag === "B") item.append(" ", el("span", "node-count", "(" + binarySize(String(inner)) + " bytes, base64)"));
    }
    if (change && change.kind === "type_changed") {
      const other = context.side === "new" ? change.old : change.new;
      item.append(" ", el("span", "node-note", (context.side === "new" ? "was " : "becomes ") + tagOf(other)));
    }
    return item;
  }

  // An image (attribute name -> typed value) as a nested list. side is "old" or "new": it
  // decides which diff kinds show on this tree (removed on the old side, added on the new).
  function renderTree(image, options) {
    const opts = options || {};
    const context = {
      side: opts.side || "new",
      changes: changeIndex(opts.diff),
      within: ancestorPaths(opts.diff),
    };
    const root = el("ul", "tree tree-root");
    const names = Object.keys(image || {}).sort();
    for (const name of names) root.append(treeNode(name, image[name], childPath("", name), context, false));
    if (!names.length) root.append(el("li", "node node-empty", "(no attributes)"));
    return root;
  }

  function memberList(tag, members, sign, className) {
    const span = el("span", className);
    span.append(sign + "{");
    members.forEach((member, position) => {
      if (position) span.append(", ");
      span.append(el("span", isMask(member) ? "member masked" : "member", memberText(tag, member)));
    });
    span.append("}");
    return span;
  }

  const KIND_LABELS = { added: "added", removed: "removed", changed: "changed", type_changed: "type changed" };

  function changeDetail(change) {
    const detail = el("span", "change-detail");
    if (change.kind === "added") {
      detail.append(typedValue(change.new));
    } else if (change.kind === "removed") {
      detail.append("was ", typedValue(change.old));
    } else if (change.kind === "type_changed") {
      detail.append(typedValue(change.old), " → ", typedValue(change.new));
    } else if (change.added || change.removed) {
      const tag = tagOf(change.new);
      detail.append(el("span", "node-tag", tag));
      if (change.added && change.added.length) detail.append(" ", memberList(tag, change.added, "+", "member-added"));
      if (change.removed && change.removed.length) detail.append(" ", memberList(tag, change.removed, "-", "member-removed"));
    } else {
      detail.append(
        el("span", "node-tag", tagOf(change.new)), " ",
        el("span", valueClass(change.old, "node-value old-value"), valueText(change.old)), " → ",
        el("span", valueClass(change.new, "node-value new-value"), valueText(change.new)),
      );
    }
    return detail;
  }

  // The compact list: one line per change. onSelect(path) runs when a path is clicked.
  function renderChangeList(diff, onSelect) {
    const list = el("ul", "changes");
    for (const change of diff || []) {
      const item = el("li", "change ch-" + change.kind);
      item.dataset.path = change.path;
      item.dataset.kind = change.kind;
      const path = el(onSelect ? "button" : "code", "change-path", change.path);
      if (onSelect) {
        path.type = "button";
        path.title = "Show in the images";
        path.addEventListener("click", () => onSelect(change.path));
      }
      item.append(el("span", "change-kind", KIND_LABELS[change.kind] || change.kind), " ", path, " ", changeDetail(change));
      list.append(item);
    }
    return list;
  }

  // Marks the tree nodes at a path (in every tree under root) and scrolls the first into view.
  function focusPath(root, path) {
    let first = null;
    for (const node of root.querySelectorAll(".node.focused")) node.classList.remove("focused");
    for (const node of root.querySelectorAll(".node")) {
      if (node.dataset.path === path) {
        node.classList.add("focused");
        first = first || node;
      }
    }
    if (first) first.scrollIntoView({ block: "nearest", behavior: "smooth" });
    return first;
  }

  function fallbackCopy(text) {
    const area = el("textarea", "copy-buffer");
    area.value = text;
    area.setAttribute("readonly", "");
    document.body.append(area);
    area.select();
    let copied = false;
    try {
      copied = document.execCommand("copy");
    } catch (error) {
      copied = false;
    }
    area.remove();
    return copied ? "copied" : "failed";
  }

  // Resolves to "copied" or "failed"; the caller shows the text for copying by hand on "failed".
  function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(text).then(
        () => "copied",
        () => fallbackCopy(text),
      );
    }
    return Promise.resolve(fallbackCopy(text));
  }

  window.ShardwatchDiff = {
    el,
    isMask,
    typedEntry,
    childPath,
    pathPrefixes,
    toDisplay,
    valueText,
    renderTree,
    renderChangeList,
    focusPath,
    copyText,
  };
})();
