// The review page: choose examples, mine, review candidates, queue a batch, export it.
import * as API from "./api.js";
import { $, $$, fmtInt, h, onThumbError, parseIds, plural } from "./dom.js";
import { createBatchList } from "./batches.js";
import { FeedbackPanel } from "./feedback.js";
import { createFilterEditor } from "./filters.js";
import { ResultsGrid } from "./results.js";
import { createScenariosView } from "./scenarios.js";

const BROWSE_PAGE = 24;

const ui = {
  health: $("#health"),
  banner: $("#banner"),
  bannerText: $("#banner-text"),
  notice: $("#notice"),
  exampleList: $("#example-list"),
  examplesEmpty: $("#examples-empty"),
  modelHint: $("#model-hint"),
  counts: $("#counts"),
  queueBtn: $("#queue-btn"),
  batchName: $("#batch-name"),
  mineBtn: $("#mine-btn"),
  refineBtn: $("#refine-btn"),
  loadMore: $("#load-more"),
  emptyState: $("#empty-state"),
};

const app = {
  health: null,
  /** @type {{key: string, kind: "id"|"text"|"upload", value: string, negative: boolean, file?: File, url?: string, unknown?: boolean}[]} */
  examples: [],
  current: null, // {query, files, examples, nextCursor, eligible, ms, queryId, refined?}
  mining: null, // AbortController of the request in flight
  browse: { offset: 0, total: 0 },
};

// -- messages ---------------------------------------------------------------------------------------

function notify(kind, ...content) {
  ui.notice.className = `notice ${kind}`;
  ui.notice.replaceChildren(...content);
  ui.notice.hidden = content.length === 0;
}

function showError(err, where = "Request") {
  if (err && err.name === "AbortError") return;
  const message = err instanceof API.ApiError ? err.message : `${where} failed: ${err}`;
  const parts = [h("strong", {}, `${where} failed. `), message];
  if (err instanceof API.ApiError && err.kind === "unknown_ids") {
    markUnknown(err.unknownIds);
    parts.push(" ", h("button", { type: "button", class: "small", onclick: removeUnknown }, "Remove unknown IDs"));
  }
  notify("error", ...parts);
  if (err instanceof API.ApiError && (err.kind === "network" || err.kind === "unavailable")) {
    showBanner(message);
    ui.health.className = "health bad";
    ui.health.textContent = err.kind === "network" ? "not reachable" : "not ready";
  }
}

function showBanner(text) {
  ui.bannerText.textContent = text;
  ui.banner.hidden = false;
}

// -- health -------------------------------------------------------------------------------------------

async function refreshHealth() {
  try {
    const health = await API.getHealth();
    app.health = health;
    ui.banner.hidden = true;
    const c = health.counts || {};
    ui.health.className = "health ok";
    ui.health.replaceChildren(
      h("span", { class: "dot" }), `bundle v${health.bundle_version} · `,
      h("span", { title: "images in the bundle" }, `${fmtInt(c.images ?? 0)} images`), " · ",
      `${fmtInt(c.unlabeled ?? 0)} unlabeled · ${fmtInt(c.queued ?? 0)} queued · ${fmtInt(c.labeled ?? 0)} labeled · `,
      c.rejected ? `${fmtInt(c.rejected)} rejected · ` : "",
      h("code", { title: "model identity" }, health.model));
    if (health.switch_error) ui.health.append(h("span", { class: "warn", title: health.switch_error }, " ⚠ newer version not served"));
    warnRandomWeights(health.model);
    return health;
  } catch (err) {
    ui.health.className = "health bad";
    ui.health.textContent = "not ready";
    showBanner(err instanceof API.ApiError ? err.message : String(err));
    return null;
  }
}

/** Random weights (`--pretrained none`, identity `.../none-seed0`) rank by colour and layout only. */
function warnRandomWeights(model) {
  const el = $("#model-warning");
  const random = /\/none-seed\d+$/.test(String(model));
  el.hidden = !random;
  if (random) {
    el.replaceChildren(h("strong", {}, "Random model weights. "),
      `This bundle was embedded with an untrained model (${model}): candidates follow colour and layout, ` +
      "not meaning. Re-index with real CLIP weights (the default --pretrained) to mine by content.");
  }
}

// -- API key ------------------------------------------------------------------------------------------

/** Ask for the API key in a dialog; resolves to the key, or null when cancelled. */
function askApiKey(wrong) {
  const dialog = $("#key-dialog");
  const input = $("#key-input");
  $("#key-msg").textContent = wrong
    ? "That API key was not accepted. Enter the key this service was started with (--api-key / EDGEMINE_API_KEY)."
    : "This edgemine service requires an API key (--api-key / EDGEMINE_API_KEY). Enter it to continue.";
  input.value = "";
  return new Promise((resolve) => {
    const done = (key) => {
      $("#key-form").onsubmit = null;
      $("#key-cancel").onclick = null;
      dialog.oncancel = null;
      if (dialog.open) dialog.close();
      resolve(key);
    };
    $("#key-form").onsubmit = (e) => {
      e.preventDefault();
      const key = input.value.trim();
      if (key) done(key);
    };
    $("#key-cancel").onclick = () => done(null);
    dialog.oncancel = () => done(null);
    dialog.showModal();
    input.focus();
  });
}

let configured = false;
function configure(health) {
  if (configured || !health) return;
  configured = true;
  const columns = health.metadata_columns || [];
  browseFilters.setColumns(columns);
  mineFilters.setColumns(columns);
  const groupBy = $("#opt-group-by");
  for (const col of columns) groupBy.append(h("option", { value: col }, col));
  if (columns.includes("sequence_id")) groupBy.title = "e.g. sequence_id: at most N per drive";
  // Precomputed-embedding bundles have no model: text prompts and uploads cannot be embedded.
  if (String(health.model).startsWith("byo:")) {
    ui.modelHint.hidden = false;
    ui.modelHint.textContent = `This bundle holds precomputed embeddings (${health.model}): mine by image ID; ` +
      "text prompts and uploads need a CLIP bundle.";
    for (const el of $$("#text-form input, #text-form button, #upload-input")) el.disabled = true;
  }
  loadSuggestions(columns);
}

/** Distinct metadata values (from the first 1000 images) as suggestions in the filter editors. */
async function loadSuggestions(columns) {
  if (!columns.length) return;
  try {
    const page = await API.browseImages({ limit: 1000 });
    const values = {};
    for (const col of columns) {
      const seen = new Set();
      for (const item of page.items) {
        const v = item.metadata?.[col];
        if (v != null && seen.size < 200) seen.add(String(v));
      }
      values[col] = [...seen].sort((a, b) => a.localeCompare(b, "en", { numeric: true }));
    }
    browseFilters.setSuggestions(values);
    mineFilters.setSuggestions(values);
  } catch {
    // suggestions are a convenience; the filters work without them
  }
}

// -- examples -----------------------------------------------------------------------------------------

function addExample(kind, value, negative = false, extra = {}) {
  const key = `${kind}:${value}`;
  const existing = app.examples.find((e) => e.key === key);
  if (existing) { existing.negative = negative; existing.unknown = false; }
  else app.examples.push({ key, kind, value, negative, ...extra });
  renderExamples();
}

function addIds(negative) {
  const input = $("#ids-input");
  const ids = parseIds(input.value);
  if (!ids.length) { input.focus(); return; }
  for (const id of ids) addExample("id", id, negative);
  input.value = "";
}

function markUnknown(ids) {
  const unknown = new Set(ids);
  for (const e of app.examples) if (e.kind === "id" && unknown.has(e.value)) e.unknown = true;
  renderExamples();
}

function removeUnknown() {
  app.examples = app.examples.filter((e) => !e.unknown);
  renderExamples();
  notify("info", "Removed the unknown IDs.");
}

function exampleThumb(e, size = 96) {
  if (e.kind === "id") {
    return h("span", { class: "ex-thumb" },
      h("img", { src: API.imageUrl(e.value, size), alt: "", loading: "lazy", onerror: onThumbError }));
  }
  if (e.kind === "upload") return h("span", { class: "ex-thumb" }, h("img", { src: e.url, alt: "" }));
  return h("span", { class: "ex-thumb text-icon", "aria-hidden": "true" }, "T");
}

function renderExamples() {
  ui.exampleList.replaceChildren(...app.examples.map((e) => {
    const polarity = h("button", {
      type: "button", class: `polarity ${e.negative ? "neg" : "pos"}`, "aria-pressed": String(e.negative),
      title: e.kind === "upload" ? "The API takes uploaded images as positives only"
        : "Toggle positive / negative example",
      disabled: e.kind === "upload",
      onclick: () => { e.negative = !e.negative; renderExamples(); },
    }, e.negative ? "− negative" : "+ positive");
    return h("li", {
      class: `example ${e.negative ? "neg" : "pos"}${e.unknown ? " unknown" : ""}`,
      dataset: { key: e.key }, title: e.unknown ? "Unknown image ID: not in this bundle" : e.value,
    },
    exampleThumb(e),
    h("span", { class: "ex-label" }, h("bdi", {}, e.kind === "text" ? `“${e.value}”` : e.value)),
    polarity,
    h("button", {
      type: "button", class: "small ghost remove", "aria-label": `Remove ${e.value}`, title: "Remove",
      onclick: () => {
        if (e.url) URL.revokeObjectURL(e.url);
        app.examples = app.examples.filter((x) => x !== e);
        renderExamples();
      },
    }, "✕"));
  }));
  ui.examplesEmpty.hidden = app.examples.length > 0;
  $("#examples-actions").hidden = app.examples.length === 0;
  for (const tile of $$("#browse-list .tile")) {
    const ex = app.examples.find((e) => e.key === `id:${tile.dataset.id}`);
    tile.classList.toggle("added-pos", !!ex && !ex.negative);
    tile.classList.toggle("added-neg", !!ex && ex.negative);
  }
}

// -- browse -------------------------------------------------------------------------------------------

let browseTimer = 0;
let browseSeq = 0;
function scheduleBrowse(resetOffset = true) {
  if (resetOffset) app.browse.offset = 0;
  clearTimeout(browseTimer);
  browseTimer = setTimeout(loadBrowse, 200);
}

async function loadBrowse() {
  const seq = ++browseSeq;
  const msg = $("#browse-msg");
  const state = $("#browse-state").value;
  try {
    const page = await API.browseImages({
      filters: browseFilters.value(), state: state ? [state] : [],
      contains: $("#browse-contains").value.trim(), offset: app.browse.offset, limit: BROWSE_PAGE,
    });
    if (seq !== browseSeq) return;
    msg.textContent = "";
    msg.className = "msg";
    app.browse.total = page.total;
    $("#browse-list").replaceChildren(...page.items.map(browseTile));
    const from = page.total ? page.offset + 1 : 0;
    $("#browse-count").textContent = `${fmtInt(from)}–${fmtInt(page.offset + page.items.length)} of ${fmtInt(page.total)}`;
    $("#browse-prev").disabled = page.offset === 0;
    $("#browse-next").disabled = page.offset + page.items.length >= page.total;
    if (!page.total) msg.textContent = "No image matches these filters.";
    renderExamples();
  } catch (err) {
    if (seq !== browseSeq) return;
    msg.className = "msg error";
    msg.textContent = err instanceof API.ApiError ? err.message : String(err);
  }
}

function browseTile(item) {
  const meta = Object.entries(item.metadata || {}).map(([k, v]) => `${k}: ${v}`).join("\n");
  return h("div", { class: "tile", dataset: { id: item.image_id }, title: `${item.image_id}\nstate: ${item.state}\n${meta}` },
    h("span", { class: "b-thumb" },
      h("img", { src: API.imageUrl(item.image_id, 128), alt: item.image_id, loading: "lazy", onerror: onThumbError })),
    h("span", { class: "tile-id" }, h("bdi", {}, item.image_id)),
    h("span", { class: "tile-actions" },
      h("button", { type: "button", class: "small pos", title: "Add as positive example", "aria-label": `Add ${item.image_id} as positive`,
        onclick: () => addExample("id", item.image_id, false) }, "+"),
      h("button", { type: "button", class: "small neg", title: "Add as negative example", "aria-label": `Add ${item.image_id} as negative`,
        onclick: () => addExample("id", item.image_id, true) }, "−")));
}

// -- mining -------------------------------------------------------------------------------------------

function numberOrNull(selector) {
  const raw = $(selector).value.trim();
  return raw === "" ? null : Number(raw);
}

/** The MineQuery for the current form (the API's names and defaults), plus the files to upload. */
function buildQuery() {
  const ex = app.examples;
  const pick = (kind, negative) => ex.filter((e) => e.kind === kind && e.negative === negative).map((e) => e.value);
  const query = {
    positive_ids: pick("id", false),
    negative_ids: pick("id", true),
    texts: pick("text", false),
    negative_texts: pick("text", true),
    k: numberOrNull("#opt-k") ?? 50,
    offset: 0,
    strategy: $("#opt-strategy").value,
    negative_weight: numberOrNull("#opt-negative-weight") ?? 0.5,
    filters: mineFilters.value(),
    exclude_ids: parseIds($("#opt-exclude").value),
    include_states: $$("input[name=include-state]:checked").map((el) => el.value),
  };
  const groupBy = $("#opt-group-by").value;
  const maxPerGroup = numberOrNull("#opt-max-per-group");
  if (groupBy) query.group_by = groupBy;
  if (maxPerGroup != null) query.max_per_group = maxPerGroup;
  const dedup = numberOrNull("#opt-dedup");
  if (dedup != null) query.dedup_threshold = dedup;
  const minScore = numberOrNull("#opt-min-score");
  if (minScore != null) query.min_score = minScore;
  const files = ex.filter((e) => e.kind === "upload").map((e) => e.file);
  return { query, files, examples: ex.map((e) => ({ ...e })) };
}

async function runMine(request, { append = false } = {}) {
  if (app.mining) app.mining.abort();
  const controller = new AbortController();
  app.mining = controller;
  ui.mineBtn.disabled = true;
  ui.mineBtn.textContent = append ? "Loading…" : "Mining…";
  ui.loadMore.disabled = true;
  document.body.classList.add("busy");
  // Every mine names the session and the previous mine (its parent). A next page continues the
  // same query (its cursor is bound to the query's fields), so it keeps the fields of its first page.
  if (!append) request = { ...request, query: { ...request.query, ...feedback.session.queryFields() } };
  const q = request.query;
  const needsModel = q.texts.length || q.negative_texts.length || request.files.length;
  if (!append && needsModel && app.health && !app.health.model_loaded) {
    notify("info", "Mining… the first text or upload query loads the bundle's CLIP model, which can take a while.");
  }
  try {
    const result = await API.mine(request.query, request.files, controller.signal);
    if (app.mining !== controller) return null;
    feedback.session.mined(result.query_id);
    app.current = { ...request, nextCursor: result.next_cursor, eligible: result.eligible, ms: result.timings?.total_ms,
      queryId: result.query_id };
    if (append) results.addItems(result.candidates, result.query_id);
    else {
      results.setItems(result.candidates, result.query_id);
      renderQueryStrip(request, result.query_id);
      const scroller = document.scrollingElement;
      $("#main").scrollTop = 0;
      if (scroller) scroller.scrollTop = 0;
    }
    if (!ui.banner.hidden || (needsModel && app.health && !app.health.model_loaded)) refreshHealth();
    ui.emptyState.hidden = true;
    $("#main").classList.add("has-results");
    if (!append) {
      notify(result.candidates.length ? "" : "info",
        ...(result.candidates.length ? [] : ["No eligible candidates: every image is queued, labeled, rejected, an example, excluded or filtered out."]));
    }
    ui.loadMore.hidden = result.next_cursor == null;
    ui.loadMore.textContent = `Load next ${plural(request.query.k, "candidate")} (after rank ${fmtInt(result.next_offset ?? 0)})`;
    return result;
  } catch (err) {
    if (app.mining === controller) showError(err, "Mining");
    return null;
  } finally {
    if (app.mining === controller) {
      app.mining = null;
      ui.mineBtn.disabled = false;
      ui.mineBtn.textContent = "Mine";
      ui.loadMore.disabled = false;
      document.body.classList.remove("busy");
    }
  }
}

function loadNextPage() {
  const cur = app.current;
  if (!cur || cur.nextCursor == null) return;
  // A cursor, not an offset: pages continue after the last candidate even once earlier ones are queued.
  const { offset: _offset, ...query } = cur.query;
  runMine({ ...cur, query: { ...query, cursor: cur.nextCursor } }, { append: true });
}

function nearestThumb(label) {
  if (label.startsWith("text:")) return h("span", { class: "nearest-thumb text-icon" }, "T");
  if (label.startsWith("upload:")) {
    const ex = app.current?.examples.find((e) => e.kind === "upload" && `upload:${e.value}` === label);
    return h("span", { class: "nearest-thumb" }, ex ? h("img", { src: ex.url, alt: "" }) : "↑");
  }
  return h("span", { class: "nearest-thumb" },
    h("img", { src: API.imageUrl(label, 64), alt: "", loading: "lazy", onerror: onThumbError }));
}

function renderQueryStrip(request, queryId) {
  $("#query-strip").hidden = false;
  $("#query-examples").replaceChildren(...request.examples.map((e) => h("span", {
    class: `chip ${e.negative ? "neg" : "pos"}`, title: `${e.negative ? "negative" : "positive"}: ${e.value}`,
  }, exampleThumb(e, 128), h("span", { class: "chip-label" }, `${e.negative ? "−" : "+"} ${e.kind === "text" ? `“${e.value}”` : e.value}`))),
  ...(request.refined ? [h("span", { class: "chip session", title: "use_verdicts: the session's latest verdicts" },
    h("span", { class: "chip-label" },
      `+ ${fmtInt(request.refined.accepted)} accepted · − ${fmtInt(request.refined.rejected)} rejected (session)`))] : []));
  $("#query-options").textContent = describeOptions(request.query);
  $("#query-id").textContent = queryId || "–";
  const body = JSON.stringify(request.query, null, 2);
  const uploads = request.files.length ? `\n// + uploaded files: ${request.files.map((f) => f.name).join(", ")}` : "";
  $("#query-json").textContent = body + uploads;
}

const OP_LABELS = { eq: "=", ne: "≠", in: "in", not_in: "not in", gt: ">", gte: "≥", lt: "<", lte: "≤" };

/** A one-line summary of the options a result was mined with. */
function describeOptions(q) {
  const parts = [`strategy ${q.strategy}`, `k ${q.k}`];
  for (const [col, cond] of Object.entries(q.filters || {})) {
    for (const [op, value] of Object.entries(cond)) {
      parts.push(`${col} ${OP_LABELS[op] || op} ${Array.isArray(value) ? value.join(", ") : value}`);
    }
  }
  if (q.group_by && q.max_per_group) parts.push(`≤ ${q.max_per_group} per ${q.group_by}`);
  if (q.dedup_threshold != null) parts.push(`dedup ≥ ${q.dedup_threshold}`);
  if (q.min_score != null) parts.push(`score ≥ ${q.min_score}`);
  if ((q.negative_ids.length || q.negative_texts.length) && q.negative_weight !== 0.5) {
    parts.push(`negative weight ${q.negative_weight}`);
  }
  if (q.include_states.join() !== "unlabeled") parts.push(`states: ${q.include_states.join(", ") || "none"}`);
  if (q.exclude_ids.length) parts.push(`${plural(q.exclude_ids.length, "excluded ID")}`);
  if (q.use_verdicts) parts.push("refined with the session's verdicts");
  return parts.join(" · ");
}

function updateCounts() {
  const cur = app.current;
  const accepted = results.acceptedInGrid().length;
  const rejected = results.rejectedInGrid().length;
  const toQueue = results.accepted().length;
  if (!cur) {
    ui.counts.textContent = "No results yet.";
  } else {
    ui.counts.replaceChildren(
      h("strong", {}, fmtInt(results.items.length)), ` of ${fmtInt(cur.eligible)} eligible · `,
      h("span", { class: "c-accept" }, `${fmtInt(accepted)} accepted`), " · ",
      h("span", { class: "c-reject" }, `${fmtInt(rejected)} rejected`), " · ",
      `${fmtInt(results.selected.size)} selected`,
      ...(cur.ms != null ? [h("span", { class: "muted" }, ` · ${cur.ms.toFixed(1)} ms`)] : []));
  }
  ui.queueBtn.disabled = toQueue === 0;
  ui.queueBtn.textContent = `Queue ${fmtInt(toQueue)} accepted`;
  const session = feedback.counts();
  ui.refineBtn.disabled = session.accepted + session.rejected === 0;
  ui.refineBtn.textContent = `Refine (+${fmtInt(session.accepted)} / −${fmtInt(session.rejected)})`;
}

/** Mine again with the session's accepted images as positives and rejected ones as negatives. */
async function refine() {
  const counts = feedback.counts();
  if (ui.refineBtn.disabled || app.mining) return;
  if (!(await feedback.session.flush())) return; // the service must have every verdict first
  const request = buildQuery();
  request.query.use_verdicts = true;
  const result = await runMine({ ...request, refined: counts });
  if (result) {
    notify("success", `Refined: mined with ${plural(counts.accepted, "accepted image")} as positives and ` +
      `${plural(counts.rejected, "rejected image")} as negatives (use_verdicts), besides the examples.`);
  }
}

// -- queue & batches ----------------------------------------------------------------------------------

function defaultBatchName() {
  const d = new Date();
  const pad = (n) => String(n).padStart(2, "0");
  return `review-${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}-${pad(d.getHours())}${pad(d.getMinutes())}${pad(d.getSeconds())}`;
}

async function queueAccepted(event) {
  event.preventDefault();
  const accepted = results.accepted();
  const name = ui.batchName.value.trim();
  if (!accepted.length) return;
  if (!name) { ui.batchName.focus(); notify("error", "Give the batch a name."); return; }
  const cur = app.current;
  const { offset: _offset, cursor: _cursor, ...query } = cur.query;
  if (cur.files.length) query.uploads = cur.files.map((f) => f.name);
  if (cur.queryId) query.query_id = cur.queryId; // provenance: the stored query of the shown result
  ui.queueBtn.disabled = true;
  let batch;
  try {
    batch = await API.createBatch({
      name,
      items: accepted.map((c) => ({
        image_id: c.image_id, score: c.score,
        nearest_example_id: c.nearest_example_id, nearest_example_similarity: c.nearest_example_similarity,
      })),
      query,
    });
  } catch (err) {
    showError(err, "Queueing");
    updateCounts();
    return;
  }
  const queuedIds = accepted.map((c) => c.image_id);
  results.forget(queuedIds);
  ui.batchName.value = defaultBatchName();
  const skipped = batch.skipped || [];
  const links = batchList.exportLinks(batch.batch_id).flatMap((a, i) => (i ? [" · ", a] : [a]));
  const parts = [h("strong", {}, `Queued ${plural(batch.size, "image")} as batch “${batch.name}”`),
    " (", h("code", {}, batch.batch_id), ").", h("span", { class: "inline-links" }, " Export: ", ...links, ".")];
  if (skipped.length) parts.push(` Skipped ${plural(skipped.length, "image")} already queued or labeled: ${skipped.join(", ")}.`);
  notify("success", ...parts);
  batchList.refresh(batch.batch_id);
  refreshHealth();
  // Re-run the same query: queued images are no longer eligible, so they must not come back.
  const { cursor: _pageCursor, ...firstPage } = cur.query;
  const result = await runMine({ ...cur, query: { ...firstPage, offset: 0 } });
  if (!result) return;
  const back = result.candidates.filter((c) => queuedIds.includes(c.image_id));
  const rerun = back.length
    ? h("span", { class: "rerun warn" }, ` Re-ran the query: ${plural(back.length, "queued image")} still listed (include_states has “queued”).`)
    : h("span", { class: "rerun" }, ` Re-ran the query: none of the ${plural(queuedIds.length, "queued image")} appear in the new results.`);
  notify("success", ...parts, rerun);
}

// -- wiring -------------------------------------------------------------------------------------------

const browseFilters = createFilterEditor($("#browse-filters"), { onChange: () => scheduleBrowse() });
const mineFilters = createFilterEditor($("#mine-filters"));

const results = new ResultsGrid({
  grid: $("#grid"),
  sentinel: $("#sentinel"),
  viewer: $("#viewer"),
  nearestThumb,
  onChange: updateCounts,
  onDecide: (verdicts) => feedback.record(verdicts),
  onRefine: () => refine(),
  onUseAsExample: (id, negative) => {
    addExample("id", id, negative);
    notify("info", `Added ${id} as a ${negative ? "negative" : "positive"} example; mine again to use it.`);
  },
});

const batchList = createBatchList({ notify, showError, refreshHealth });
const feedback = new FeedbackPanel({
  results, showError, onChange: updateCounts,
  onRecovered: () => {
    notify("success", "Verdicts saved: every verdict of this session is stored.");
    if (!ui.banner.hidden) refreshHealth();
  },
});

// The Scenarios view; its "mine more like these" mines here with the regressed flips as positives.
const scenarios = createScenariosView({
  notify, showError,
  mineLike: (ids) => {
    app.examples = ids.map((id) => ({ key: `id:${id}`, kind: "id", value: id, negative: false }));
    renderExamples();
    return runMine(buildQuery());
  },
});

function selectTab(name) {
  for (const tab of $$(".tab")) tab.setAttribute("aria-selected", String(tab.dataset.tab === name));
  for (const pane of $$(".tabpane")) pane.hidden = pane.dataset.pane !== name;
  if (name === "browse" && !$("#browse-list").children.length) loadBrowse();
}

function wire() {
  for (const tab of $$(".tab")) tab.addEventListener("click", () => selectTab(tab.dataset.tab));
  $("#ids-form").addEventListener("submit", (e) => { e.preventDefault(); addIds(false); });
  $("#ids-add-neg").addEventListener("click", () => addIds(true));
  const addText = (negative) => {
    const input = $("#text-input");
    const text = input.value.trim();
    if (!text) { input.focus(); return; }
    addExample("text", text, negative);
    input.value = "";
  };
  $("#text-form").addEventListener("submit", (e) => { e.preventDefault(); addText(false); });
  $("#text-add-neg").addEventListener("click", () => addText(true));
  $("#upload-input").addEventListener("change", (e) => {
    for (const file of e.target.files) {
      addExample("upload", file.name, false, { file, url: URL.createObjectURL(file) });
    }
    e.target.value = "";
  });
  $("#examples-clear").addEventListener("click", () => { app.examples = []; renderExamples(); });

  $("#browse-contains").addEventListener("input", () => scheduleBrowse());
  $("#browse-state").addEventListener("change", () => scheduleBrowse());
  $("#browse-prev").addEventListener("click", () => {
    app.browse.offset = Math.max(0, app.browse.offset - BROWSE_PAGE);
    loadBrowse();
  });
  $("#browse-next").addEventListener("click", () => { app.browse.offset += BROWSE_PAGE; loadBrowse(); });

  $("#options-form").addEventListener("submit", (e) => { e.preventDefault(); runMine(buildQuery()); });
  $("#save-scenario").addEventListener("click", () => {
    const { query, files } = buildQuery();
    scenarios.saveQuery(query, files);
  });
  ui.loadMore.addEventListener("click", loadNextPage);

  $("#sel-all").addEventListener("click", () => results.selectAll());
  $("#sel-invert").addEventListener("click", () => results.invertSelection());
  $("#sel-none").addEventListener("click", () => results.selectNone());
  $("#sel-accept").addEventListener("click", () => results.decideSelected("accept"));
  $("#sel-reject").addEventListener("click", () => results.decideSelected("reject"));
  $("#queue-form").addEventListener("submit", queueAccepted);
  ui.refineBtn.addEventListener("click", refine);

  $("#batches-refresh").addEventListener("click", () => batchList.refresh());
  $("#banner-retry").addEventListener("click", async () => configure(await refreshHealth()));
  ui.batchName.value = defaultBatchName();
}

async function main() {
  API.setKeyPrompt(askApiKey);
  await API.refreshReadToken(); // a key kept from earlier in this tab
  wire();
  renderExamples();
  updateCounts();
  const health = await refreshHealth();
  configure(health);
  batchList.refresh();
  document.body.dataset.ready = health ? "true" : "false";
  // Not awaited: with an API key, the first call asks for the key; the page is usable meanwhile.
  if (health) feedback.restore().finally(() => { document.body.dataset.restored = "true"; });
}

main();
