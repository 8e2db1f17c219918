// The alma-hooks viewer page. Plain JS, no dependencies, nothing from the network but this server.
// Every piece of data reaches the page through textContent or an SVG attribute, never parsed as markup.
"use strict";

(() => {
  const TOKEN = document.querySelector('meta[name="alma-token"]').content;
  const TYPE_LABEL = {heuristic: "heuristic", anti_pattern: "anti-pattern", preference: "preference",
                      knowledge: "knowledge", outcome: "outcome"};
  const state = {project: "", agent: "main", type: "", q: "", tab: "memories", selected: "", scopes: null};
  const $ = (sel) => document.querySelector(sel);

  // ------------------------------------------------------------ DOM helpers
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "class") e.className = v;
      else if (k === "text") e.textContent = String(v);
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children) {
      if (c === undefined || c === null) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }

  const SVG_NS = "http://www.w3.org/2000/svg";
  function svg(tag, attrs, ...children) {
    const e = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
    for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    return e;
  }

  const when = (t) => (t ? new Date(t * 1000).toLocaleString() : "");
  const day = (t) => new Date(t * 1000).toISOString().slice(0, 10);
  const pct = (x) => (x === null || x === undefined ? "n/a" : `${Math.round(x * 100)}%`);
  const short = (id) => String(id).slice(0, 10);

  function status(text, isError) {
    const s = $("#status");
    s.textContent = text || "";
    s.className = isError ? "error" : "";
  }

  // ------------------------------------------------------------ API
  async function call(path, options) {
    const res = await fetch(path, options);
    let data;
    try {
      data = await res.json();
    } catch (e) {
      data = {error: `unexpected answer (${res.status})`};
    }
    if (!res.ok) throw new Error(data.fix ? `${data.error} (${data.fix})` : data.error);
    return data;
  }

  function scopeArgs(extra) {
    return Object.assign({project: state.project, agent: state.agent}, extra || {});
  }

  function get(route, params) {
    const qs = new URLSearchParams(scopeArgs(params)).toString();
    return call(`/api/${route}?${qs}`, {headers: {"X-Alma-Token": TOKEN}});
  }

  function post(route, body) {
    return call(`/api/${route}`, {
      method: "POST",
      headers: {"Content-Type": "application/json", "X-Alma-Token": TOKEN},
      body: JSON.stringify(scopeArgs(body)),
    });
  }

  async function guarded(fn) {
    try {
      await fn();
    } catch (e) {
      status(e.message, true);
    }
  }

  // ------------------------------------------------------------ charts (inline SVG)
  function lineChart(points, opts) {
    // points: [{x: seconds, y: 0..1, label}]
    const w = opts.width || 320, h = opts.height || 120, pad = 28;
    const root = svg("svg", {viewBox: `0 0 ${w} ${h}`, width: w, height: h, class: "chart", role: "img"});
    root.append(svg("title", {}, opts.title || "chart"));
    const xs = points.map((p) => p.x);
    const x0 = Math.min(...xs), x1 = Math.max(...xs);
    const sx = (x) => (x1 === x0 ? (w + pad) / 2 : pad + ((x - x0) / (x1 - x0)) * (w - pad - 8));
    const sy = (y) => h - pad + 8 - y * (h - pad - 8) ;
    for (const g of [0, 0.5, 1]) {
      root.append(svg("line", {x1: pad, x2: w - 8, y1: sy(g), y2: sy(g), class: "grid"}));
      root.append(svg("text", {x: pad - 4, y: sy(g) + 4, class: "axis", "text-anchor": "end"}, pct(g)));
    }
    root.append(svg("text", {x: pad, y: h - 4, class: "axis"}, day(x0)));
    if (x1 !== x0) root.append(svg("text", {x: w - 8, y: h - 4, class: "axis", "text-anchor": "end"}, day(x1)));
    if (points.length > 1) {
      root.append(svg("polyline", {points: points.map((p) => `${sx(p.x)},${sy(p.y)}`).join(" "), class: "line"}));
    }
    for (const p of points) {
      const dot = svg("circle", {cx: sx(p.x), cy: sy(p.y), r: 3.5, class: "dot"});
      dot.append(svg("title", {}, p.label || `${when(p.x)}: ${pct(p.y)}`));
      root.append(dot);
    }
    return root;
  }

  function curveChart(curve) {
    const buckets = curve.buckets.slice(-26);
    const w = 520, h = 150, pad = 28, bw = Math.min(40, Math.max(4, (w - pad - 8) / Math.max(1, buckets.length)));
    const root = svg("svg", {viewBox: `0 0 ${w} ${h}`, width: w, height: h, class: "chart", role: "img"});
    root.append(svg("title", {}, `learning curve of ${curve.agent}`));
    const sy = (y) => h - 40 - y * (h - 56);
    for (const g of [0, 0.5, 1]) {
      root.append(svg("line", {x1: pad, x2: w - 8, y1: sy(g), y2: sy(g), class: "grid"}));
      root.append(svg("text", {x: pad - 4, y: sy(g) + 4, class: "axis", "text-anchor": "end"}, pct(g)));
    }
    buckets.forEach((b, i) => {
      const x = pad + i * bw;
      if (b.success_rate !== null) {
        const bar = svg("rect", {x: x + 1, y: sy(b.success_rate), width: bw - 2,
                                 height: Math.max(1, sy(0) - sy(b.success_rate)), class: "bar"});
        bar.append(svg("title", {}, `${day(b.start)}: ${b.successes} of ${b.outcomes} succeeded`));
        root.append(bar);
      }
      if (b.heuristics_learned) {
        root.append(svg("text", {x: x + bw / 2, y: h - 22, class: "learned", "text-anchor": "middle"},
                        `+${b.heuristics_learned}`));
      }
      if (b.heuristics_retired) {
        root.append(svg("text", {x: x + bw / 2, y: h - 8, class: "retired", "text-anchor": "middle"},
                        `\u2212${b.heuristics_retired}`));
      }
    });
    if (buckets.length) {
      root.append(svg("text", {x: pad, y: h - 30, class: "axis"}, day(buckets[0].start)));
    }
    return root;
  }

  function barChart(values, opts) {
    const w = opts.width || 520, h = opts.height || 90, pad = 6, left = 40;
    const max = Math.max(1, ...values.map((v) => v.value));
    const bw = Math.min(40, Math.max(3, (w - left - pad) / Math.max(1, values.length)));
    const root = svg("svg", {viewBox: `0 0 ${w} ${h}`, width: w, height: h, class: "chart", role: "img"});
    root.append(svg("title", {}, opts.title || "chart"));
    root.append(svg("text", {x: left - 4, y: pad + 8, class: "axis", "text-anchor": "end"}, `${max}`));
    root.append(svg("text", {x: left - 4, y: h - pad, class: "axis", "text-anchor": "end"}, "0"));
    root.append(svg("line", {x1: left, x2: w - pad, y1: h - pad, y2: h - pad, class: "grid"}));
    values.forEach((v, i) => {
      const bh = ((h - 2 * pad) * v.value) / max;
      const bar = svg("rect", {x: left + i * bw + 1, y: h - pad - bh, width: bw - 2, height: Math.max(1, bh),
                               class: "bar"});
      bar.append(svg("title", {}, v.label));
      root.append(bar);
    });
    return root;
  }

  // ------------------------------------------------------------ scopes
  async function loadScopes() {
    const data = await get("scopes", {});
    state.scopes = data;
    if (!state.project) state.project = data.current;
    const sel = $("#project");
    sel.replaceChildren(...data.projects.map((p) =>
      el("option", {value: p.project_id, selected: p.project_id === state.project}, p.project_id)));
    sel.disabled = data.projects.length < 2;
    fillAgents();
  }

  function projectEntry() {
    return state.scopes.projects.find((p) => p.project_id === state.project) || state.scopes.projects[0];
  }

  function fillAgents() {
    const agents = projectEntry().agents;
    if (!agents.some((a) => a.agent === state.agent)) state.agent = "main";
    $("#agent").replaceChildren(...agents.map((a) =>
      el("option", {value: a.agent, selected: a.agent === state.agent}, `${a.agent} (${a.memories})`)));
  }

  // ------------------------------------------------------------ memories
  async function loadMemories() {
    const params = {type: state.type, limit: 200};
    if (state.q) params.q = state.q;
    const data = await get("memories", params);
    const list = $("#memory-list");
    list.replaceChildren(...data.items.map(memoryItem));
    const what = state.q ? `${data.items.length} matches for \u201c${state.q}\u201d` : `${data.items.length} memories`;
    $("#list-summary").textContent = `${what} visible to ${data.agent} in ${data.project_id}`;
    if (state.selected && !data.items.some((m) => m.id === state.selected)) {
      state.selected = "";
      $("#detail").replaceChildren(el("p", {class: "muted", text: "Select a memory."}));
    }
  }

  function memoryItem(m) {
    const li = el("li", {class: `memory${m.pinned ? " pinned" : ""}${m.id === state.selected ? " selected" : ""}`,
                         "data-id": m.id, "data-type": m.type});
    const meta = [`confidence ${pct(m.confidence)}`, m.agent === "*" ? "every agent" : `agent ${m.agent}`];
    if (m.domain) meta.push(m.domain);
    if (m.score !== undefined) meta.push(`score ${m.score.toFixed(3)}`);
    li.append(
      el("div", {class: "row"},
         el("span", {class: `badge t-${m.type}`, text: TYPE_LABEL[m.type] || m.type}),
         m.pinned ? el("span", {class: "pin-mark", title: "pinned", text: "\u2605 pinned"}) : null,
         el("span", {class: "text", text: m.text})),
      el("div", {class: "meta", text: meta.join(" \u00b7 ")}),
      el("div", {class: "actions"},
         el("button", {type: "button", class: "pin-btn", text: m.pinned ? "Unpin" : "Pin",
                       onclick: (ev) => { ev.stopPropagation(); guarded(() => pin(m)); }}),
         el("button", {type: "button", class: "edit-btn", text: "Edit",
                       onclick: (ev) => { ev.stopPropagation(); guarded(() => showDetail(m.id, true)); }}),
         el("button", {type: "button", class: "forget-btn danger", text: "Forget",
                       onclick: (ev) => { ev.stopPropagation(); askForget(li, m); }})));
    li.addEventListener("click", () => guarded(() => showDetail(m.id, false)));
    return li;
  }

  async function pin(m) {
    await post("pin", {id: m.id, pinned: !m.pinned});
    status(`${m.pinned ? "Unpinned" : "Pinned"} ${short(m.id)}`);
    await refreshAfterChange(m.id);
  }

  function askForget(li, m) {
    if (li.querySelector(".forget-form")) return;
    const reason = el("input", {type: "text", class: "forget-reason", placeholder: "why (kept in the audit log)",
                                "aria-label": "reason"});
    const form = el("div", {class: "forget-form"}, reason,
      el("button", {type: "button", class: "forget-confirm danger", text: "Forget for good",
                    onclick: (ev) => { ev.stopPropagation(); guarded(() => forget(m, reason.value)); }}),
      el("button", {type: "button", class: "forget-cancel", text: "Cancel",
                    onclick: (ev) => { ev.stopPropagation(); form.remove(); }}));
    form.addEventListener("click", (ev) => ev.stopPropagation());
    li.append(form);
    reason.focus();
  }

  async function forget(m, reason) {
    await post("forget", {id: m.id, reason: reason});
    status(`Forgot ${TYPE_LABEL[m.type] || m.type} ${short(m.id)}`);
    if (state.selected === m.id) state.selected = "";
    await refreshAfterChange("");
  }

  async function refreshAfterChange(id) {
    await loadScopes();
    await loadMemories();
    if (id) await showDetail(id, false);
  }

  // ------------------------------------------------------------ detail
  async function showDetail(id, editing) {
    const data = await get("memory", {id});
    const m = data.memory;
    state.selected = m.id;
    for (const li of document.querySelectorAll("#memory-list .memory")) {
      li.classList.toggle("selected", li.dataset.id === m.id);
    }
    const parts = [el("h2", {}, el("span", {class: `badge t-${m.type}`, text: TYPE_LABEL[m.type] || m.type}),
                          " ", el("span", {class: "detail-text", text: m.text}))];
    const facts = el("dl", {class: "facts"});
    const add = (k, v) => facts.append(el("dt", {text: k}), el("dd", {text: v}));
    add("id", m.id);
    add("scope", `${m.project_id} / ${m.agent === "*" ? "every agent" : m.agent}${m.user_id ? " / " + m.user_id : ""}`);
    add("confidence", pct(m.confidence));
    add("version", `${m.version}, updated ${when(m.updated_at)}`);
    add("created", when(m.created_at));
    for (const [k, v] of Object.entries(m.fields)) {
      if (typeof v === "string" && v && !m.editable.includes(k)) add(k.replace(/_/g, " "), v);
      if (typeof v === "number" && !k.endsWith("_at") && k !== "timestamp" && k !== "last_validated") add(k.replace(/_/g, " "), String(v));
      if (typeof v === "boolean") add(k, v ? "yes" : "no");
    }
    parts.push(facts);
    parts.push(editing ? editForm(m) : el("button", {type: "button", class: "edit-open", text: "Edit text",
                                                    onclick: () => guarded(() => showDetail(m.id, true))}));
    if (data.confidence.length) {
      parts.push(el("h3", {text: "Confidence over time"}));
      parts.push(lineChart(data.confidence.map((p) => ({x: p.at, y: p.confidence})),
                           {title: `confidence of ${short(m.id)} over time`}));
    }
    if (m.type === "heuristic" || m.type === "anti_pattern") {
      parts.push(el("h3", {text: `Evidence: ${data.evidence.length} outcomes`}));
      parts.push(el("ul", {class: "evidence"}, ...data.evidence.map((o) => o.missing
        ? el("li", {class: "missing", text: `${short(o.id)}: no longer stored (forgotten)`})
        : el("li", {class: o.success ? "ok" : "fail"},
             el("span", {class: "mark", text: o.success ? "\u2713" : "\u2717"}), " ",
             el("span", {text: o.task_description}),
             o.strategy_used ? el("div", {class: "meta", text: `strategy: ${o.strategy_used}`}) : null,
             o.error ? el("div", {class: "meta", text: `error: ${o.error}`}) : null,
             el("div", {class: "meta", text: when(o.timestamp)})))));
    }
    parts.push(el("h3", {text: "History"}));
    parts.push(el("ul", {class: "history"}, ...data.audit.map((r) =>
      el("li", {text: `${when(r.at)} \u00b7 ${r.action} \u00b7 ${r.reason || "-"} \u00b7 ${r.actor || "?"}`}))));
    $("#detail").replaceChildren(...parts);
  }

  function editForm(m) {
    const inputs = {};
    const form = el("div", {class: "edit-form"});
    for (const name of m.editable) {
      const ta = el("textarea", {name, rows: 3, "aria-label": name});
      ta.value = m.fields[name] || "";
      inputs[name] = ta;
      form.append(el("label", {}, el("span", {text: name.replace(/_/g, " ")}), ta));
    }
    form.append(
      el("button", {type: "button", class: "edit-save", text: "Save",
                    onclick: () => guarded(async () => {
                      const fields = {};
                      for (const [k, ta] of Object.entries(inputs)) {
                        if (ta.value !== (m.fields[k] || "")) fields[k] = ta.value;
                      }
                      if (!Object.keys(fields).length) { await showDetail(m.id, false); return; }
                      await post("edit", {id: m.id, fields});
                      status(`Saved ${short(m.id)}`);
                      await refreshAfterChange(m.id);
                    })}),
      el("button", {type: "button", class: "edit-cancel", text: "Cancel",
                    onclick: () => guarded(() => showDetail(m.id, false))}));
    return form;
  }

  // ------------------------------------------------------------ slice history
  async function loadInjections() {
    const data = await get("injections", {limit: 100});
    const n = data.items.length;
    $("#injection-summary").textContent = n
      ? `${n} recent slices for ${data.agent}: ${data.tokens} tokens in all, ${Math.round(data.tokens / n)} on average`
      : `Nothing was injected for ${data.agent} yet.`;
    const chronological = data.items.slice().reverse();
    $("#injection-chart").replaceChildren(n ? barChart(chronological.map((r) => ({
      value: r.tokens, label: `${when(r.at)} ${r.event}: ${r.tokens} tokens, ${r.items.length} items`})),
      {title: "tokens per injected slice, oldest first"}) : el("span"),
      n ? el("p", {class: "meta", text: "tokens per injected slice, oldest first"}) : el("span"));
    $("#injection-list").replaceChildren(...data.items.map((r) => el("li", {class: "injection"},
      el("div", {class: "row"}, el("strong", {text: r.event}),
         el("span", {class: "meta", text: ` ${when(r.at)} \u00b7 session ${short(r.session_id)} \u00b7 ${r.tokens} tokens`})),
      el("ul", {}, ...r.items.map((it) => it.gone
        ? el("li", {class: "missing", text: `${short(it.id)} (v${it.version}): forgotten since`})
        : el("li", {},
             el("span", {class: `badge t-${it.type}`, text: TYPE_LABEL[it.type] || it.type}), " ",
             el("span", {text: it.text}),
             it.current_version !== it.version
               ? el("span", {class: "meta", text: ` (v${it.version}, now v${it.current_version})`}) : null))))));
  }

  // ------------------------------------------------------------ audit
  async function loadAudit() {
    const data = await get("audit", {limit: 300});
    $("#audit-table tbody").replaceChildren(...data.items.map((r) => el("tr", {class: `a-${r.action}`},
      el("td", {text: when(r.at)}), el("td", {text: r.action}), el("td", {text: TYPE_LABEL[r.type] || r.type}),
      el("td", {text: r.memory_id ? short(r.memory_id) : "", title: r.memory_id}),
      el("td", {text: r.agent}), el("td", {text: r.actor}), el("td", {text: r.reason}))));
  }

  // ------------------------------------------------------------ learning curves
  async function loadLearning() {
    const agents = projectEntry().agents.map((a) => a.agent);
    const blocks = [];
    for (const agent of agents) {
      const c = await call(`/api/curves?${new URLSearchParams({project: state.project, agent, every: "week"})}`,
                           {headers: {"X-Alma-Token": TOKEN}});
      if (!c.buckets.length) continue;
      const rate = c.outcomes ? ` (${pct(c.successes / c.outcomes)} overall)` : "";
      blocks.push(el("div", {class: "curve"},
        el("h3", {text: `${agent}: ${c.outcomes} outcomes${rate}, +${c.heuristics_learned} heuristics learned, ` +
                        `\u2212${c.heuristics_retired} retired`}),
        curveChart(c)));
    }
    $("#learning-charts").replaceChildren(...(blocks.length ? blocks
      : [el("p", {class: "muted", text: "No learning history yet: an outcome is recorded when a task ends."})]));
  }

  // ------------------------------------------------------------ wiring
  const LOADERS = {memories: loadMemories, injections: loadInjections, audit: loadAudit, learning: loadLearning};

  function showTab(tab) {
    if (tab !== state.tab) status("");
    state.tab = tab;
    for (const b of document.querySelectorAll("#tabs button")) b.classList.toggle("active", b.dataset.tab === tab);
    for (const name of Object.keys(LOADERS)) $(`#tab-${name}`).hidden = name !== tab;
    return guarded(LOADERS[tab]);
  }

  function init() {
    $("#search-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      state.q = $("#q").value.trim();
      status("");
      showTab("memories");
    });
    $("#clear-btn").addEventListener("click", () => { $("#q").value = ""; state.q = ""; showTab("memories"); });
    $("#project").addEventListener("change", (ev) => {
      state.project = ev.target.value;
      state.selected = "";
      fillAgents();
      showTab(state.tab);
    });
    $("#agent").addEventListener("change", (ev) => { state.agent = ev.target.value; state.selected = ""; showTab(state.tab); });
    for (const b of document.querySelectorAll("#tabs button")) b.addEventListener("click", () => showTab(b.dataset.tab));
    for (const b of document.querySelectorAll("#type-filter button")) {
      b.addEventListener("click", () => {
        state.type = b.dataset.type;
        for (const o of document.querySelectorAll("#type-filter button")) o.classList.toggle("active", o === b);
        showTab("memories");
      });
    }
    guarded(async () => {
      await loadScopes();
      await showTab("memories");
      document.body.dataset.ready = "1";
    });
  }

  init();
})();
