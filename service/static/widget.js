/*! Related-content widget. Embed with one tag:
 *   <script src="https://related.example.org/widget.js" data-publication="ID" data-k="6"></script>
 * Options (data-*): publication (required), k (1-12, default 6), api (service base URL, default: this
 * script's origin), language-policy (any|same|prefer), target (CSS selector of the element to fill;
 * default: a new element right after the script), styles ("none" to skip the default stylesheet,
 * the service's /related.css),
 * locale (en|fr|ar; default: the host page's <html lang>, else en), heading (its text; default: the
 * locale's "Related content"), heading-level (2-6, default 2), thumbnails ("true": each item's image).
 * The words come from the service's /static/locales.json (the server-rendered fragment's too).
 * CSS hooks: .rce-related, .rce-related__heading, .rce-related__list, .rce-item, .rce-item__title,
 * .rce-item__meta, .rce-item__type, .rce-item__score, .rce-item__snippet, .rce-item__versions, .rce-lang,
 * .rce-related--empty, .rce-related--busy (while loading; aria-busy is set too).
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
  var locales = { en: 1, fr: 1, ar: 1 };
  var asked = (data.locale || document.documentElement.lang || "en").toLowerCase().split(/[-_]/)[0];
  var locale = locales[asked] ? asked : "en";
  var level = Math.max(2, Math.min(6, parseInt(data.headingLevel || "2", 10) || 2));
  // English until the service's strings arrive (and if they never do).
  var t = { heading: "Related content", also_in: "Also in:", empty: "No related content yet.",
    unavailable: "Related content is unavailable right now.", loading: "Loading related content…",
    similarity: "Similarity", languages: {}, types: { "policy-paper": "Policy paper",
    "policy-brief": "Policy brief", "op-ed": "Op-ed", interview: "Interview", podcast: "Podcast", video: "Video" } };

  var root = data.target ? document.querySelector(data.target) : null;
  if (!root) {
    root = document.createElement("section");
    script.parentNode.insertBefore(root, script.nextSibling);
  }
  root.classList.add("rce-related");
  root.setAttribute("lang", locale);
  root.setAttribute("dir", rtl[locale] ? "rtl" : "ltr");

  // The default look is one stylesheet, shared with the server-rendered fragment (/related.css).
  if (data.styles !== "none" && !document.querySelector("link[data-rce]")) {
    var style = document.createElement("link");
    style.rel = "stylesheet";
    style.href = api + "/related.css";
    style.setAttribute("data-rce", "");
    document.head.appendChild(style);
  }

  function node(tag, className, text) {
    var n = document.createElement(tag);
    if (className) n.className = className;
    if (text) n.textContent = text;
    return n;
  }

  // The block is a region named by its heading (as the server-rendered fragment is), one id per widget.
  var headingId = "rce-widget-heading-" + (window.__rceWidgets = (window.__rceWidgets || 0) + 1);
  root.setAttribute("aria-labelledby", headingId);

  function heading() {
    var h = node("h" + level, "rce-related__heading", data.heading || t.heading);
    h.id = headingId;
    return h;
  }

  function empty(message) {
    root.classList.add("rce-related--empty");
    root.classList.remove("rce-related--busy");
    root.removeAttribute("aria-busy");
    root.replaceChildren(heading(), node("p", "rce-related__message", message));
  }

  function titleOf(item) {
    if (item.title) return item.title;
    var text = item.snippet || item.id;
    return text.length > 90 ? text.slice(0, 90).replace(/\s+\S*$/, "") + " …" : text;
  }

  function render(result) {
    if (!result.items || !result.items.length) return empty(t.empty);
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
      // The block's own words are in the reader's language and direction, whatever the item's.
      var meta = node("div", "rce-item__meta");
      meta.setAttribute("lang", locale);
      meta.setAttribute("dir", rtl[locale] ? "rtl" : "ltr");
      meta.appendChild(node("span", "rce-lang", item.language || ""));
      if (item.type) meta.appendChild(node("span", "rce-item__type", t.types[item.type] || item.type));
      if (item.published) {
        meta.appendChild(document.createTextNode(" · "));
        meta.appendChild(node("bdi", "rce-item__date", item.published));  // a date reads left to right in Arabic too
      }
      meta.appendChild(node("span", "rce-item__score",
        t.similarity + " " + Math.round(100 * Math.max(0, item.score)) + "\u00a0%"));
      if (data.thumbnails === "true" && item.image && /^https?:/i.test(item.image)) {
        var image = node("img", "rce-item__image");
        image.setAttribute("src", item.image);
        image.setAttribute("alt", titleOf(item));
        image.setAttribute("loading", "lazy");
        image.setAttribute("decoding", "async");
        li.appendChild(image);
      }
      li.appendChild(title);
      li.appendChild(meta);
      if (item.title && item.snippet) li.appendChild(node("p", "rce-item__snippet", item.snippet));
      if (item.translations && item.translations.length) {
        var versions = node("div", "rce-item__versions", t.also_in + " ");
        versions.setAttribute("lang", locale);
        versions.setAttribute("dir", rtl[locale] ? "rtl" : "ltr");
        item.translations.forEach(function (version) {
          var label = t.languages[version.language] || version.language || "?";
          versions.appendChild(node("span", "rce-lang", label));
        });
        li.appendChild(versions);
      }
      list.appendChild(li);
    });
    root.classList.remove("rce-related--empty", "rce-related--busy");
    root.removeAttribute("aria-busy");
    root.replaceChildren(heading(), list);
  }

  if (!data.publication) return empty(t.empty);
  root.classList.add("rce-related--busy");
  root.setAttribute("aria-busy", "true");
  root.replaceChildren(heading(), node("p", "rce-related__message", t.loading));
  var params = "k=" + k + "&collapse_translations=true" +
    (data.languagePolicy ? "&language_policy=" + encodeURIComponent(data.languagePolicy) : "");
  var controller = window.AbortController ? new AbortController() : null;
  var timer = controller ? setTimeout(function () { controller.abort(); }, 8000) : null;
  function json(url) {
    return fetch(url, { signal: controller ? controller.signal : undefined, headers: { Accept: "application/json" } })
      .then(function (response) { if (!response.ok) throw new Error("HTTP " + response.status); return response.json(); });
  }
  var words = json(api + "/static/locales.json").catch(function () { return null; });
  var related = json(api + "/v1/publications/" + encodeURIComponent(data.publication) + "/related?" + params);
  words.then(function (table) { if (table && table[locale]) t = table[locale]; })
    .then(function () { return related; })
    .then(render)
    .catch(function () { empty(t.unavailable); })
    .then(function () { if (timer) clearTimeout(timer); });
})();
