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
  if (status === 413) {
    return new ApiError(`Upload too large: ${text}`, { status, kind: "invalid", detail });
  }
  return new ApiError(`The service answered ${status} ${res.statusText}${text ? `: ${text}` : ""}`,
    { status, kind: "error", detail });
}

/**
 * Call the API. `json` sends a JSON body, `form` a FormData body.
 * @returns {Promise<any>} the parsed JSON (or text) body
 */
export async function api(path, { method = "GET", json, form, signal } = {}) {
  const init = { method, signal, headers: { accept: "application/json" } };
  if (json !== undefined) {
    init.headers["content-type"] = "application/json";
    init.body = JSON.stringify(json);
  } else if (form !== undefined) {
    init.body = form;
  }
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
  if (!res.ok) throw errorFrom(res, body);
  return body;
}

/** URL of an indexed image (a JPEG thumbnail when `size` is given), relative to this page's origin. */
export function imageUrl(imageId, size) {
  const path = imageId.split("/").map(encodeURIComponent).join("/");
  return `/v1/images/${path}${size ? `?size=${size}` : ""}`;
}

export function exportUrl(batchId, format) {
  return `/v1/batches/${encodeURIComponent(batchId)}/export?format=${format}`;
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
