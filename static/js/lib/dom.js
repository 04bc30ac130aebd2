// Building rows from data, for every page module. What a row shows comes from DynamoDB, from
// trigger handlers or from AWS errors, and is untrusted: it reaches the page through textContent
// and setAttribute only, never parsed as markup.
//
// Each row's markup is written once, in a template partial (templates/dashboard/_*.html). The
// server includes it for the rows it renders, and the page renders it once more inside a
// <template> element, with data-slot marks on the parts that vary (dashboard/templatetags/slots.py).
// A script clones that <template> and fills the slots.

export function validId(id) {
  return Number.isSafeInteger(id) && id > 0;
}

export function text(value) {
  return value === null || value === undefined ? "" : String(value);
}

// A fresh copy of the element a <template> holds.
export function templateClone(template) {
  return template.content.firstElementChild.cloneNode(true);
}

function slotsOf(root) {
  const nested = Array.from(root.querySelectorAll("[data-slot]"));
  return root.matches("[data-slot]") ? [root, ...nested] : nested;
}

// A part a row does not have. The space a partial writes after it, inside the same {% if %},
// goes too, so that the copy is what the server renders without that part.
function slotRemove(node) {
  const after = node.nextSibling;
  if (after && after.nodeType === Node.TEXT_NODE && after.nodeValue.trim() === "") {
    after.remove();
  }
  node.remove();
}

// Fills the slots of a copy (the copy itself included) and drops their marks, so that a filled
// copy is the markup the server renders for the same data. `values` maps slot names to
//   a string or a number: the slot's text ("" empties it);
//   true: the slot stays as the template has it (a badge, a fixed note);
//   false, null or undefined: the slot is removed (a part this row does not have);
//   an object: attributes to set, and "text" for the text, e.g. {text: "INSERT", class: "event event-insert"}.
// Slots that `values` does not name are left as they are, marks included (see slotRepeat).
export function slotsFill(root, values) {
  for (const node of slotsOf(root)) {
    const name = node.dataset.slot;
    if (!Object.prototype.hasOwnProperty.call(values, name)) {
      continue;
    }
    node.removeAttribute("data-slot");
    const value = values[name];
    if (value === true) {
      continue;
    }
    if (value === false || value === null || value === undefined) {
      slotRemove(node);
    } else if (typeof value === "object") {
      for (const [attribute, attributeValue] of Object.entries(value)) {
        if (attribute === "text") {
          node.textContent = text(attributeValue);
        } else if (/^on/i.test(attribute)) {
          throw new Error("slotsFill sets no event handler attributes: " + attribute);
        } else {
          node.setAttribute(attribute, text(attributeValue));
        }
      }
    } else {
      node.textContent = String(value);
    }
  }
  return root;
}

// Repeats the slot `name` once per item, in order, as a list: each copy is given to
// fill(copy, item), then the slot itself is removed. Fill repeated slots before slotsFill, so
// that it does not fill the names inside them.
export function slotRepeat(root, name, items, fill) {
  const proto = root.querySelector('[data-slot="' + name + '"]');
  if (!proto) {
    return;
  }
  proto.removeAttribute("data-slot");
  for (const item of items) {
    const copy = proto.cloneNode(true);
    fill(copy, item);
    proto.before(copy);
  }
  proto.remove();
}
