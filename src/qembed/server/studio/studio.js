// qembed studio: plain JavaScript, no build step, no library. It talks only to this server's
// documented endpoints (/v1/similarity, /v1/search, /v1/documents, /v1/cluster, /v1/dedup,
// /v1/classify, /v1/rerank, /v1/models, /health, /metrics). The API key, when the server asks for
// one, lives in this tab's sessionStorage and travels only in the Authorization header.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const CONFIG = (() => {
    try { return JSON.parse($("studio-config").textContent); } catch (e) { return {}; }
  })();
  const KEY_STORE = "qembed.studio.key";
  const THRESHOLD_STORE = "qembed.studio.threshold";
  const PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1",
                   "#ff9da7", "#9c755f", "#6b8e23", "#17becf", "#8c564b"];
  const OUTLIER = "#9aa0a6";

  // ------------------------------------------------------------------ small helpers
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : v);
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }
  function svg(tag, attrs) {
    const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    return node;
  }
  const fmt = (x, digits = 4) => (typeof x === "number" && isFinite(x) ? x.toFixed(digits) : "–");
  const plural = (n, one, many) => `${n} ${n === 1 ? one : (many || one + "s")}`;
  const lines = (text) => text.split(/\r?\n/).map((s) => s.trim()).filter((s) => s.length > 0);
  const colour = (c) => (c < 0 ? OUTLIER : c < PALETTE.length ? PALETTE[c] : `hsl(${(c * 137.508) % 360},60%,50%)`);

  class ApiError extends Error {
    constructor(status, message, code) { super(message); this.status = status; this.code = code; }
  }

  function apiKey() { try { return sessionStorage.getItem(KEY_STORE) || ""; } catch (e) { return ""; } }

  async function api(path, { method = "POST", body, signal, accept = "json" } = {}) {
    const headers = {};
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const key = apiKey();
    if (key) headers["Authorization"] = "Bearer " + key;
    let response;
    try {
      response = await fetch(path, { method, headers, signal, cache: "no-store",
                                     body: body === undefined ? undefined : JSON.stringify(body) });
    } catch (e) {
      if (e.name === "AbortError") throw e;
      throw new ApiError(0, `could not reach the server (${e.message}); is it still running?`);
    }
    const text = await response.text();
    if (!response.ok) {
      let message = text || response.statusText, code = null;
      try {
        const parsed = JSON.parse(text);
        if (parsed && parsed.error && parsed.error.message) { message = parsed.error.message; code = parsed.error.code; }
      } catch (e) { /* not JSON: keep the text */ }
      if (response.status === 401) keyNeeded();
      throw new ApiError(response.status, message, code);
    }
    if (accept === "text") return text;
    try { return JSON.parse(text); } catch (e) { throw new ApiError(response.status, "the server answered something that is not JSON"); }
  }

  function showError(id, err) {
    const box = $(id);
    if (!err) { box.hidden = true; box.textContent = ""; return; }
    const status = err.status ? `Error ${err.status}: ` : "Error: ";
    box.textContent = status + (err.message || String(err));
    box.hidden = false;
  }

  // Run `work` for a form: its submit button is busy meanwhile, errors land in `errorId`, and
  // nothing the user typed is touched when the request fails; the result box `resultsId` (when
  // given) is emptied then, so no earlier result stands under the error as if it were the answer.
  async function run(form, errorId, work, resultsId) {
    const button = form.querySelector("button[type=submit]");
    showError(errorId, null);
    if (button) { button.disabled = true; button.setAttribute("aria-busy", "true"); }
    try { await work(); }
    catch (e) {
      if (e.name !== "AbortError") { showError(errorId, e); if (resultsId) $(resultsId).replaceChildren(); }
    }
    finally { if (button) { button.disabled = false; button.removeAttribute("aria-busy"); } }
  }

  function download(name, text, type) {
    const url = URL.createObjectURL(new Blob([text], { type }));
    const a = el("a", { href: url, download: name });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  }

  // ------------------------------------------------------------------ files: txt, csv/tsv, jsonl/json
  function parseCSV(text, delimiter) {
    const rows = [];
    let row = [], field = "", quoted = false;
    for (let i = 0; i < text.length; i++) {
      const c = text[i];
      if (quoted) {
        if (c === '"') { if (text[i + 1] === '"') { field += '"'; i++; } else quoted = false; }
        else field += c;
      } else if (c === '"' && field === "") quoted = true;
      else if (c === delimiter) { row.push(field); field = ""; }
      else if (c === "\n" || c === "\r") {
        if (c === "\r" && text[i + 1] === "\n") i++;
        row.push(field); field = "";
        if (row.some((x) => x !== "")) rows.push(row);
        row = [];
      } else field += c;
    }
    row.push(field);
    if (row.some((x) => x !== "")) rows.push(row);
    return rows;
  }

  // A file's records as objects (txt: {text}); throws a readable error on a malformed file.
  async function readRecords(file) {
    const text = (await file.text()).replace(/^\ufeff/, "");
    const name = file.name.toLowerCase();
    if (name.endsWith(".jsonl") || name.endsWith(".json")) {
      const trimmed = text.trim();
      if (trimmed.startsWith("[")) {
        const data = JSON.parse(trimmed);
        return data.map((r) => (typeof r === "string" ? { text: r } : r));
      }
      return lines(text).map((line, i) => {
        try { const r = JSON.parse(line); return typeof r === "string" ? { text: r } : r; }
        catch (e) { throw new Error(`${file.name}, line ${i + 1}: not JSON (${e.message})`); }
      });
    }
    if (name.endsWith(".csv") || name.endsWith(".tsv")) {
      const first = text.split(/\r?\n/, 1)[0];
      const delimiter = name.endsWith(".tsv") || (first.includes("\t") && !first.includes(",")) ? "\t" : ",";
      const rows = parseCSV(text, delimiter);
      if (!rows.length) return [];
      const header = rows[0].map((h) => h.trim());
      return rows.slice(1).map((r) => Object.fromEntries(header.map((h, i) => [h || `column${i + 1}`, r[i] ?? ""])));
    }
    return lines(text).map((t) => ({ text: t }));
  }

  function textColumn(records) {
    const first = records.find((r) => r && typeof r === "object") || {};
    if ("text" in first) return "text";
    return Object.keys(first).find((k) => typeof first[k] === "string") || null;
  }

  // `field = value` lines → {field: value or [values]} (numbers, true/false/null understood)
  function parseScalar(raw) {
    const v = raw.trim();
    if (/^".*"$/.test(v) || /^'.*'$/.test(v)) return v.slice(1, -1);
    if (v === "true") return true;
    if (v === "false") return false;
    if (v === "null") return null;
    if (/^-?\d+(\.\d+)?([eE][-+]?\d+)?$/.test(v)) return Number(v);
    return v;
  }
  function parseFields(text, what) {
    const out = {};
    lines(text).forEach((line, i) => {
      const at = line.indexOf("=");
      if (at < 1) throw new Error(`${what}, line ${i + 1}: write it as field = value`);
      const key = line.slice(0, at).trim();
      const value = line.slice(at + 1);
      out[key] = value.includes("|") ? value.split("|").map(parseScalar) : parseScalar(value);
    });
    return out;
  }

  // ------------------------------------------------------------------ the API key
  const keyForm = $("key-form");
  function keyNeeded() {
    if (!CONFIG.auth) return;
    $("key-state").textContent = apiKey() ? "The server refused this key: enter the right one."
                                          : "This server needs an API key.";
    $("api-key").focus();
  }
  if (CONFIG.auth) {
    keyForm.hidden = false;
    $("key-state").textContent = apiKey() ? "Key set for this tab." : "This server needs an API key.";
    keyForm.addEventListener("submit", (e) => {
      e.preventDefault();
      const key = $("api-key").value.trim();
      try { if (key) sessionStorage.setItem(KEY_STORE, key); } catch (err) { /* storage off */ }
      $("api-key").value = "";
      $("key-state").textContent = key ? "Key set for this tab." : "Enter a key first.";
      refreshStatus();
    });
    $("key-forget").addEventListener("click", () => {
      try { sessionStorage.removeItem(KEY_STORE); } catch (err) { /* storage off */ }
      $("key-state").textContent = "Key forgotten.";
    });
  }
  if (!CONFIG.api_docs) document.querySelector('.foot a[href="/docs"]').hidden = true;

  // ------------------------------------------------------------------ tabs
  const tabs = Array.from(document.querySelectorAll('[role="tab"]'));
  const tabHooks = {};
  function selectTab(tab, focus) {
    for (const t of tabs) {
      const on = t === tab;
      t.setAttribute("aria-selected", String(on));
      t.tabIndex = on ? 0 : -1;
      $(t.getAttribute("aria-controls")).hidden = !on;
    }
    if (focus) tab.focus();
    const name = tab.id.replace("tab-", "");
    if (location.hash !== "#" + name) history.replaceState(null, "", "#" + name);
    for (const [n, hook] of Object.entries(tabHooks)) hook(n === name);
  }
  tabs.forEach((tab, i) => {
    tab.addEventListener("click", () => selectTab(tab, false));
    tab.addEventListener("keydown", (e) => {
      let j = null;
      if (e.key === "ArrowRight" || e.key === "ArrowDown") j = (i + 1) % tabs.length;
      else if (e.key === "ArrowLeft" || e.key === "ArrowUp") j = (i - 1 + tabs.length) % tabs.length;
      else if (e.key === "Home") j = 0;
      else if (e.key === "End") j = tabs.length - 1;
      if (j !== null) { e.preventDefault(); selectTab(tabs[j], true); }
    });
  });
  function markOff(tabId, why) {
    $(tabId).append(" ", el("span", { class: "off", text: `(${why})` }));
  }

  // ------------------------------------------------------------------ status line
  async function refreshStatus() {
    const box = $("server-status");
    try {
      const health = await fetch("/health", { cache: "no-store" }).then((r) => r.json());
      box.replaceChildren(el("span", { class: "dot" }),
                          `${health.model || "model"} · ${health.status === "ok" ? "ready" : health.status}`);
      box.classList.toggle("ok", health.status === "ok");
      if (health.status !== "ok") setTimeout(refreshStatus, 2000);
    } catch (e) {
      box.replaceChildren(el("span", { class: "dot" }), "server not reachable");
      box.classList.remove("ok");
      setTimeout(refreshStatus, 4000);
    }
  }

  // ================================================================== Compare
  const compareForm = $("compare-form");
  function compareMode() { return compareForm.querySelector('input[name="compare-mode"]:checked').value; }
  function showCompareMode() {
    const mode = compareMode();
    compareForm.querySelectorAll("[data-mode]").forEach((n) => { n.hidden = n.dataset.mode !== mode; });
  }
  compareForm.querySelectorAll('input[name="compare-mode"]').forEach((r) => r.addEventListener("change", showCompareMode));

  try {
    const saved = localStorage.getItem(THRESHOLD_STORE);
    if (saved !== null && saved !== "") $("compare-threshold").value = saved;
  } catch (e) { /* storage off */ }
  $("compare-threshold").addEventListener("change", () => {
    try { localStorage.setItem(THRESHOLD_STORE, $("compare-threshold").value); } catch (e) { /* off */ }
  });
  $("compare-threshold-file").addEventListener("change", async (e) => {
    const file = e.target.files[0];
    if (!file) return;
    showError("compare-error", null);
    try {
      const doc = JSON.parse(await file.text());
      if (!doc || typeof doc.threshold !== "number") throw new Error(`${file.name} has no numeric "threshold"`);
      $("compare-threshold").value = String(doc.threshold);
      try { localStorage.setItem(THRESHOLD_STORE, String(doc.threshold)); } catch (err) { /* off */ }
      $("compare-threshold-note").textContent =
        `Threshold ${fmt(doc.threshold)} from ${file.name}` + (doc.model ? ` (calibrated on ${doc.model})` : "") + ".";
    } catch (err) {
      showError("compare-error", err);
    }
  });
  $("compare-pairs-file").addEventListener("change", async (e) => {
    const file = e.target.files[0];
    if (!file) return;
    showError("compare-error", null);
    try {
      const records = await readRecords(file);
      const keys = Object.keys(records[0] || {});
      const left = ["sentence1", "text1", "left", "a"].find((k) => keys.includes(k)) || keys[0];
      const right = ["sentence2", "text2", "right", "b"].find((k) => keys.includes(k)) || keys[1];
      if (!left || !right) throw new Error(`${file.name}: need two columns of texts`);
      $("compare-pairs").value = records.map((r) => `${String(r[left] ?? "").replace(/\s+/g, " ")}\t${String(r[right] ?? "").replace(/\s+/g, " ")}`).join("\n");
    } catch (err) {
      showError("compare-error", err);
    }
  });

  function compareInstruction(body) {
    if (!$("compare-use-instruction").checked) body.instruction = "";
    else if ($("compare-instruction").value.trim()) body.instruction = $("compare-instruction").value.trim();
    return body;
  }

  compareForm.addEventListener("submit", (e) => {
    e.preventDefault();
    run(compareForm, "compare-error", async () => {  // the result box is emptied on an error
      const mode = compareMode();
      const out = $("compare-results");
      let pairs, texts;
      if (mode === "two") pairs = [[$("compare-a").value, $("compare-b").value]];
      else if (mode === "pairs") {
        pairs = lines($("compare-pairs").value).map((line, i) => {
          const parts = line.includes("\t") ? line.split("\t") : line.split("|||");
          if (parts.length !== 2) throw new Error(`pair line ${i + 1}: separate the two texts by a tab or |||`);
          return parts.map((p) => p.trim());
        });
      } else {
        texts = lines($("compare-matrix").value);
        if (texts.length > 20) throw new Error(`the matrix takes at most 20 texts, got ${texts.length}`);
        pairs = [];
        for (let i = 0; i < texts.length; i++) for (let j = i + 1; j < texts.length; j++) pairs.push([texts[i], texts[j]]);
      }
      const body = compareInstruction({ pairs });
      const raw = $("compare-threshold").value.trim();
      if (raw !== "") body.min_similarity = Number(raw);
      const res = await api("/v1/similarity", { body });
      const data = res.data;
      const verdict = (d) => ("same" in d ? el("span", { class: "verdict " + (d.same ? "same" : "different"),
                                                          text: d.same ? "same" : "different" }) : null);
      const thresholdNote = res.min_similarity !== null && res.min_similarity !== undefined
        ? el("p", { class: "hint", text: `Verdict: same at cosine ≥ ${fmt(res.min_similarity)}.` })
        : el("p", { class: "hint", text: "No threshold set: enter one (or load a calibrated threshold file) for a same/different verdict." });
      if (mode === "two") {
        const s = data[0].score;
        const bar = el("span");
        bar.style.width = `${Math.max(0, Math.min(1, s)) * 100}%`;
        out.replaceChildren(el("div", { class: "score-line" },
          el("span", { text: "Cosine similarity" }), el("span", { class: "score", id: "compare-score", text: fmt(s) }),
          el("span", { class: "bar", "aria-hidden": "true" }, bar), verdict(data[0])), thresholdNote);
      } else if (mode === "pairs") {
        const same = data.filter((d) => d.same).length;
        out.replaceChildren(
          el("p", { text: `${plural(data.length, "pair")} scored` + ("same" in (data[0] || {}) ? `; ${same} the same.` : ".") }),
          thresholdNote,
          el("div", { class: "table-wrap" }, el("table", {},
            el("thead", {}, el("tr", {}, el("th", { text: "#" }), el("th", { text: "First" }), el("th", { text: "Second" }),
                                 el("th", { text: "Cosine" }), el("th", { text: "Verdict" }))),
            el("tbody", {}, data.map((d) => el("tr", {}, el("td", { class: "num", text: d.index + 1 }),
              el("td", { text: pairs[d.index][0] }), el("td", { text: pairs[d.index][1] }),
              el("td", { class: "num", text: fmt(d.score) }), el("td", {}, verdict(d) || "–")))))));
      } else {
        const n = texts.length, m = Array.from({ length: n }, () => Array(n).fill(1));
        let k = 0;
        for (let i = 0; i < n; i++) for (let j = i + 1; j < n; j++) { m[i][j] = m[j][i] = data[k++].score; }
        const cell = (i, j) => {
          const td = el("td", { text: fmt(m[i][j], 3), title: `${texts[i]} ↔ ${texts[j]}` });
          const a = Math.max(0, Math.min(1, m[i][j]));
          td.style.background = `color-mix(in srgb, var(--accent) ${Math.round(a * 70)}%, transparent)`;
          return td;
        };
        out.replaceChildren(el("p", { text: `Cosine similarity of ${plural(n, "text")}, every pair.` }),
          el("div", { class: "table-wrap" }, el("table", { class: "matrix" },
            el("thead", {}, el("tr", {}, el("th", { text: "" }), texts.map((t, i) => el("th", { scope: "col", title: t, text: i + 1 })))),
            el("tbody", {}, texts.map((t, i) => el("tr", {}, el("th", { scope: "row", title: t, text: `${i + 1}. ${t.length > 40 ? t.slice(0, 40) + "…" : t}` }),
                                                       texts.map((_, j) => cell(i, j))))))));
      }
    }, "compare-results");
  });

  // ================================================================== Search
  if (!CONFIG.knowledge_base) {
    $("search-unavailable").hidden = false;
    $("search-body").hidden = true;
    markOff("tab-search", "no knowledge base");
  }
  if (!CONFIG.reranker) {
    $("search-rerank").disabled = true;
    $("search-rerank-note").hidden = false;
  }
  const searchForm = $("search-form");
  function noIndex(err) {
    if (err && err.code === "no_index") { $("search-unavailable").hidden = false; }
    throw err;
  }
  async function deleteDocument(id) {
    showError("doc-error", null);
    try {
      await api("/v1/documents/" + encodeURIComponent(id), { method: "DELETE" });
      $("doc-results").replaceChildren(el("p", { text: `Deleted the document ${id}.` }));
      document.querySelectorAll(`#search-results li[data-doc]`).forEach((li) => { if (li.dataset.doc === id) li.remove(); });
    } catch (e) { showError("doc-error", e); }
  }
  searchForm.addEventListener("submit", (e) => {
    e.preventDefault();
    run(searchForm, "search-error", async () => {
      const body = { query: $("search-query").value, mode: $("search-mode").value };
      const k = $("search-top-k").value.trim();
      if (k !== "") body.top_k = Number(k);
      if ($("search-rerank").checked) body.rerank = true;
      if ($("search-unique").checked) body.unique_documents = true;
      const filter = parseFields($("search-filter").value, "filters");
      if (Object.keys(filter).length) body.filter = filter;
      const res = await api("/v1/search", { body }).catch(noIndex);
      const out = $("search-results");
      if (!res.data.length) { out.replaceChildren(el("p", { text: "No results." })); return; }
      out.replaceChildren(
        el("p", { text: `${plural(res.data.length, "result")} (${res.mode}${body.rerank ? ", reranked" : ""}).` }),
        el("ol", { class: "hits" }, res.data.map((hit, i) => {
          const meta = hit.metadata || {};
          const doc = meta.doc_id ?? hit.id;
          const rest = Object.entries(meta).filter(([key]) => !["doc_id", "chunk", "title"].includes(key));
          return el("li", { "data-doc": doc },
            el("div", { class: "hit-head" },
              el("strong", { text: `${i + 1}.` }), el("span", { class: "score", text: fmt(hit.score) }),
              el("span", { class: "meta", text: `document ${doc}` + (hit.id !== doc ? ` · chunk ${hit.id}` : "") }),
              meta.title ? el("strong", { text: meta.title }) : null),
            el("p", { class: "hit-text", text: hit.text ?? "" }),
            rest.length ? el("p", { class: "meta", text: rest.map(([key, v]) => `${key}: ${JSON.stringify(v)}`).join(" · ") }) : null,
            el("button", { type: "button", onclick: () => deleteDocument(doc), text: "Delete document", "aria-label": `Delete document ${doc}` }));
        })));
    });
  });

  const docForm = $("doc-form");
  function addedMessage(res) {
    const n = res.documents ?? (res.ids || []).length;
    return `Added ${plural(n, "document")}` + (res.chunks !== undefined ? ` (${plural(res.chunks, "chunk")})` : "") +
      (res.ids && res.ids.length <= 10 ? `: ${res.ids.join(", ")}` : "") +
      (res.count !== undefined ? `. The knowledge base holds ${plural(res.count, "chunk")}.` : ".");
  }
  docForm.addEventListener("submit", (e) => {
    e.preventDefault();
    run(docForm, "doc-error", async () => {
      const doc = { text: $("doc-text").value };
      if ($("doc-id").value.trim()) doc.id = $("doc-id").value.trim();
      if ($("doc-title").value.trim()) doc.title = $("doc-title").value.trim();
      const metadata = parseFields($("doc-metadata").value, "metadata");
      if (Object.keys(metadata).length) doc.metadata = metadata;
      const res = await api("/v1/documents", { body: { documents: [doc] } }).catch(noIndex);
      $("doc-results").replaceChildren(el("p", { text: addedMessage(res) }));
      for (const id of ["doc-id", "doc-title", "doc-text", "doc-metadata"]) $(id).value = "";  // added: ready for the next
    });
  });
  const docFileForm = $("doc-file-form");
  docFileForm.addEventListener("submit", (e) => {
    e.preventDefault();
    run(docFileForm, "doc-error", async () => {
      const file = $("doc-file").files[0];
      if (!file) throw new Error("choose a file first");
      const records = await readRecords(file);
      const column = textColumn(records) || "text";
      const documents = records.map((r) => {
        const { id, title, metadata, ...rest } = r;
        const text = rest[column];
        delete rest[column];
        const doc = { text: text === undefined || text === null ? "" : String(text) };
        if (id !== undefined && id !== "") doc.id = String(id);
        if (title) doc.title = String(title);
        const meta = { ...(metadata && typeof metadata === "object" ? metadata : {}), ...rest };
        if (Object.keys(meta).length) doc.metadata = meta;
        return doc;
      });
      const res = await api("/v1/documents", { body: { documents } }).catch(noIndex);
      $("doc-results").replaceChildren(el("p", { text: addedMessage(res) }));
    });
  });
  const deleteForm = $("doc-delete-form");
  deleteForm.addEventListener("submit", (e) => {
    e.preventDefault();
    run(deleteForm, "doc-error", async () => {
      const id = $("doc-delete-id").value;
      if (!id.trim()) throw new Error("enter the id of the document to delete");
      await api("/v1/documents/" + encodeURIComponent(id), { method: "DELETE" }).catch(noIndex);
      $("doc-results").replaceChildren(el("p", { text: `Deleted the document ${id}.` }));
      $("doc-delete-id").value = "";
    });
  });

  // ================================================================== Explore
  const explore = { rows: [], clusters: [], selected: null, controller: null, timer: null };
  const exploreForm = $("explore-form");

  async function loadExploreFile(file) {
    showError("explore-error", null);
    try {
      const records = await readRecords(file);
      const column = textColumn(records);
      if (!column) throw new Error(`${file.name}: no column of texts found`);
      const texts = records.map((r) => String(r[column] ?? "").replace(/\s+/g, " ").trim()).filter(Boolean);
      $("explore-texts").value = texts.join("\n");
      $("explore-status").textContent = `Read ${plural(texts.length, "text")} from ${file.name}` +
        (column !== "text" ? ` (column “${column}”)` : "") + ".";
    } catch (err) { showError("explore-error", err); }
  }
  $("explore-file").addEventListener("change", (e) => { if (e.target.files[0]) loadExploreFile(e.target.files[0]); });
  const drop = $("explore-drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    if (e.dataTransfer.files[0]) loadExploreFile(e.dataTransfer.files[0]);
  });

  function exploreBusy(on, n) {
    $("explore-run").disabled = on;
    $("explore-cancel").disabled = !on;
    $("explore-progress").hidden = !on;
    clearInterval(explore.timer);
    if (on) {
      const start = performance.now();
      const tick = () => {
        const s = Math.round((performance.now() - start) / 1000);
        $("explore-status").textContent = `Embedding and clustering ${plural(n, "text")}… ${s} s`;
      };
      tick();
      explore.timer = setInterval(tick, 500);
    }
  }
  $("explore-cancel").addEventListener("click", () => {
    if (explore.controller) explore.controller.abort();
  });

  exploreForm.addEventListener("submit", async (e) => {
    e.preventDefault();
    showError("explore-error", null);
    const texts = lines($("explore-texts").value);
    const body = { input: texts, method: $("explore-method").value, projection: "pca" };
    const k = $("explore-k").value.trim();
    if (body.method === "kmeans" && k !== "") body.clusters = Number(k);
    const minSize = $("explore-min-size").value.trim();
    if (body.method === "hdbscan" && minSize !== "") body.min_cluster_size = Number(minSize);
    const kw = $("explore-keywords").value.trim();
    if (kw !== "") body.top_keywords = Number(kw);
    explore.controller = new AbortController();
    exploreBusy(true, texts.length);
    try {
      const res = await api("/v1/cluster", { body, signal: explore.controller.signal });
      exploreBusy(false);
      showTopics(res);
    } catch (err) {
      exploreBusy(false);
      if (err.name === "AbortError") $("explore-status").textContent = "Cancelled: the page stopped waiting for this job.";
      else { $("explore-status").textContent = ""; showError("explore-error", err); }
    } finally {
      explore.controller = null;
    }
  });

  function showTopics(res) {
    explore.rows = res.data;
    explore.clusters = res.clusters.slice();
    explore.selected = null;
    const outliers = res.n_outliers || 0;
    if (outliers && !explore.clusters.some((c) => c.cluster === -1)) {
      explore.clusters.push({ cluster: -1, label: "outliers", keywords: [], size: outliers, examples: [] });
    }
    $("explore-status").textContent = "";
    $("explore-results").replaceChildren(el("p", {
      text: `Found ${plural(res.n_clusters, "topic")} in ${plural(res.data.length, "text")}` +
        (outliers ? `, ${plural(outliers, "outlier")}` : "") + ` (${res.method}).` }));
    const list = $("explore-topics");
    list.replaceChildren(...explore.clusters.map((c) => {
      const swatch = el("span", { class: "swatch", "aria-hidden": "true" });
      swatch.style.background = colour(c.cluster);
      return el("li", {}, el("button", { type: "button", "aria-pressed": "false", "data-cluster": c.cluster,
                                          onclick: () => selectTopic(c.cluster) },
        el("span", {}, swatch, el("strong", { class: "topic-label", text: c.cluster < 0 ? "Outliers" : c.label }),
           ` · ${plural(c.size, "text")}`),
        c.keywords && c.keywords.length ? el("span", { class: "kw", text: c.keywords.join(", ") }) : null));
    }));
    $("explore-projection").textContent = res.projection ? `(${res.projection.toUpperCase()} of the embeddings)` : "";
    drawMap();
    $("explore-members-box").hidden = true;
    $("explore-view").hidden = false;
  }

  function drawMap() {
    const map = $("explore-map");
    const W = 640, H = 420, P = 18;
    const rows = explore.rows.filter((r) => typeof r.x === "number");
    map.replaceChildren();
    if (!rows.length) return;
    const xs = rows.map((r) => r.x), ys = rows.map((r) => r.y);
    const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
    const sx = (x) => P + ((x - x0) / (x1 - x0 || 1)) * (W - 2 * P);
    const sy = (y) => H - P - ((y - y0) / (y1 - y0 || 1)) * (H - 2 * P);
    const r = rows.length <= 300 ? 5 : rows.length <= 2000 ? 3.5 : 2.2;
    const ordered = rows.slice().sort((a, b) => (a.cluster >= 0) - (b.cluster >= 0));
    for (const row of ordered) {
      map.append(svg("circle", { cx: sx(row.x).toFixed(1), cy: sy(row.y).toFixed(1), r, fill: colour(row.cluster),
                                 "data-i": row.index, "data-cluster": row.cluster }));
    }
  }

  const tip = $("explore-tip");
  $("explore-map").addEventListener("mouseover", (e) => {
    const c = e.target.closest("circle");
    if (!c) return;
    const row = explore.rows[Number(c.dataset.i)];
    if (!row) return;
    tip.textContent = `${row.text} — ${row.cluster < 0 ? "outlier" : row.label}`;
    tip.hidden = false;
    const box = $("explore-map-box").getBoundingClientRect(), at = c.getBoundingClientRect();
    const left = Math.min(at.left - box.left + 10, box.width - tip.offsetWidth - 4);
    tip.style.left = `${Math.max(4, left)}px`;
    tip.style.top = `${Math.max(4, at.top - box.top - tip.offsetHeight - 6)}px`;
    c.classList.add("hot");
  });
  $("explore-map").addEventListener("mouseout", (e) => {
    const c = e.target.closest("circle");
    if (c) c.classList.remove("hot");
    tip.hidden = true;
  });
  $("explore-map").addEventListener("click", (e) => {
    const c = e.target.closest("circle");
    if (c) selectTopic(Number(c.dataset.cluster));
  });

  function selectTopic(cluster) {
    explore.selected = explore.selected === cluster ? null : cluster;
    document.querySelectorAll("#explore-topics button").forEach((b) => {
      b.setAttribute("aria-pressed", String(Number(b.dataset.cluster) === explore.selected));
    });
    document.querySelectorAll("#explore-map circle").forEach((c) => {
      c.classList.toggle("dim", explore.selected !== null && Number(c.dataset.cluster) !== explore.selected);
    });
    const box = $("explore-members-box");
    if (explore.selected === null) { box.hidden = true; return; }
    const info = explore.clusters.find((c) => c.cluster === explore.selected) || {};
    const members = explore.rows.filter((r) => r.cluster === explore.selected)
      .sort((a, b) => (a.distance ?? 0) - (b.distance ?? 0));
    $("explore-members-title").textContent =
      `${explore.selected < 0 ? "Outliers" : info.label} · ${plural(members.length, "text")}, closest to the centre first`;
    $("explore-members").replaceChildren(...members.map((r) => el("li", { text: r.text })));
    const summary = info.summary || [], central = info.examples || [];
    $("explore-summary").replaceChildren(...summary.map((t) => el("li", { text: t })));
    $("explore-summary-box").hidden = !summary.length;
    $("explore-central").replaceChildren(...central.map((t) => el("li", { text: t })));
    $("explore-central-box").hidden = !central.length;
    box.hidden = false;
  }

  // ------------------------------------------------------------------ the saved topic model
  if (CONFIG.topic_model) $("saved-topics").hidden = false;
  function topicsTable(rows, columns) {
    return el("div", { class: "table-wrap" }, el("table", {},
      el("thead", {}, el("tr", {}, columns.map(([h]) => el("th", { text: h })))),
      el("tbody", {}, rows.map((r) => el("tr", {}, columns.map(([, f, cls]) => el("td", { class: cls || null, text: f(r) })))))));
  }
  async function savedAction(button, work) {
    showError("saved-error", null);
    button.disabled = true;
    try { await work(); }
    catch (e) { showError("saved-error", e); }
    finally { button.disabled = false; }
  }
  const savedTopicColumns = [["Topic", (t) => t.topic], ["Label", (t) => t.label], ["Size", (t) => t.size, "num"],
                             ["Keywords", (t) => (t.keywords || []).join(", ")],
                             ["Summary", (t) => (t.summary || t.representatives || []).slice(0, 2).join(" · ")]];
  function showSavedTopics(res, note) {
    $("saved-results").replaceChildren(
      el("p", { text: note || `The saved topic model: ${plural(res.data.length, "topic")}` +
        (res.revision !== undefined ? `, revision ${res.revision}` : "") + (res.n_texts ? `, fitted on ${plural(res.n_texts, "text")}` : "") + "." }),
      topicsTable(res.data, savedTopicColumns));
  }
  $("saved-show").addEventListener("click", (e) => savedAction(e.currentTarget, async () => {
    showSavedTopics(await api("/v1/topics", { method: "GET" }));
  }));
  $("saved-assign").addEventListener("click", (e) => savedAction(e.currentTarget, async () => {
    const texts = lines($("explore-texts").value);
    const res = await api("/v1/topics/assign", { body: { input: texts } });
    $("saved-results").replaceChildren(
      el("p", { text: `${plural(res.data.length, "text")} placed in the saved topics; ${plural(res.n_outliers || 0, "outlier")} (no topic fits).` }),
      topicsTable(res.data, [["Text", (r) => r.text], ["Topic", (r) => (r.outlier ? "outlier" : r.topic)],
                             ["Label", (r) => (r.outlier ? `(nearest: ${r.label ?? r.nearest})` : r.label)],
                             ["Distance", (r) => fmt(r.distance, 3), "num"]]));
  }));
  $("saved-fit").addEventListener("click", (e) => savedAction(e.currentTarget, async () => {
    const body = { input: lines($("explore-texts").value), method: $("explore-method").value };
    const k = $("explore-k").value.trim();
    if (body.method === "kmeans" && k !== "") body.clusters = Number(k);
    const minSize = $("explore-min-size").value.trim();
    if (body.method === "hdbscan" && minSize !== "") body.min_cluster_size = Number(minSize);
    if ($("saved-replace").checked) body.replace = true;
    let res;
    try { res = await api("/v1/topics/fit", { body }); }
    catch (err) {
      if (err.code === "topic_model_exists") {  // the API's message, then what to do on this page
        err.message += " — tick “Replace the saved one” and save again to replace it.";
        $("saved-replace").focus();
      }
      throw err;
    }
    showSavedTopics(res, `Saved: the server's topic model now has ${plural(res.data.length, "topic")}.`);
  }));

  function csvCell(v) {
    const s = v === null || v === undefined ? "" : String(v);
    return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
  }
  const exportRows = () => explore.rows.map((r) => ({ index: r.index, text: r.text, cluster: r.cluster, label: r.label,
                                                       distance: r.distance }));
  $("explore-csv").addEventListener("click", () => {
    const cols = ["index", "text", "cluster", "label", "distance"];
    download("topics.csv", [cols.join(","), ...exportRows().map((r) => cols.map((c) => csvCell(r[c])).join(","))].join("\n") + "\n",
             "text/csv;charset=utf-8");
  });
  $("explore-jsonl").addEventListener("click", () => {
    download("topics.jsonl", exportRows().map((r) => JSON.stringify(r)).join("\n") + "\n", "application/x-ndjson");
  });

  // ================================================================== Dedup
  const dedupForm = $("dedup-form");
  dedupForm.addEventListener("submit", (e) => {
    e.preventDefault();
    run(dedupForm, "dedup-error", async () => {
      const texts = lines($("dedup-texts").value);
      const body = { input: texts, return_texts: true };
      const t = $("dedup-threshold").value.trim();
      if (t !== "") body.min_similarity = Number(t);
      const res = await api("/v1/dedup", { body });
      const out = $("dedup-results");
      out.replaceChildren(
        el("p", { text: `${plural(texts.length, "text")}: ${plural(res.n_groups, "group")} of near-duplicates at cosine ≥ ${fmt(res.min_similarity, 2)}; a deduplicated list keeps ${res.keep.length}.` }),
        res.data.length ? el("ol", { class: "groups" }, res.data.map((g) => el("li", {},
          el("strong", { text: texts[g.representative] }), el("span", { class: "meta", text: ` · ${g.size} texts` }),
          el("ul", {}, g.members.filter((m) => m.index !== g.representative).map((m) =>
            el("li", {}, `${m.text ?? texts[m.index]} `, el("span", { class: "meta", text: `(cosine ${fmt(m.score, 3)})` }))))))) : null,
        el("div", { class: "actions" }, el("button", { type: "button", text: "Download the deduplicated list",
          onclick: () => download("deduplicated.txt", res.keep.map((i) => texts[i]).join("\n") + "\n", "text/plain;charset=utf-8") })));
    });
  });

  // ================================================================== Classify
  const classifyForm = $("classify-form");
  classifyForm.addEventListener("submit", (e) => {
    e.preventDefault();
    run(classifyForm, "classify-error", async () => {
      const texts = lines($("classify-texts").value);
      const labels = lines($("classify-labels").value);
      const res = await api("/v1/classify", { body: { input: texts, labels, top_k: 3 } });
      $("classify-results").replaceChildren(el("div", { class: "table-wrap" }, el("table", { id: "classify-table" },
        el("thead", {}, el("tr", {}, ["Text", "Label", "Cosine", "Probability", "Next"].map((h) => el("th", { text: h })))),
        el("tbody", {}, res.data.map((d) => el("tr", {},
          el("td", { text: texts[d.index] }), el("td", {}, el("strong", { text: d.label })),
          el("td", { class: "num", text: fmt(d.score, 3) }),
          el("td", { class: "num", text: fmt((d.labels && d.labels[0] && d.labels[0].probability), 3) }),
          el("td", { class: "meta", text: (d.labels || []).slice(1).map((l) => `${l.label} ${fmt(l.probability, 2)}`).join(", ") })))))));
    });
  });

  // ================================================================== Rerank
  if (!CONFIG.reranker) {
    $("rerank-unavailable").hidden = false;
    $("rerank-form").hidden = true;
    markOff("tab-rerank", "no reranker");
  }
  const rerankForm = $("rerank-form");
  rerankForm.addEventListener("submit", (e) => {
    e.preventDefault();
    run(rerankForm, "rerank-error", async () => {
      const documents = lines($("rerank-docs").value);
      const body = { query: $("rerank-query").value, documents };
      const top = $("rerank-top").value.trim();
      if (top !== "") body.top_n = Number(top);
      const res = await api("/v1/rerank", { body });
      $("rerank-results").replaceChildren(el("ol", { class: "hits" }, res.results.map((r) => el("li", {},
        el("div", { class: "hit-head" }, el("span", { class: "score", text: fmt(r.relevance_score) }),
           el("span", { class: "meta", text: `passage ${r.index + 1}` })),
        el("p", { text: r.document ? r.document.text : documents[r.index] })))));
    });
  });

  // ================================================================== Server
  function parseMetrics(text) {
    const out = [];
    for (const line of text.split("\n")) {
      if (!line || line.startsWith("#")) continue;
      const m = line.match(/^([a-zA-Z_:][\w:]*)(\{(.*)\})?\s+(\S+)/);
      if (!m) continue;
      const labels = {};
      if (m[3]) for (const p of m[3].matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[p[1]] = p[2];
      out.push({ name: m[1], labels, value: Number(m[4]) });
    }
    return out;
  }
  const sum = (ms, name, pred) => ms.filter((m) => m.name === name && (!pred || pred(m.labels))).reduce((a, m) => a + m.value, 0);

  // The upper bound of the histogram bucket holding quantile q (buckets: [[le, cumulative count]],
  // sorted): "p95 ≤ 250 ms" says what the metric knows, without inventing a value inside the bucket.
  function quantile(buckets, q) {
    const total = buckets.length ? buckets[buckets.length - 1][1] : 0;
    if (!total) return NaN;
    const hit = buckets.find(([, count]) => count >= q * total);
    return hit ? hit[0] : NaN;
  }
  const ms = (s) => (isFinite(s) ? (s * 1000 < 10 ? (s * 1000).toFixed(1) : Math.round(s * 1000)) + " ms" : "–");
  const atMost = (s) => (s === Infinity ? "> 60 s" : isFinite(s) ? "≤ " + ms(s) : "–");

  // a model folder's last two parts (the whole path in the tooltip); a Hub id or URL as it is
  function shortPath(path) {
    const parts = String(path).split(/[\\/]/).filter(Boolean);
    return /^(\/|[A-Za-z]:\\)/.test(path) && parts.length > 2 ? "…/" + parts.slice(-2).join("/") : path;
  }

  const server = { timer: null, last: null };
  async function refreshServer() {
    showError("server-error", null);
    const [models, health, metricsText] = await Promise.all([
      api("/v1/models", { method: "GET" }).catch((e) => ({ error: e })),
      fetch("/health", { cache: "no-store" }).then((r) => r.json()).catch((e) => ({ status: "unreachable", error: e.message })),
      api("/metrics", { method: "GET", accept: "text" }).catch(() => ""),
    ]);
    if (models.error) showError("server-error", models.error);
    const cards = (models.data || []).map((m, i) => el("div", { class: "card" },
      el("h3", { text: m.id }),
      el("dl", {},
        el("dt", { text: "role" }), el("dd", { text: (m.kind || (i === 0 ? "embedding" : "reranker")) === "reranker" ? "reranker" : "embedding model" }),
        m.dim ? [el("dt", { text: "dimension" }), el("dd", { class: "model-dim", text: m.dim })] : null,
        m.max_model_len ? [el("dt", { text: "max input tokens" }), el("dd", { text: m.max_model_len })] : null,
        m.device ? [el("dt", { text: "device" }), el("dd", { text: m.device })] : null,
        m.dtype ? [el("dt", { text: "dtype" }), el("dd", { text: m.dtype })] : null,
        m.root ? [el("dt", { text: "from" }), el("dd", { title: m.root, text: shortPath(m.root) })] : null)));
    $("server-models").replaceChildren(...cards);

    const now = performance.now();
    const metrics = parseMetrics(metricsText || "");
    const inputs = sum(metrics, "qembed_inputs_embedded_total"), tokens = sum(metrics, "qembed_tokens_embedded_total");
    let rate = null;
    if (server.last && now > server.last.t) {
      const dt = (now - server.last.t) / 1000;
      rate = { inputs: (inputs - server.last.inputs) / dt, tokens: (tokens - server.last.tokens) / dt };
    }
    server.last = { t: now, inputs, tokens };
    const batches = sum(metrics, "qembed_batch_size_count");
    const engine = health.engine || {};
    const stats = [
      ["status", health.status === "ok" ? "ready" : health.status + (health.error ? ` (${health.error})` : "")],
      ["engine", engine.kind ? engine.kind + (engine.pid ? ` · pid ${engine.pid}` : "") + (engine.restarts ? ` · ${engine.restarts} restarts` : "") : "–"],
      health.reranker ? ["reranker", `${health.reranker.model} · ${health.reranker.status}`] : null,
      ["queue depth", sum(metrics, "qembed_queue_depth")],
      ["requests in progress", sum(metrics, "qembed_requests_in_progress")],
      ["throughput", rate ? `${rate.inputs.toFixed(1)} inputs/s · ${Math.round(rate.tokens)} tokens/s` : "measuring…"],
      ["embedded so far", `${inputs} inputs · ${tokens} tokens`],
      ["forward passes", batches ? `${batches} · ${(sum(metrics, "qembed_batch_size_sum") / batches).toFixed(1)} inputs each on average` : "0"],
      ["refused (429)", sum(metrics, "qembed_queue_rejected_total")],
      ["errors (5xx)", sum(metrics, "qembed_requests_total", (l) => /^5/.test(l.status))],
    ].filter(Boolean);
    $("server-stats").replaceChildren(...stats.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: String(v) })]));

    const endpoints = {};
    for (const m of metrics) {
      if (!m.name.startsWith("qembed_request_duration_seconds")) continue;
      const ep = m.labels.endpoint;
      if (!ep || !(ep.startsWith("/v1/") || ep === "/rerank" || ep === "/embeddings" || ep === "/tokenize")) continue;
      const e = (endpoints[ep] = endpoints[ep] || { buckets: [], sum: 0, count: 0 });
      if (m.name.endsWith("_bucket")) e.buckets.push([m.labels.le === "+Inf" ? Infinity : Number(m.labels.le), m.value]);
      else if (m.name.endsWith("_sum")) e.sum = m.value;
      else if (m.name.endsWith("_count")) e.count = m.value;
    }
    const rows = Object.entries(endpoints).filter(([, e]) => e.count > 0).sort((a, b) => b[1].count - a[1].count);
    $("server-latency").replaceChildren(rows.length ? el("div", { class: "table-wrap" }, el("table", {},
      el("thead", {}, el("tr", {}, ["Endpoint", "Requests", "Mean", "p50", "p95"].map((h) => el("th", { text: h })))),
      el("tbody", {}, rows.map(([ep, e]) => {
        e.buckets.sort((a, b) => a[0] - b[0]);
        return el("tr", {}, el("td", {}, el("code", { text: ep })), el("td", { class: "num", text: e.count }),
          el("td", { class: "num", text: ms(e.sum / e.count) }), el("td", { class: "num", text: atMost(quantile(e.buckets, 0.5)) }),
          el("td", { class: "num", text: atMost(quantile(e.buckets, 0.95)) }));
      })))) : el("p", { class: "hint", text: "No API requests yet." }));
    $("server-updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
  }
  function serverLoop(active) {
    clearTimeout(server.timer);
    if (!active) return;
    const tick = async () => {
      if (!document.hidden) await refreshServer().catch((e) => showError("server-error", e));
      if ($("server-live").checked && !$("panel-server").hidden) server.timer = setTimeout(tick, 2000);
    };
    tick();
  }
  tabHooks.server = serverLoop;
  $("server-live").addEventListener("change", () => serverLoop(!$("panel-server").hidden));
  $("server-refresh").addEventListener("click", () => refreshServer().catch((e) => showError("server-error", e)));

  // ------------------------------------------------------------------ start
  refreshStatus();
  const initial = tabs.find((t) => "#" + t.id.replace("tab-", "") === location.hash) || tabs[0];
  selectTab(initial, false);
  window.studio = { api, config: CONFIG, selectTab, el, plural, fmt, lines, explore };
})();
