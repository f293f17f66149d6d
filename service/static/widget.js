/*! Related-content widget. Embed with one tag:
 *   <script src="https://related.example.org/widget.js" data-publication="ID" data-k="6"></script>
 * Options (data-*): publication (required), k (1-12, default 6), api (service base URL, default: this
 * script's origin), language-policy (any|same|prefer), target (CSS selector of the element to fill;
 * default: a new element right after the script), styles ("none" to skip the default styles).
 * CSS hooks: .rce-related, .rce-related__heading, .rce-related__list, .rce-item, .rce-item__title,
 * .rce-item__meta, .rce-item__snippet, .rce-item__versions, .rce-lang, .rce-related--empty.
 * The service must allow the embedding site's origin (RCE_CORS_ORIGINS). Catalog text is untrusted:
 * it is only ever set with textContent.
 */
(function () {
  "use strict";
  var script = document.currentScript;
  if (!script) return;
  var data = script.dataset;
  var api = (data.api || new URL(script.src, window.location.href).origin).replace(/\/+$/, "");
  var k = Math.max(1, Math.min(12, parseInt(data.k || "6", 10) || 6));
  var rtl = { ar: 1, ary: 1, arz: 1, fa: 1, he: 1, ur: 1 };
  var types = { "policy-paper": "Policy paper", "policy-brief": "Policy brief", "op-ed": "Op-ed",
    interview: "Interview", podcast: "Podcast", video: "Video" };

  var root = data.target ? document.querySelector(data.target) : null;
  if (!root) {
    root = document.createElement("section");
    script.parentNode.insertBefore(root, script.nextSibling);
  }
  root.classList.add("rce-related");
  root.setAttribute("aria-label", "Related content");

  if (data.styles !== "none" && !document.querySelector("style[data-rce]")) {
    var style = document.createElement("style");
    style.setAttribute("data-rce", "");
    style.textContent = ".rce-related{font:inherit;margin:1.5em 0}.rce-related__heading{text-transform:uppercase;" +
      "letter-spacing:.1em;font-size:.85em;border-top:2px solid currentColor;padding-top:.6em}" +
      ".rce-related__list{list-style:none;padding:0;margin:0}.rce-item{padding:.6em 0;border-bottom:1px solid #ddd}" +
      ".rce-item__title{font-weight:600}.rce-item__meta,.rce-item__versions{font-size:.8em;opacity:.75}" +
      ".rce-item__snippet{margin:.2em 0;font-size:.92em}.rce-lang{font-size:.75em;text-transform:uppercase;" +
      "border:1px solid currentColor;border-radius:3px;padding:0 .3em;margin-inline-end:.3em}" +
      ".rce-related--empty{opacity:.7;font-size:.9em}[dir=rtl].rce-item{text-align:right}";
    document.head.appendChild(style);
  }

  function node(tag, className, text) {
    var n = document.createElement(tag);
    if (className) n.className = className;
    if (text) n.textContent = text;
    return n;
  }

  function empty(message) {
    root.classList.add("rce-related--empty");
    root.replaceChildren(node("p", "rce-related__message", message));
  }

  function titleOf(item) {
    if (item.title) return item.title;
    var text = item.snippet || item.id;
    return text.length > 90 ? text.slice(0, 90).replace(/\s+\S*$/, "") + " …" : text;
  }

  function render(result) {
    if (!result.items || !result.items.length) return empty("No related content yet.");
    var list = node("ol", "rce-related__list");
    result.items.forEach(function (item) {
      var li = node("li", "rce-item");
      li.setAttribute("data-id", item.id);
      if (item.language) {
        li.setAttribute("lang", item.language);
        li.setAttribute("dir", rtl[item.language] ? "rtl" : "ltr");
      }
      var title = node(item.url ? "a" : "span", "rce-item__title", titleOf(item));
      if (item.url && /^https?:/i.test(item.url)) title.setAttribute("href", item.url);
      title.setAttribute("title", "similarity " + item.score.toFixed(2));
      var meta = node("div", "rce-item__meta");
      meta.setAttribute("dir", "ltr");
      meta.appendChild(node("span", "rce-lang", item.language || ""));
      meta.appendChild(document.createTextNode([types[item.type] || item.type, item.published].filter(Boolean).join(" · ")));
      li.appendChild(title);
      li.appendChild(meta);
      if (item.title && item.snippet) li.appendChild(node("p", "rce-item__snippet", item.snippet));
      if (item.translations && item.translations.length) {
        var versions = node("div", "rce-item__versions", "Also in: ");
        versions.setAttribute("dir", "ltr");
        item.translations.forEach(function (t) { versions.appendChild(node("span", "rce-lang", t.language || "?")); });
        li.appendChild(versions);
      }
      list.appendChild(li);
    });
    root.classList.remove("rce-related--empty");
    root.replaceChildren(node("h2", "rce-related__heading", "Related content"), list);
  }

  if (!data.publication) return empty("No related content (no publication given).");
  var params = "k=" + k + "&collapse_translations=true" +
    (data.languagePolicy ? "&language_policy=" + encodeURIComponent(data.languagePolicy) : "");
  var controller = window.AbortController ? new AbortController() : null;
  var timer = controller ? setTimeout(function () { controller.abort(); }, 8000) : null;
  fetch(api + "/publications/" + encodeURIComponent(data.publication) + "/related?" + params,
        { signal: controller ? controller.signal : undefined, headers: { Accept: "application/json" } })
    .then(function (response) { if (!response.ok) throw new Error("HTTP " + response.status); return response.json(); })
    .then(render)
    .catch(function () { empty("Related content is unavailable right now."); })
    .then(function () { if (timer) clearTimeout(timer); });
})();
