// The review session: an id kept for this browser tab, the last query (the parent of the next one),
// and every verdict sent to the service as it happens, so that a reload keeps them.
import * as API from "./api.js";

const SESSION_KEY = "edgemine.sessionId";
const PARENT_KEY = "edgemine.lastQueryId";
const MAX_PER_POST = 10_000; // the service's limit on verdicts per POST /v1/verdicts
const PAGE = 1000; // verdicts per GET when restoring (the service's most per page)

function stored(key) {
  try { return sessionStorage.getItem(key); } catch { return null; }
}

function store(key, value) {
  try {
    if (value == null) sessionStorage.removeItem(key);
    else sessionStorage.setItem(key, value);
  } catch {
    // storage disabled: the session lasts as long as the page
  }
}

function newSessionId() {
  const bytes = crypto.getRandomValues(new Uint8Array(8)); // works on plain-http LAN hosts too
  return `s-${Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("")}`;
}

export class ReviewSession {
  /**
   * @param {{onSaved: (verdicts: object[]) => void, onError: (err: unknown, pending: number) => void}} hooks
   */
  constructor({ onSaved, onError }) {
    this.id = stored(SESSION_KEY) || newSessionId();
    store(SESSION_KEY, this.id);
    this.parentQueryId = stored(PARENT_KEY);
    this.pending = []; // verdicts not stored yet, in the order they were given
    this.draining = null;
    this.onSaved = onSaved;
    this.onError = onError;
  }

  /** The fields every mine request of this session carries. */
  queryFields() {
    return this.parentQueryId
      ? { session_id: this.id, parent_query_id: this.parentQueryId }
      : { session_id: this.id };
  }

  /** Remember a mine's query_id: the next mine names it as its parent. */
  mined(queryId) {
    if (!queryId) return;
    this.parentQueryId = queryId;
    store(PARENT_KEY, queryId);
  }

  /** Queue verdicts ({image_id, verdict, query_id?}) and send them; resolves true once all are stored. */
  record(verdicts) {
    this.pending.push(...verdicts);
    return this.flush();
  }

  /** Send what is pending, in order, one request at a time (so the service sees them in order). */
  flush() {
    if (!this.draining) this.draining = this.drain().finally(() => { this.draining = null; });
    return this.draining;
  }

  async drain() {
    while (this.pending.length) {
      const chunk = this.pending.slice(0, MAX_PER_POST);
      try {
        await API.postVerdicts(chunk, this.id);
      } catch (err) {
        if (err instanceof API.ApiError && err.kind === "unknown_ids") {
          // Images gone from the bundle (a new version): nothing was stored; drop those, keep the rest.
          const gone = new Set(err.unknownIds);
          this.pending = this.pending.filter((v) => !gone.has(v.image_id));
        }
        this.onError(err, this.pending.length);
        return false;
      }
      this.pending.splice(0, chunk.length);
      this.onSaved(chunk);
    }
    return true;
  }

  /** The session's latest verdict per image, from the service: Map image_id -> "accept" | "reject". */
  async restore() {
    const decisions = new Map();
    for (let offset = 0; offset != null;) {
      const page = await API.listVerdicts({ sessionId: this.id, limit: PAGE, offset });
      for (const v of page.verdicts) {
        if (v.verdict === "skip") decisions.delete(v.image_id);
        else decisions.set(v.image_id, v.verdict);
      }
      offset = page.next_offset;
    }
    return decisions;
  }

  /** Start a new session (a new id, no parent query); refused while verdicts are still unsent. */
  async renew() {
    if (!(await this.flush())) return false;
    this.id = newSessionId();
    this.parentQueryId = null;
    store(SESSION_KEY, this.id);
    store(PARENT_KEY, null);
    return true;
  }
}
