// The session panel: verdicts saved as they happen, restored on load, and the session's yield
// (reviewed, accepted, rejected, yield with its 95% interval, a small cumulative-yield curve).
import * as API from "./api.js";
import { $, fmtInt, h, plural } from "./dom.js";
import { ReviewSession } from "./session.js";

const SVG_NS = "http://www.w3.org/2000/svg";
const PLOT = { w: 240, h: 64, pad: 4 };

function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  el.append(...children);
  return el;
}

const pct = (x) => (x == null || Number.isNaN(Number(x)) ? "–" : `${(100 * Number(x)).toFixed(0)}%`);

/**
 * The cumulative-yield curve as an inline SVG: x = verdicts given so far, y = accepted / reviewed
 * (0 at the bottom, 100% at the top); the current yield as a dashed line.
 * @param {{verdicts: number, yield_rate: number|null}[]} curve the session's curve from /v1/yield
 */
export function yieldCurve(curve) {
  const pts = curve.filter((p) => p.yield_rate != null); // before the first accept/reject: no yield yet
  if (!pts.length) return null;
  const { w, h: height, pad } = PLOT;
  const first = pts[0].verdicts;
  const span = Math.max(1, pts[pts.length - 1].verdicts - first);
  const x = (n) => pad + ((n - first) * (w - 2 * pad)) / span;
  const y = (v) => pad + (1 - v) * (height - 2 * pad);
  const last = pts[pts.length - 1].yield_rate;
  const points = pts.map((p) => `${x(p.verdicts).toFixed(1)},${y(p.yield_rate).toFixed(1)}`).join(" ");
  return svg("svg", {
    class: "yield-curve", viewBox: `0 0 ${w} ${height}`, width: w, height, role: "img",
    "aria-label": `cumulative yield over ${pts[pts.length - 1].verdicts} verdicts, now ${pct(last)}`,
  },
  svg("title", {}, "Cumulative yield (accepted / reviewed) of this session, verdict by verdict"),
  svg("rect", { class: "frame", x: 0.5, y: 0.5, width: w - 1, height: height - 1 }),
  svg("line", { class: "final", x1: pad, x2: w - pad, y1: y(last), y2: y(last) }),
  pts.length > 1 ? svg("polyline", { class: "curve", points })
    : svg("circle", { class: "curve-dot", cx: w / 2, cy: y(last), r: 2.5 }));
}

/** This session's part of GET /v1/yield?session_id= (see the README's "Yield"), or null. */
export function sessionYield(report, sessionId) {
  return (report?.sessions || []).find((s) => s.session_id === sessionId) || null;
}

/** The session's last few queries with a verdict: strategy and yield of each (newest first). */
function queryRows(report, max = 5) {
  const rows = (report?.queries || []).filter((q) => q.reviewed > 0)
    .sort((a, b) => String(b.created_at || "").localeCompare(String(a.created_at || ""))).slice(0, max);
  if (!rows.length) return null;
  return h("table", { class: "yield-queries" },
    h("tr", {}, h("th", {}, "query"), h("th", {}, "strategy"), h("th", {}, "accepted"), h("th", {}, "yield")),
    rows.map((q) => h("tr", {},
      h("td", {}, h("code", { title: q.query_id }, q.query_id)), h("td", {}, q.strategy || "–"),
      h("td", {}, `${fmtInt(q.accepted)} / ${fmtInt(q.reviewed)}`), h("td", {}, pct(q.yield_rate)))));
}

export class FeedbackPanel {
  /**
   * @param {{results: import("./results.js").ResultsGrid, showError: (err: unknown, where: string) => void,
   *          onChange: () => void, onRecovered: () => void}} opts
   */
  constructor({ results, showError, onChange, onRecovered }) {
    this.results = results;
    this.showError = showError;
    this.onChange = onChange;
    this.failed = false; // the last save failed: say so when verdicts are saved again
    this.msg = $("#session-msg");
    this.yieldTimer = 0;
    this.session = new ReviewSession({
      onSaved: () => {
        this.status();
        this.scheduleYield();
        if (this.failed && !this.session.pending.length) { this.failed = false; onRecovered(); }
      },
      onError: (err, pending) => {
        this.failed = true;
        this.showError(err, "Saving verdicts");
        this.status(pending);
      },
    });
    $("#session-new").addEventListener("click", () => this.renew());
    this.showId();
  }

  /** Send verdicts as they happen (results.js reports every change). */
  record(verdicts) {
    this.session.record(verdicts);
    this.status();
    this.onChange();
  }

  /** Mark the cards with the session's stored verdicts (a reload keeps them), then show the yield. */
  async restore() {
    try {
      const decisions = await this.session.restore();
      this.results.restoreDecisions(decisions);
      if (decisions.size) this.msg.textContent = `Restored ${plural(decisions.size, "verdict")} of this session.`;
    } catch (err) {
      this.msg.className = "msg error";
      this.msg.textContent = `Could not restore this session's verdicts: ${err instanceof API.ApiError ? err.message : err}`;
    }
    await this.refreshYield();
  }

  /** How many of this session's images are accepted / rejected (what Refine adds as examples). */
  counts() {
    let accepted = 0;
    let rejected = 0;
    for (const d of this.results.decisions.values()) {
      if (d === "accept") accepted++;
      else if (d === "reject") rejected++;
    }
    return { accepted, rejected };
  }

  status(pending = this.session.pending.length) {
    const el = $("#session-pending");
    el.hidden = pending === 0;
    el.replaceChildren(`${plural(pending, "verdict")} not saved yet `,
      h("button", { type: "button", class: "small", onclick: () => this.session.flush() }, "Retry"));
  }

  scheduleYield() {
    clearTimeout(this.yieldTimer);
    this.yieldTimer = setTimeout(() => this.refreshYield(), 250);
  }

  async refreshYield() {
    const box = $("#yield");
    try {
      const report = await API.getYield(this.session.id);
      const f = sessionYield(report, this.session.id);
      if (!f || !f.reviewed) {
        box.replaceChildren(h("p", { class: "muted" }, "Nothing reviewed in this session yet."));
        return;
      }
      box.replaceChildren(...[ // replaceChildren would show a null as the text "null"
        h("div", { class: "yield-figures" },
          h("span", { class: "y-reviewed" }, `${fmtInt(f.reviewed)} reviewed`), " · ",
          h("span", { class: "c-accept y-accepted" }, `${fmtInt(f.accepted)} accepted`), " · ",
          h("span", { class: "c-reject y-rejected" }, `${fmtInt(f.rejected)} rejected`)),
        h("div", { class: "yield-rate", title: "accepted / reviewed (accept + reject; a skip is no judgement)" },
          "yield ", h("strong", { class: "y-yield" }, pct(f.yield_rate)),
          h("span", { class: "muted y-interval", title: "95% Wilson score interval" },
            ` (95% interval ${pct(f.ci_low)}–${pct(f.ci_high)})`)),
        yieldCurve(f.curve || []),
        queryRows(report)].filter(Boolean));
    } catch (err) {
      box.replaceChildren(h("p", { class: "msg error" },
        `Yield unavailable: ${err instanceof API.ApiError ? err.message : err}`));
    }
  }

  showId() {
    $("#session-id").textContent = this.session.id;
  }

  async renew() {
    if (!window.confirm("Start a new review session? This session's verdicts stay stored; the page forgets them.")) return;
    if (!(await this.session.renew())) return;
    this.results.decisions.clear();
    this.results.repaintAll();
    this.showId();
    this.msg.className = "msg";
    this.msg.textContent = "New session started.";
    await this.refreshYield();
  }
}
