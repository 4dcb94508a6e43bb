// A metadata filter editor: rows of (column, operator, value) → the API's filters object.
import { h } from "./dom.js";

const OPS = [
  ["eq", "="], ["ne", "≠"], ["in", "in"], ["not_in", "not in"],
  ["gte", "≥"], ["gt", ">"], ["lte", "≤"], ["lt", "<"],
];
const LIST_OPS = new Set(["in", "not_in"]);

let datalistCounter = 0;

/**
 * @param {HTMLElement} root where the editor goes
 * @param {{onChange?: () => void}} options
 */
export function createFilterEditor(root, { onChange } = {}) {
  let columns = [];
  let suggestions = {}; // column -> [values]
  const rows = h("div", { class: "filter-rows" });
  const add = h("button", { type: "button", class: "small ghost add-filter", onclick: () => addRow() }, "+ filter");
  const listId = `filter-values-${++datalistCounter}`;
  const datalist = h("datalist", { id: listId });
  root.replaceChildren(rows, add, datalist);
  const changed = () => onChange && onChange();

  function fillSuggestions(column) {
    datalist.replaceChildren(...(suggestions[column] || []).map((v) => h("option", { value: String(v) })));
  }

  function addRow(column = columns[0] || "", op = "eq", value = "") {
    if (!columns.length) return;
    const colSel = h("select", { class: "f-col", "aria-label": "Column" },
      columns.map((c) => h("option", { value: c, selected: c === column }, c)));
    const opSel = h("select", { class: "f-op", "aria-label": "Operator" },
      OPS.map(([v, label]) => h("option", { value: v, selected: v === op }, label)));
    const input = h("input", {
      class: "f-val", type: "text", value, list: listId, "aria-label": "Value",
      placeholder: "value",
    });
    const placeholder = () => { input.placeholder = LIST_OPS.has(opSel.value) ? "a, b, c" : "value"; };
    placeholder();
    const row = h("div", { class: "filter-row" }, colSel, opSel, input,
      h("button", {
        type: "button", class: "small ghost", "aria-label": "Remove filter", title: "Remove filter",
        onclick: () => { row.remove(); changed(); },
      }, "✕"));
    colSel.addEventListener("change", () => { fillSuggestions(colSel.value); changed(); });
    opSel.addEventListener("change", () => { placeholder(); changed(); });
    input.addEventListener("focus", () => fillSuggestions(colSel.value));
    input.addEventListener("change", changed);
    rows.append(row);
    return row;
  }

  return {
    /** Columns from /v1/health `metadata_columns`. */
    setColumns(cols) {
      columns = cols.slice();
      add.hidden = columns.length === 0;
      add.title = columns.length ? "" : "This bundle has no metadata columns";
    },
    /** Value suggestions per column (seen while browsing). */
    setSuggestions(values) { suggestions = values; },
    addRow,
    clear() { rows.replaceChildren(); },
    /**
     * The filters object for the API. Values are sent as strings: the service converts them to the
     * column's type (numbers, booleans, ISO times) and names the column when one does not fit.
     */
    value() {
      const out = {};
      for (const row of rows.children) {
        const col = row.querySelector(".f-col").value;
        const op = row.querySelector(".f-op").value;
        const raw = row.querySelector(".f-val").value.trim();
        if (!col || raw === "") continue;
        const cond = (out[col] ||= {});
        cond[op] = LIST_OPS.has(op) ? raw.split(",").map((s) => s.trim()).filter((s) => s !== "") : raw;
      }
      return out;
    },
  };
}
