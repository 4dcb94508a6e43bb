// The candidate grid: chunked rendering, lazy thumbnails, decisions, selection, keyboard and viewer.
import { imageUrl } from "./api.js";
import { fmtScore, h, onThumbError } from "./dom.js";

const CHUNK = 120; // cards added to the DOM at a time (thousands of candidates stay fast)

export class ResultsGrid {
  /**
   * @param {{grid: HTMLElement, sentinel: HTMLElement, viewer: HTMLDialogElement,
   *          nearestThumb: (label: string) => Node, onChange: () => void,
   *          onUseAsExample: (id: string, negative: boolean) => void,
   *          onDecide: (verdicts: {image_id: string, verdict: string, query_id?: string}[]) => void,
   *          onRefine: () => void}} opts
   */
  constructor(opts) {
    this.grid = opts.grid;
    this.sentinel = opts.sentinel;
    this.viewer = opts.viewer;
    this.nearestThumb = opts.nearestThumb;
    this.onChange = opts.onChange;
    this.onUseAsExample = opts.onUseAsExample;
    this.onDecide = opts.onDecide;
    this.onRefine = opts.onRefine;
    this.items = [];
    this.cards = [];
    this.decisions = new Map(); // image_id -> "accept" | "reject" (kept across re-runs and reloads)
    this.seen = new Map(); // image_id -> {candidate, queryId}: every candidate shown since the page loaded
    this.selected = new Set(); // image_id
    this.focus = -1;
    this.viewing = -1;
    this.observer = new IntersectionObserver((entries) => {
      if (entries.some((e) => e.isIntersecting)) this.renderMore();
    });
    this.observer.observe(this.sentinel);
    this.grid.addEventListener("click", (e) => this.onClick(e));
    document.addEventListener("keydown", (e) => this.onKey(e));
    this.wireViewer();
  }

  // -- data ---------------------------------------------------------------------------------------

  /** Replace the candidates (a new query; `queryId` is its result's query_id). */
  setItems(candidates, queryId) {
    this.items = candidates.slice();
    this.remember(candidates, queryId);
    this.cards = [];
    this.grid.replaceChildren();
    this.focus = -1;
    const ids = new Set(this.items.map((c) => c.image_id));
    for (const id of this.selected) if (!ids.has(id)) this.selected.delete(id);
    this.renderMore();
    this.onChange();
  }

  /** Add the next page of candidates. */
  addItems(candidates, queryId) {
    this.remember(candidates, queryId);
    const known = new Set(this.items.map((c) => c.image_id));
    this.items.push(...candidates.filter((c) => !known.has(c.image_id)));
    this.renderMore();
    this.onChange();
  }

  remember(candidates, queryId) {
    for (const c of candidates) this.seen.set(c.image_id, { candidate: c, queryId });
  }

  /**
   * Every accepted candidate shown since the page loaded, also those no longer in the grid (after
   * Refine, accepted images are examples and so not candidates; they are still to be queued).
   */
  accepted() {
    return [...this.seen.values()].map((s) => s.candidate).filter((c) => this.decisions.get(c.image_id) === "accept");
  }
  acceptedInGrid() { return this.items.filter((c) => this.decisions.get(c.image_id) === "accept"); }
  rejectedInGrid() { return this.items.filter((c) => this.decisions.get(c.image_id) === "reject"); }

  /** Take the decisions restored from the service (a reload): Map image_id -> "accept" | "reject". */
  restoreDecisions(decisions) {
    for (const [id, d] of decisions) if (!this.decisions.has(id)) this.decisions.set(id, d);
    this.repaintAll();
  }

  /**
   * Images that were queued: no longer to queue (they will not come back). Their decisions stay:
   * they are the session's verdicts, which Refine uses.
   */
  forget(ids) {
    for (const id of ids) { this.selected.delete(id); this.seen.delete(id); }
  }

  // -- rendering ----------------------------------------------------------------------------------

  renderMore(upTo = -1) {
    const start = this.cards.length;
    const end = Math.min(this.items.length, Math.max(start + CHUNK, upTo + 1));
    if (end <= start) return;
    const frag = document.createDocumentFragment();
    for (let i = start; i < end; i++) {
      const card = this.card(this.items[i], i);
      this.cards.push(card);
      frag.append(card);
    }
    this.grid.append(frag);
    if (start === 0 && this.cards.length) this.cards[0].tabIndex = 0;
    // The sentinel may still be on screen (short chunks, tall windows): keep filling.
    requestAnimationFrame(() => {
      const r = this.sentinel.getBoundingClientRect();
      if (this.cards.length < this.items.length && r.top < window.innerHeight + 400) this.renderMore();
    });
  }

  card(c, i) {
    const id = c.image_id;
    const sel = this.selected.has(id);
    const card = h("article", {
      class: "card", role: "option", tabindex: "-1", "aria-selected": String(sel),
      "aria-label": `rank ${c.rank}: ${id}`, dataset: { i: String(i) },
    },
    h("div", { class: "thumb", title: "Enlarge (Enter)" },
      h("img", { src: imageUrl(id, 256), loading: "lazy", decoding: "async", alt: id, onerror: onThumbError })),
    h("label", { class: "sel", title: "Select (space)" },
      h("input", { type: "checkbox", checked: sel, tabindex: "-1", "aria-label": `Select ${id}` })),
    h("span", { class: "rank" }, `#${c.rank}`),
    h("span", { class: "verdict", "aria-hidden": "true" }),
    h("div", { class: "actions" },
      h("button", { type: "button", class: "act-accept", tabindex: "-1", title: "Accept (a)", "aria-label": "Accept" }, "✓"),
      h("button", { type: "button", class: "act-reject", tabindex: "-1", title: "Reject (x)", "aria-label": "Reject" }, "✕")),
    h("div", { class: "info" },
      h("div", { class: "cid", title: id }, h("bdi", {}, id)),
      h("div", { class: "line" },
        h("span", { class: "score", title: "score" }, fmtScore(c.score)),
        c.state !== "unlabeled" ? h("span", { class: `state state-${c.state}` }, c.state) : null),
      h("div", {
        class: "nearest",
        title: `nearest example: ${c.nearest_example_id} (similarity ${fmtScore(c.nearest_example_similarity)})`,
      },
      this.nearestThumb(c.nearest_example_id),
      h("span", { class: "approx", "aria-hidden": "true" }, "≈"),
      h("span", { class: "nearest-id" }, h("bdi", {}, c.nearest_example_id)),
      h("span", { class: "sim" }, fmtScore(c.nearest_example_similarity)))));
    this.paint(card, id);
    return card;
  }

  paint(card, id) {
    const d = this.decisions.get(id);
    const sel = this.selected.has(id);
    card.classList.toggle("accepted", d === "accept");
    card.classList.toggle("rejected", d === "reject");
    card.classList.toggle("selected", sel);
    card.setAttribute("aria-selected", String(sel));
    card.querySelector(".sel input").checked = sel;
  }

  repaint(i) {
    const card = this.cards[i];
    if (card) this.paint(card, this.items[i].image_id);
  }

  repaintAll() {
    this.cards.forEach((card, i) => this.paint(card, this.items[i].image_id));
    this.onChange();
  }

  // -- actions ------------------------------------------------------------------------------------

  /** Set (or, with null, undo) the decision on candidate i; the change is reported as a verdict. */
  decide(i, decision) {
    const c = this.items[i];
    if (!c) return;
    const before = this.decisions.get(c.image_id);
    if (decision) this.decisions.set(c.image_id, decision);
    else this.decisions.delete(c.image_id);
    // Undo is stored as a "skip" verdict: the latest verdict wins, and a skip brings a rejected image back.
    if ((decision || undefined) !== before) this.report([[c.image_id, decision || "skip"]]);
    this.repaint(i);
    this.onChange();
    if (this.viewing === i) this.fillViewer(i);
  }

  toggleSelect(i) {
    const c = this.items[i];
    if (!c) return;
    if (this.selected.has(c.image_id)) this.selected.delete(c.image_id);
    else this.selected.add(c.image_id);
    this.repaint(i);
    this.onChange();
  }

  selectAll() { for (const c of this.items) this.selected.add(c.image_id); this.repaintAll(); }
  selectNone() { this.selected.clear(); this.repaintAll(); }
  invertSelection() {
    for (const c of this.items) {
      if (this.selected.has(c.image_id)) this.selected.delete(c.image_id);
      else this.selected.add(c.image_id);
    }
    this.repaintAll();
  }
  decideSelected(decision) {
    const changed = [];
    for (const c of this.items) {
      if (!this.selected.has(c.image_id) || this.decisions.get(c.image_id) === decision) continue;
      this.decisions.set(c.image_id, decision);
      changed.push([c.image_id, decision]);
    }
    if (changed.length) this.report(changed);
    this.repaintAll();
  }

  report(changes) {
    this.onDecide(changes.map(([id, verdict]) => {
      const queryId = this.seen.get(id)?.queryId;
      return queryId ? { image_id: id, verdict, query_id: queryId } : { image_id: id, verdict };
    }));
  }

  setFocus(i, { scroll = true } = {}) {
    if (!this.items.length) return;
    i = Math.max(0, Math.min(this.items.length - 1, i));
    if (i >= this.cards.length) this.renderMore(i);
    const prev = this.cards[this.focus];
    if (prev) { prev.classList.remove("focused"); prev.tabIndex = -1; }
    this.focus = i;
    const card = this.cards[i];
    card.classList.add("focused");
    card.tabIndex = 0;
    card.focus({ preventScroll: true });
    if (scroll) card.scrollIntoView({ block: "nearest" });
  }

  columns() {
    const cols = getComputedStyle(this.grid).gridTemplateColumns.split(" ").filter(Boolean).length;
    return Math.max(1, cols);
  }

  onClick(e) {
    const card = e.target.closest(".card");
    if (!card) return;
    const i = Number(card.dataset.i);
    if (e.target.closest(".act-accept")) { this.setFocus(i, { scroll: false }); this.decide(i, "accept"); return; }
    if (e.target.closest(".act-reject")) { this.setFocus(i, { scroll: false }); this.decide(i, "reject"); return; }
    if (e.target.closest(".sel")) {
      // The label forwards its click to the checkbox; act on that one (native toggle, then sync).
      if (e.target.matches("input")) { this.toggleSelect(i); this.setFocus(i, { scroll: false }); }
      return;
    }
    this.setFocus(i, { scroll: false });
    if (e.target.closest(".thumb")) this.openViewer(i);
  }

  onKey(e) {
    if (e.defaultPrevented || e.ctrlKey || e.metaKey || e.altKey) return;
    const t = e.target;
    if (t instanceof Element && t.closest("input, textarea, select, [contenteditable=true]")) return;
    const inViewer = this.viewer.open;
    if (!inViewer && t instanceof Element && t.closest("button, a, summary") && (e.key === " " || e.key === "Enter")) return;
    if (!this.items.length) return;
    const cur = inViewer ? this.viewing : this.focus;
    const step = (d) => {
      if (inViewer) this.openViewer(Math.max(0, Math.min(this.items.length - 1, cur + d)));
      else this.setFocus(cur < 0 ? 0 : cur + d);
    };
    const decideAndAdvance = (decision) => {
      if (cur < 0) { this.setFocus(0); return; }
      this.decide(cur, decision);
      if (cur < this.items.length - 1) step(1);
    };
    let handled = true;
    switch (e.key) {
      case "ArrowRight": case "j": step(1); break;
      case "ArrowLeft": case "k": step(-1); break;
      case "ArrowDown": step(inViewer ? 1 : this.columns()); break;
      case "ArrowUp": step(inViewer ? -1 : -this.columns()); break;
      case "Home": step(-cur); break;
      case "End": step(this.items.length - 1 - cur); break;
      case "a": decideAndAdvance("accept"); break;
      case "r": case "x": decideAndAdvance("reject"); break;
      case "u": case "Backspace": if (cur >= 0) this.decide(cur, null); break;
      case "A": this.decideSelected("accept"); break;
      case "R": case "X": this.decideSelected("reject"); break;
      case "f": if (!inViewer) this.onRefine(); break;
      case " ": if (cur >= 0) this.toggleSelect(cur); else this.setFocus(0); break;
      case "Enter": case "o":
        if (inViewer) this.viewer.close();
        else if (cur >= 0) this.openViewer(cur);
        break;
      default: handled = false;
    }
    if (handled) e.preventDefault();
  }

  // -- viewer -------------------------------------------------------------------------------------

  wireViewer() {
    const v = this.viewer;
    const on = (id, fn) => v.querySelector(`#${id}`).addEventListener("click", fn);
    on("viewer-close", () => v.close());
    on("viewer-accept", () => this.decide(this.viewing, "accept"));
    on("viewer-reject", () => this.decide(this.viewing, "reject"));
    on("viewer-prev", () => this.openViewer(Math.max(0, this.viewing - 1)));
    on("viewer-next", () => this.openViewer(Math.min(this.items.length - 1, this.viewing + 1)));
    on("viewer-add-pos", () => this.onUseAsExample(this.items[this.viewing].image_id, false));
    on("viewer-add-neg", () => this.onUseAsExample(this.items[this.viewing].image_id, true));
    v.addEventListener("click", (e) => { if (e.target === v) v.close(); }); // backdrop
    v.addEventListener("close", () => {
      const i = this.viewing;
      this.viewing = -1;
      if (i >= 0) this.setFocus(i);
    });
  }

  openViewer(i) {
    if (!this.items[i]) return;
    this.viewing = i;
    if (i >= this.cards.length) this.renderMore(i);
    this.fillViewer(i);
    if (!this.viewer.open) this.viewer.showModal();
  }

  fillViewer(i) {
    const c = this.items[i];
    const v = this.viewer;
    const img = v.querySelector("#viewer-img");
    if (img.dataset.id !== c.image_id) { // not on a mere re-fill (a decision taken in the viewer)
      img.dataset.id = c.image_id;
      img.classList.remove("broken");
      img.onerror = () => img.classList.add("broken");
      // The grid's thumbnail (cached) at once, then the full-size image when it has loaded.
      const full = imageUrl(c.image_id);
      img.src = imageUrl(c.image_id, 256);
      const loader = new Image();
      loader.onload = () => { if (img.dataset.id === c.image_id) img.src = full; };
      loader.src = full;
      img.alt = c.image_id;
    }
    v.querySelector("#viewer-full").href = imageUrl(c.image_id);
    const d = this.decisions.get(c.image_id);
    v.querySelector("#viewer-title").textContent =
      `#${c.rank} · ${d === "accept" ? "accepted" : d === "reject" ? "rejected" : "undecided"}`;
    v.dataset.decision = d || "";
    const rows = [
      ["image_id", c.image_id],
      ["rank", c.rank],
      ["score", fmtScore(c.score)],
      ["nearest example", c.nearest_example_id],
      ["similarity", fmtScore(c.nearest_example_similarity)],
      ["state", c.state],
      ...Object.entries(c.metadata || {}).map(([k, val]) => [k, val == null ? "–" : String(val)]),
    ];
    v.querySelector("#viewer-meta").replaceChildren(
      ...rows.map(([k, val]) => h("tr", {}, h("th", {}, k), h("td", {}, String(val)))));
  }
}
