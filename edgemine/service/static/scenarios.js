// The Scenarios view: each scenario's metric beside the aggregate for a model (and its verdict against a
// baseline), the flips of a scenario as thumbnails with "mine more like these", and saving a mining
// query as a scenario. Uses GET /v1/scenarios, GET /v1/models, POST /v1/evaluations, POST /v1/scenarios.
import * as API from "./api.js";
import { $, $$, fmtInt, h, onThumbError, plural } from "./dom.js";

const MAX_POSITIVES = 256; // the service's MAX_EXAMPLES: example vectors in one query
const MAX_SCENARIOS = 50; // the service's MAX_EVALUATION_SCENARIOS
const FLIPS_SHOWN = 120;

const fmt = (x) => (x == null || Number.isNaN(x) ? "–" : Number(x).toFixed(3));
const fmtP = (p) => (p == null ? "–" : p < 0.001 ? p.toExponential(1) : p.toFixed(3));
const interval = (m) => (m && m.low != null && m.high != null ? `${fmt(m.low)}–${fmt(m.high)}` : "–");

/**
 * @param {{notify: Function, showError: Function, mineLike: (ids: string[]) => Promise<unknown>}} hooks
 *   mineLike runs a mining query with these ids as positive examples in the results view.
 */
export function createScenariosView({ notify, showError, mineLike }) {
  const el = {
    view: $("#scenarios-view"), layout: $("#mine-view"), form: $("#eval-form"), model: $("#eval-model"),
    baseline: $("#eval-baseline"), btn: $("#eval-btn"), msg: $("#eval-msg"), status: $("#eval-status"),
    rows: $("#scenario-rows"), flips: $("#flips"), flipsTitle: $("#flips-title"), flipsReason: $("#flips-reason"),
    flipsGrid: $("#flips-grid"), mineFlips: $("#mine-flips"),
  };
  const state = { scenarios: [], models: [], result: null, chosen: null, loaded: false, seq: 0 };

  function showView(name) {
    for (const tab of $$(".view-tab")) tab.setAttribute("aria-selected", String(tab.dataset.view === name));
    el.layout.hidden = name !== "mine";
    el.view.hidden = name !== "scenarios";
    if (name === "scenarios" && !state.loaded) refresh();
  }

  function pickers() {
    const names = state.models.map((m) => m.name);
    const keep = (select, fallback) => (names.includes(select.value) ? select.value : fallback);
    const model = keep(el.model, names[names.length - 1] ?? "");
    const baseline = el.baseline.value && names.includes(el.baseline.value) ? el.baseline.value
      : names.length > 1 ? names[names.length - 2] : "";
    el.model.replaceChildren(...names.map((n) => h("option", { value: n }, n)));
    el.baseline.replaceChildren(h("option", { value: "" }, "(none: evaluate only)"),
      ...names.map((n) => h("option", { value: n }, n)));
    el.model.value = model;
    el.baseline.value = baseline;
    el.btn.disabled = names.length === 0;
  }

  /** Reload the scenario list and the models; evaluate when there is a model. */
  async function refresh() {
    state.loaded = true;
    try {
      [state.scenarios, state.models] = await Promise.all([API.listScenarios(), API.listModels()]);
    } catch (err) {
      state.loaded = false;
      showError(err, "Loading scenarios");
      return;
    }
    pickers();
    render();
    if (!state.models.length) {
      el.msg.textContent = "No model predictions imported yet: edgemine predictions import FILE --model NAME.";
    } else if (!state.scenarios.length) {
      el.msg.textContent = "No scenarios yet: save a mining query as a scenario, or edgemine scenario create.";
    }
    if (state.models.length) await evaluate();
  }

  async function evaluate() {
    const seq = ++state.seq;
    const fresh = state.scenarios.filter((s) => s.lock === "fresh").map((s) => s.name).slice(0, MAX_SCENARIOS);
    const body = { model: el.model.value, scenarios: fresh };
    if (el.baseline.value && el.baseline.value !== el.model.value) body.baseline = el.baseline.value;
    el.btn.disabled = true;
    el.msg.textContent = body.baseline ? `Gating ${body.model} against ${body.baseline}…` : `Evaluating ${body.model}…`;
    try {
      const result = await API.evaluate(body);
      if (seq !== state.seq) return;
      state.result = { ...result, gated: Boolean(body.baseline) };
      const skipped = state.scenarios.length - fresh.length;
      el.msg.textContent = skipped ? `${plural(skipped, "scenario")} not evaluated (lock not fresh: run ` +
        "edgemine scenario refresh, or fix the file)." : "";
      render();
    } catch (err) {
      if (seq === state.seq) { el.msg.textContent = ""; showError(err, "Evaluation"); }
    } finally {
      if (seq === state.seq) el.btn.disabled = state.models.length === 0;
    }
  }

  /** Figures per row name: {n, value, interval, baseline, drop, p, verdict, reason, gate}. */
  function figures() {
    const r = state.result;
    const out = new Map();
    if (!r) return out;
    if (r.gated) {
      const [cand, base] = r.aggregate;
      out.set("", { m: cand, base, drop: cand.value != null && base.value != null ? base.value - cand.value : null });
      for (const s of r.scenarios) {
        out.set(s.name, { m: s.candidate, base: s.baseline, drop: s.drop, p: s.p_adjusted, verdict: s.verdict,
          reason: s.reason, gate: s });
      }
    } else {
      for (const row of r.rows) out.set(row.kind === "aggregate" ? "" : row.name, { m: row.measurement });
    }
    return out;
  }

  function row(name, label, info, f) {
    const m = f?.m;
    const flips = f?.gate?.flips?.length ?? 0;
    return h("tr", { dataset: { name: name || "all labeled" }, class: `${name ? "" : "aggregate "}${f?.verdict ? `v-${f.verdict}` : ""}`,
      title: f?.reason || info?.reason || "" },
    h("th", { scope: "row" }, label, info?.description ? h("div", { class: "muted small-print" }, info.description) : null),
    h("td", { class: "num" }, info ? (info.members == null ? "–" : `${fmtInt(info.with_ground_truth)} / ${fmtInt(info.members)}`) : "–"),
    h("td", { class: `lock lock-${info?.lock ?? "none"}` }, info ? info.lock : ""),
    h("td", { class: "num n" }, m ? fmtInt(m.n) : "–"),
    h("td", {}, m ? m.metric : info?.metric?.name ?? "–"),
    h("td", { class: "num value" }, fmt(m?.value)),
    h("td", { class: "num" }, interval(m)),
    h("td", { class: "num baseline" }, f?.base ? `${fmt(f.base.value)}` : "–"),
    h("td", { class: "num drop" }, fmt(f?.drop)),
    h("td", { class: "num p" }, fmtP(f?.p)),
    h("td", { class: "verdict" }, f?.verdict ? h("span", { class: `badge ${f.verdict}` }, f.verdict) : "–"),
    h("td", {}, flips ? h("button", { type: "button", class: "small show-flips", onclick: () => showFlips(name) },
      `${plural(flips, "flip")}`) : ""));
  }

  function render() {
    const f = figures();
    const r = state.result;
    el.status.replaceChildren(...(r ? [
      r.gated && r.scenarios.length ? h("span", { class: `badge status-${r.status}` }, `gate ${r.status}`) : null,
      r.gated && !r.scenarios.length ? h("span", { class: "muted" }, "no scenario to gate (none with a fresh lock)") : null,
      ` model ${r.gated ? r.candidate : r.model}${r.gated ? ` vs baseline ${r.baseline}` : ""}`,
    ].filter((part) => part != null) : []));  // replaceChildren would print a null as "null"
    const rows = [row("", "all labeled images", null, f.get(""))];
    for (const s of state.scenarios) rows.push(row(s.name, s.name, s, f.get(s.name)));
    el.rows.replaceChildren(...rows);
    if (state.chosen && f.get(state.chosen)?.gate) showFlips(state.chosen);
    else el.flips.hidden = true;
  }

  function showFlips(name) {
    const gate = figures().get(name)?.gate;
    if (!gate) return;
    state.chosen = name;
    const regressed = gate.flips.filter((x) => x.direction === "regressed").map((x) => x.image_id);
    const fixed = gate.flips.filter((x) => x.direction === "fixed").map((x) => x.image_id);
    el.flips.hidden = false;
    el.flipsTitle.textContent = `${name}: ${plural(regressed.length, "regressed image")}, ${fmtInt(fixed.length)} fixed`;
    el.flipsReason.textContent = gate.reason;
    const tile = (id, direction) => h("figure", { class: `flip ${direction}`, dataset: { id }, title: `${direction}: ${id}` },
      h("img", { src: API.imageUrl(id, 160), alt: id, loading: "lazy", onerror: onThumbError }),
      h("figcaption", {}, h("bdi", {}, id)));
    el.flipsGrid.replaceChildren(
      ...regressed.slice(0, FLIPS_SHOWN).map((id) => tile(id, "regressed")),
      ...fixed.slice(0, Math.max(0, FLIPS_SHOWN - regressed.length)).map((id) => tile(id, "fixed")));
    el.mineFlips.disabled = regressed.length === 0;
    el.mineFlips.textContent = `Mine more like these (${fmtInt(Math.min(regressed.length, MAX_POSITIVES))} regressed)`;
    el.mineFlips.onclick = () => {
      showView("mine");
      if (regressed.length > MAX_POSITIVES) {
        notify("info", `Mining with the first ${MAX_POSITIVES} of ${regressed.length} regressed images (the limit of examples per query).`);
      }
      mineLike(regressed.slice(0, MAX_POSITIVES));
    };
  }

  /** Save a mining query (the form's MineQuery) as a scenario; asks for its name. */
  async function saveQuery(query, files) {
    if (files.length) {
      notify("error", "A query with uploaded images cannot be saved as a scenario (a scenario names bundle images): remove the uploads.");
      return null;
    }
    const name = (window.prompt("Scenario name (letters, digits, . _ -):", "") || "").trim();
    if (!name) return null;
    // The scenario's members come from every labeling state; paging fields do not belong in it.
    const { offset: _o, cursor: _c, include_states: _s, session_id: _i, parent_query_id: _p, ...saved } = query;
    try {
      const created = await API.saveScenario({ name, query: saved });
      notify("success", `Saved scenario ${created.name} (${created.file}, ${plural(created.members, "member")}, locked). `,
        h("button", { type: "button", class: "small", onclick: () => showView("scenarios") }, "Show scenarios"));
      state.loaded = false;
      if (!el.view.hidden) refresh();
      return created;
    } catch (err) {
      showError(err, "Saving the scenario");
      return null;
    }
  }

  for (const tab of $$(".view-tab")) tab.addEventListener("click", () => showView(tab.dataset.view));
  el.form.addEventListener("submit", (e) => { e.preventDefault(); evaluate(); });
  $("#scenarios-refresh").addEventListener("click", refresh);
  return { showView, refresh, saveQuery };
}
