// The batch list: every annotation batch with its export links and *mark labeled*.
import * as API from "./api.js";
import { $, h, plural } from "./dom.js";

/**
 * @param {{notify: (kind: string, ...content: unknown[]) => void, showError: (err: unknown, where: string) => void,
 *          refreshHealth: () => unknown}} page
 */
export function createBatchList({ notify, showError, refreshHealth }) {
  async function refresh(highlight) {
    const msg = $("#batches-msg");
    try {
      const batches = await API.listBatches();
      msg.textContent = batches.length ? "" : "No batches yet: accept candidates and queue them.";
      msg.className = "msg";
      $("#batch-list").replaceChildren(...batches.map((b) => batchItem(b, b.batch_id === highlight)));
    } catch (err) {
      msg.className = "msg error";
      msg.textContent = err instanceof API.ApiError ? err.message : String(err);
    }
  }

  function exportLinks(batchId) {
    // The href is renewed on click: it carries a read token when the service has an API key.
    return [["jsonl", "JSONL"], ["csv", "CSV"], ["labelstudio", "Label Studio"]].map(([fmt, label]) =>
      h("a", { href: API.exportUrl(batchId, fmt), download: "", class: `export export-${fmt}`,
        onclick: (e) => { e.currentTarget.href = API.exportUrl(batchId, fmt); } }, label));
  }

  function batchItem(b, fresh) {
    const created = b.created_at ? b.created_at.replace("T", " ").replace(/\.\d+/, "").replace(/\+00:00|Z$/, " UTC") : "";
    return h("li", { class: `batch${fresh ? " fresh" : ""}`, dataset: { id: b.batch_id } },
      h("div", { class: "b-head" }, h("strong", { class: "b-name" }, b.name), h("span", { class: "b-size" }, plural(b.size, "image"))),
      h("div", { class: "b-sub muted" }, h("code", {}, b.batch_id), ` · ${created}`),
      h("div", { class: "b-links" }, "export ", ...exportLinks(b.batch_id),
        h("button", { type: "button", class: "small ghost", title: "Mark every image of this batch labeled (POST /v1/labels)",
          onclick: (e) => markLabeled(b, e.currentTarget) }, "mark labeled")));
  }

  async function markLabeled(batch, button) {
    button.disabled = true;
    try {
      const full = await API.getBatch(batch.batch_id);
      const ids = (full.items || []).map((i) => i.image_id);
      if (!ids.length) { notify("info", `Batch “${batch.name}” has no images.`); return; }
      // Labeled images are never mined again: make sure this was meant.
      if (!window.confirm(`Mark all ${plural(ids.length, "image")} of batch “${batch.name}” labeled? ` +
        "They will no longer be mined (undo through POST /v1/labels).")) {
        notify("info", `Batch “${batch.name}” left as it was.`);
        return;
      }
      const res = await API.setLabels(ids, "labeled");
      notify("success", `Marked ${plural(res.changed, "image")} of batch “${batch.name}” labeled.`);
      refreshHealth();
    } catch (err) {
      showError(err, "Marking labeled");
    } finally {
      button.disabled = false;
    }
  }

  return { refresh, exportLinks };
}
