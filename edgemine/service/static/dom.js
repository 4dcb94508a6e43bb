// Small DOM helpers (no framework).
import { refreshUrl } from "./api.js";

/**
 * Create an element: h("div", {class: "x", onclick: fn, dataset: {id: 1}}, "text", child).
 * Attributes whose value is false/null/undefined are left out; `true` sets an empty attribute.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === false || value == null) continue;
    if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value);
    } else if (key === "dataset") {
      Object.assign(el.dataset, value);
    } else if (key === "class") {
      el.className = value;
    } else if (key in el && typeof value !== "string") {
      el[key] = value;
    } else {
      el.setAttribute(key, value === true ? "" : String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child == null || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : String(child));
  }
}

export const $ = (selector, root = document) => root.querySelector(selector);
export const $$ = (selector, root = document) => Array.from(root.querySelectorAll(selector));

/** Split pasted IDs: a JSON list, or separated by commas, semicolons, spaces or new lines. */
export function parseIds(text) {
  const trimmed = text.trim();
  if (!trimmed) return [];
  if (trimmed.startsWith("[")) {
    try {
      const parsed = JSON.parse(trimmed);
      if (Array.isArray(parsed)) return parsed.map((x) => String(x).trim()).filter(Boolean);
    } catch {
      // not JSON: fall through to plain splitting
    }
  }
  return trimmed.split(/[\s,;]+/).map((s) => s.replace(/^["'[]+|["'\]]+$/g, "")).filter(Boolean);
}

export const fmtScore = (x) => (x == null || Number.isNaN(x) ? "–" : Number(x).toFixed(3));
export const fmtInt = (n) => Number(n).toLocaleString("en-US");
export const plural = (n, word, many = `${word}s`) => `${fmtInt(n)} ${n === 1 ? word : many}`;

/** A placeholder shown when a thumbnail cannot be loaded (e.g. precomputed embeddings without files). */
export function onThumbError(event) {
  const img = event.currentTarget;
  // A read token that expired since the <img> was made: try once more with the current one.
  const fresh = img.dataset.retried ? null : refreshUrl(img.getAttribute("src") || "");
  if (fresh) { img.dataset.retried = "1"; img.src = fresh; return; }
  img.removeAttribute("src");
  img.classList.add("broken");
  img.closest(".thumb, .ex-thumb, .b-thumb, .nearest-thumb")?.classList.add("no-image");
}
