// Thin client over the public HTTP API; every failure becomes an ApiError with a readable message.

export class ApiError extends Error {
  /**
   * @param {string} message what to show the user
   * @param {{status?: number, kind?: string, detail?: unknown, unknownIds?: string[]}} info
   */
  constructor(message, info = {}) {
    super(message);
    this.name = "ApiError";
    this.status = info.status ?? 0;
    this.kind = info.kind ?? "error"; // network | unknown_ids | invalid | unavailable | not_found | error
    this.detail = info.detail;
    this.unknownIds = info.unknownIds ?? [];
  }
}

/** Render FastAPI's `detail` (a string, or a list of pydantic errors) as text. */
export function describeDetail(detail) {
  if (detail == null || detail === "") return "";
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) {
    return detail.map((e) => {
      if (e && typeof e === "object" && "msg" in e) {
        const loc = (e.loc || []).filter((p) => p !== "body" && p !== "query").join(".");
        return loc ? `${loc}: ${e.msg}` : String(e.msg);
      }
      return typeof e === "string" ? e : JSON.stringify(e);
    }).join("; ");
  }
  return JSON.stringify(detail);
}

function errorFrom(res, body) {
  const status = res.status;
  const detail = body && typeof body === "object" && "detail" in body ? body.detail : body;
  const text = describeDetail(detail);
  if (status === 404 && body && Array.isArray(body.unknown_ids)) {
    const ids = body.unknown_ids;
    return new ApiError(
      `Unknown image ID${ids.length === 1 ? "" : "s"} (not in this bundle): ${ids.join(", ")}`,
      { status, kind: "unknown_ids", detail, unknownIds: ids });
  }
  if (status === 422) {
    return new ApiError(`The service rejected the request: ${text || "invalid request"}`,
      { status, kind: "invalid", detail });
  }
  if (status === 503 || status === 502 || status === 504) {
    return new ApiError(`The service is not ready (${status}): ${text || res.statusText || "try again shortly"}`,
      { status, kind: "unavailable", detail });
  }
  if (status === 404) {
    return new ApiError(`Not found: ${text || res.url}`, { status, kind: "not_found", detail });
  }
  if (status === 401) {
    return new ApiError(`This service needs an API key: ${text || "unauthorized"}`, { status, kind: "auth", detail });
  }
  if (status === 413) {
    return new ApiError(`Request too large: ${text}`, { status, kind: "invalid", detail });
  }
  return new ApiError(`The service answered ${status} ${res.statusText}${text ? `: ${text}` : ""}`,
    { status, kind: "error", detail });
}

// -- optional API key ------------------------------------------------------------------------------
// The key is asked for on the first 401, kept in sessionStorage (this tab only) and sent as
// `Authorization: Bearer`. <img> tags and download links cannot send headers: they carry a
// short-lived read token from GET /v1/read-token instead (an HMAC of an expiry; never the key).

const KEY_STORE = "edgemine.apiKey";
const TOKEN_REFRESH_MS = 30 * 60 * 1000;
let readToken = null;
let keyPrompt = null; // (wrong: boolean) => Promise<string|null>, set by the page
let pendingKey = null; // one prompt for all the requests that met a 401 together

function storedKey() {
  try { return sessionStorage.getItem(KEY_STORE); } catch { return null; }
}

/** Register how the page asks the user for an API key (resolves to the key, or null if cancelled). */
export function setKeyPrompt(fn) { keyPrompt = fn; }

/** Fetch a read token for image and export URLs (when a key is in use); refreshed periodically. */
export async function refreshReadToken() {
  if (!storedKey()) return;
  try {
    const body = await api("/v1/read-token", { retryAuth: false });
    readToken = body && body.token ? body.token : null;
  } catch {
    readToken = null; // images then fail visibly; the next API call asks for the key again
  }
}
setInterval(refreshReadToken, TOKEN_REFRESH_MS);

async function obtainKey(wrong) {
  if (!keyPrompt) return false;
  if (!pendingKey) {
    pendingKey = (async () => {
      const key = await keyPrompt(wrong);
      if (!key) return false;
      try { sessionStorage.setItem(KEY_STORE, key); } catch { return false; }
      await refreshReadToken();
      return true;
    })().finally(() => { pendingKey = null; });
  }
  return pendingKey;
}

function withToken(url) {
  if (!readToken) return url;
  const u = new URL(url, location.origin);
  u.searchParams.set("token", readToken);
  return `${u.pathname}${u.search}`;
}

/** The same image or export URL with the current read token (for an <img> whose token expired). */
export function refreshUrl(url) {
  const u = new URL(url, location.origin);
  if (!u.searchParams.has("token") || !readToken || u.searchParams.get("token") === readToken) return null;
  u.searchParams.set("token", readToken);
  return `${u.pathname}${u.search}`;
}

/**
 * Call the API. `json` sends a JSON body, `form` a FormData body. A 401 asks for the API key
 * (once for concurrent calls) and retries with it.
 * @returns {Promise<any>} the parsed JSON (or text) body
 */
export async function api(path, { method = "GET", json, form, signal, retryAuth = true } = {}) {
  const init = { method, signal, headers: { accept: "application/json" } };
  if (json !== undefined) {
    init.headers["content-type"] = "application/json";
    init.body = JSON.stringify(json);
  } else if (form !== undefined) {
    init.body = form;
  }
  const key = storedKey();
  if (key) init.headers.authorization = `Bearer ${key}`;
  let res;
  try {
    res = await fetch(path, init);
  } catch (err) {
    if (err && err.name === "AbortError") throw err;
    throw new ApiError(
      `Cannot reach the edgemine service at ${location.origin} (${err && err.message ? err.message : err}). ` +
      "Is `edgemine serve` still running?", { kind: "network" });
  }
  const type = res.headers.get("content-type") || "";
  let body = null;
  try {
    body = type.includes("json") ? await res.json() : await res.text();
  } catch {
    body = null;
  }
  if (res.status === 401 && retryAuth && await obtainKey(Boolean(key))) {
    return api(path, { method, json, form, signal, retryAuth });
  }
  if (!res.ok) throw errorFrom(res, body);
  return body;
}

/** URL of an indexed image (a JPEG thumbnail when `size` is given), relative to this page's origin. */
export function imageUrl(imageId, size) {
  const path = imageId.split("/").map(encodeURIComponent).join("/");
  return withToken(`/v1/images/${path}${size ? `?size=${size}` : ""}`);
}

export function exportUrl(batchId, format) {
  return withToken(`/v1/batches/${encodeURIComponent(batchId)}/export?format=${format}`);
}

export const getHealth = () => api("/v1/health");

export function browseImages({ filters = {}, state = [], contains = "", offset = 0, limit = 60 } = {}) {
  const params = new URLSearchParams();
  params.set("filters", JSON.stringify(filters));
  for (const s of state) params.append("state", s);
  if (contains) params.set("contains", contains);
  params.set("offset", String(offset));
  params.set("limit", String(limit));
  return api(`/v1/images?${params}`);
}

/** POST /v1/mine, or /v1/mine/upload when there are files (they are positives). */
export function mine(query, files = [], signal) {
  if (files.length) {
    const form = new FormData();
    for (const f of files) form.append("files", f, f.name);
    form.append("query", JSON.stringify(query));
    return api("/v1/mine/upload", { method: "POST", form, signal });
  }
  return api("/v1/mine", { method: "POST", json: query, signal });
}

export const createBatch = (body) => api("/v1/batches", { method: "POST", json: body });
export const listBatches = () => api("/v1/batches");
export const getBatch = (id) => api(`/v1/batches/${encodeURIComponent(id)}`);
export const setLabels = (imageIds, state) =>
  api("/v1/labels", { method: "POST", json: { image_ids: imageIds, state } });

// -- verdicts and yield (issue 10) ------------------------------------------------------------------

/** POST /v1/verdicts: `verdicts` are {image_id, verdict: "accept"|"reject"|"skip", query_id?}. */
export const postVerdicts = (verdicts, sessionId) =>
  api("/v1/verdicts", { method: "POST", json: { verdicts, session_id: sessionId } });

/** GET /v1/verdicts for a session (the latest verdict per image): one page, {verdicts, next_offset}. */
export function listVerdicts({ sessionId, limit = 1000, offset = 0 } = {}) {
  const params = new URLSearchParams({ session_id: sessionId, limit: String(limit), offset: String(offset) });
  return api(`/v1/verdicts?${params}`);
}

/** GET /v1/yield for a session: reviewed, accepted, rejected, yield with its interval, the curve. */
export const getYield = (sessionId) => api(`/v1/yield?${new URLSearchParams({ session_id: sessionId })}`);

// -- scenarios, models and evaluations (issue 9) ----------------------------------------------------

/** GET /v1/scenarios: [{name, description, metric, gate, members, with_ground_truth, lock, reason}]. */
export const listScenarios = () => api("/v1/scenarios");
/** GET /v1/models: the models with imported predictions. */
export const listModels = () => api("/v1/models");
/** POST /v1/evaluations: {model, baseline?, scenarios?} -> an Evaluation, or with a baseline a GateReport. */
export const evaluate = (body) => api("/v1/evaluations", { method: "POST", json: body });
/** POST /v1/scenarios: {name, query?, ids?, metric?, gate?, description?, overwrite?} -> the saved scenario. */
export const saveScenario = (body) => api("/v1/scenarios", { method: "POST", json: body });
