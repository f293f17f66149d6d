// The demo page: everything it shows comes from the public JSON API. Catalog text is untrusted, so it is
// only ever inserted with textContent / attributes, never as HTML.
"use strict";

const RTL = new Set(["ar", "ary", "arz", "fa", "he", "ur"]);
const TYPE_LABELS = {
  "policy-paper": "Policy paper", "policy-brief": "Policy brief", "op-ed": "Op-ed",
  "interview": "Interview", "podcast": "Podcast", "video": "Video",
};
const $ = (id) => document.getElementById(id);
let current = null;

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "text") node.textContent = value;
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children) if (child) node.append(child);
  return node;
}

function langAttrs(language) {
  return language ? { lang: language, dir: RTL.has(language) ? "rtl" : "ltr" } : {};
}

function displayTitle(item) {
  if (item.title) return item.title;
  const text = item.snippet || item.abstract || item.id;
  return text.length > 90 ? text.slice(0, 90).replace(/\s+\S*$/, "") + " …" : text;
}

function formatDate(iso) {
  if (!iso) return "";
  const date = new Date(iso + "T00:00:00Z");
  return date.toLocaleDateString("en-GB", { year: "numeric", month: "long", day: "numeric", timeZone: "UTC" });
}

function pageUrl(id) {
  const url = new URL(window.location.href);
  url.searchParams.set("id", id);
  return url.pathname + url.search;
}

async function getJson(url) {
  const response = await fetch(url, { headers: { Accept: "application/json" } });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(typeof body.detail === "string" ? body.detail : `HTTP ${response.status}`);
  return body;
}

async function search(event) {
  if (event) event.preventDefault();
  const params = new URLSearchParams({ limit: "50" });
  for (const name of ["query", "language", "type"]) {
    const value = $(name).value.trim();
    if (value) params.set(name, value);
  }
  const list = $("results");
  try {
    const page = await getJson(`/v1/publications?${params}`);
    list.replaceChildren(...page.items.map(resultItem));
    $("result-count").textContent = `${page.total} publication${page.total === 1 ? "" : "s"}`;
  } catch (error) {
    list.replaceChildren();
    $("result-count").textContent = `Search failed: ${error.message}`;
  }
}

function resultItem(item) {
  const link = el("a", { href: pageUrl(item.id), "data-id": item.id, ...langAttrs(item.language) },
    el("span", { text: displayTitle(item) }), el("br"),
    el("span", { class: "meta", dir: "ltr", text: [TYPE_LABELS[item.type] || item.type, formatDate(item.published),
      (item.language || "").toUpperCase()].filter(Boolean).join(" · ") }));
  link.addEventListener("click", (event) => { event.preventDefault(); openPublication(item.id, true); });
  return el("li", {}, link);
}

async function openPublication(id, push) {
  let record;
  try {
    record = await getJson(`/v1/publications/${encodeURIComponent(id)}`);
  } catch (error) {
    $("publication").hidden = false;
    $("pub-title").textContent = error.message;
    return;
  }
  current = record;
  if (push) history.pushState({ id }, "", pageUrl(id));
  for (const link of document.querySelectorAll("#results a")) {
    link.setAttribute("aria-current", link.dataset.id === id ? "true" : "false");
  }
  $("publication").hidden = false;
  $("pub-type").textContent = TYPE_LABELS[record.type] || record.type || "";
  Object.assign($("pub-title"), { textContent: displayTitle(record) });
  setLang($("pub-title"), record.language);
  $("pub-date").textContent = formatDate(record.published);
  $("pub-lang").textContent = record.language || "";
  $("pub-authors").textContent = record.authors.length ? `By ${record.authors.join(", ")}` : "";
  $("pub-abstract").textContent = record.abstract;
  setLang($("pub-abstract"), record.language);
  const versions = record.translations.map((t) => versionLink(t));
  $("pub-versions").replaceChildren(...(versions.length ? [el("span", { text: "Also in: " }), ...versions] : []));
  document.title = `${displayTitle(record)} · Related content`;
  await loadRelated();
}

function setLang(node, language) {
  for (const [key, value] of Object.entries(langAttrs(language))) node.setAttribute(key, value);
}

function versionLink(translation) {
  const link = el("a", { href: pageUrl(translation.id), class: "lang-badge", lang: translation.language,
    text: (translation.language || "?").toUpperCase(), title: "Read this version" });
  link.addEventListener("click", (event) => { event.preventDefault(); openPublication(translation.id, true); });
  return link;
}

async function loadRelated() {
  if (!current) return;
  const controls = new FormData($("controls"));
  const params = new URLSearchParams({
    k: "6", explain: "true", collapse_translations: "true",
    language_policy: controls.get("language_policy") || "any", diversity: $("diversity").value,
  });
  const status = $("related-status");
  const list = $("related-list");
  list.setAttribute("aria-busy", "true");
  try {
    const result = await getJson(`/v1/publications/${encodeURIComponent(current.id)}/related?${params}`);
    list.replaceChildren(...result.items.map(relatedItem));
    status.textContent = result.items.length ? "" : `Nothing related found: ${result.reason}`;
  } catch (error) {
    list.replaceChildren();
    status.textContent = `Related content is unavailable: ${error.message}`;
  } finally {
    list.setAttribute("aria-busy", "false");
  }
}

function relatedItem(item) {
  const title = el("a", { class: "title", href: pageUrl(item.id), text: displayTitle(item),
    title: `similarity ${item.score.toFixed(3)} · rank ${item.rank}` });
  title.addEventListener("click", (event) => { event.preventDefault(); openPublication(item.id, true); });
  const meta = el("p", { class: "meta", dir: "ltr" },
    el("span", { text: [TYPE_LABELS[item.type] || item.type, formatDate(item.published)].filter(Boolean).join(" · ") }),
    " ", el("span", { class: "lang-badge", text: item.language || "" }),
    item.authors.length ? el("span", { text: ` · ${item.authors.join(", ")}` }) : null);
  const snippet = item.title && item.snippet ? el("p", { class: "snippet", text: item.snippet }) : null;
  const versions = item.translations.length
    ? el("p", { class: "item-versions meta", dir: "ltr" }, el("span", { text: "Also in: " }),
      ...item.translations.map(versionLink))
    : null;
  return el("li", { class: "related-item", "data-id": item.id, "data-score": item.score, ...langAttrs(item.language) },
    title, meta, snippet, versions, why(item.explanation));
}

function why(explanation) {
  if (!explanation) return null;
  const parts = [];
  const add = (label, values) => { if (values.length) parts.push([label, values.join(", ")]); };
  if (explanation.pinned) parts.push(["Chosen by the editors", ""]);
  add("Shared topics", explanation.shared_topics);
  add("Same authors", explanation.shared_authors);
  add("Shared terms", explanation.shared_terms);
  if (!parts.length) parts.push(["Close in meaning", `similarity ${explanation.similarity.toFixed(2)}`]);
  const node = el("p", { class: "why", dir: "ltr" }, el("span", { text: "Why: " }));
  parts.forEach(([label, text], i) => node.append(el("b", { text: label }), text ? `: ${text}` : "", i < parts.length - 1 ? "; " : ""));
  return node;
}

function start() {
  $("search-form").addEventListener("submit", search);
  $("controls").addEventListener("change", loadRelated);
  $("diversity").addEventListener("input", () => { $("diversity-value").textContent = $("diversity").value; });
  window.addEventListener("popstate", () => {
    const id = new URLSearchParams(window.location.search).get("id");
    if (id) openPublication(id, false);
  });
  search();
  const id = new URLSearchParams(window.location.search).get("id");
  if (id) openPublication(id, false);
}

document.addEventListener("DOMContentLoaded", start);
