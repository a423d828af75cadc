// gar view · compare: two evaluations of the served collection, from /api/compare. No framework;
// every value from a folder is put into the page as text (createTextNode / setAttribute), never as HTML.
"use strict";

const app = document.getElementById("app");

function h(tag, attrs, ...children) {
  const svg = ["svg", "circle", "line", "text", "g", "rect", "title"].includes(tag);
  const el = svg ? document.createElementNS("http://www.w3.org/2000/svg", tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const pct = (x) => (x === null || x === undefined ? "–" : (100 * x).toFixed(1));
const signed = (x) => (x === null || x === undefined ? "–" : (x > 0 ? "+" : "") + (100 * x).toFixed(1));
const num = (x) => (x === null || x === undefined ? "–" : x.toFixed(3));
const enc = encodeURIComponent;

async function getJSON(url) {
  const r = await fetch(url);
  const body = await r.json().catch(() => ({ error: r.statusText }));
  if (!r.ok) throw new Error(body.error || r.statusText);
  return body;
}

function errorCard(message) {
  return h("div", { class: "card error", "data-testid": "error" }, h("strong", {}, "cannot compare: "), message);
}

async function picker(a, b) {
  let rows = [];
  try { rows = (await getJSON("api/evals")).rows || []; } catch (e) { /* a single evaluation: nothing to pick */ }
  const refs = rows.map((r) => r.ref);
  const select = (id, value) => h("select", { "data-testid": id },
    ...refs.map((ref) => h("option", { value: ref, selected: ref === value }, ref)));
  const sa = select("pick-a", a || refs[0]), sb = select("pick-b", b || refs[1] || refs[0]);
  const go = () => { location.search = "?a=" + enc(sa.value) + "&b=" + enc(sb.value); };
  return h("div", { class: "compare-pick" }, "A", sa, "B", sb, h("button", { onclick: go, "data-testid": "pick-go" }, "compare"),
    refs.length < 2 ? h("span", { class: "muted" }, "serve a folder holding two or more gar eval folders to compare them") : "");
}

function metricsTable(doc) {
  const rows = doc.metrics.map((m) => h("tr", { "data-metric": m.metric },
    h("th", {}, m.metric), h("td", { "data-col": "a" }, pct(m.a)), h("td", { "data-col": "b" }, pct(m.b)),
    h("td", { "data-col": "delta", class: m.delta > 0 ? "up" : m.delta < 0 ? "down" : "" }, signed(m.delta)),
    h("td", { "data-col": "ci" }, m.ci95 ? "[" + signed(m.ci95[0]) + ", " + signed(m.ci95[1]) + "]" : "–")));
  return h("table", { "data-testid": "compare-metrics" },
    h("thead", {}, h("tr", {}, h("th", {}, "metric"), h("th", {}, "A"), h("th", {}, "B"), h("th", {}, "B−A"), h("th", {}, "95% interval"))),
    h("tbody", {}, rows));
}

function diffHref(row) {
  return row.diff ? "./#/diff/" + enc(row.diff[0]) + "/" + enc(row.diff[1]) : null;
}

function scatter(doc) {
  const size = 320, pad = 30, left = 44, W = size + left + pad, H = size + 2 * pad;
  const x = (v) => left + v * size, y = (v) => pad + (1 - v) * size;
  const byId = new Map(doc.changed.map((r) => [r.id, r]));
  const dots = doc.points.map(([id, a, b]) => {
    const cls = b > a + 1e-9 ? "up" : b < a - 1e-9 ? "down" : "same";
    const row = byId.get(id);
    const dot = h("circle", { cx: x(a).toFixed(1), cy: y(b).toFixed(1), r: 3.5, class: cls, "data-sample": id,
      "data-a": a, "data-b": b }, h("title", {}, id + ": " + num(a) + " → " + num(b)));
    if (row && diffHref(row)) dot.addEventListener("click", () => { location.href = diffHref(row); });
    return dot;
  });
  return h("svg", { class: "scatter", width: W, height: H, viewBox: `0 0 ${W} ${H}`, "data-testid": "scatter" },
    h("rect", { x: left, y: pad, width: size, height: size, fill: "none", stroke: "#ccc" }),
    h("line", { class: "diag", x1: x(0), y1: y(0), x2: x(1), y2: y(1) }),
    h("text", { x: left + size / 2, y: H - 6, "text-anchor": "middle" }, "cIoU in A"),
    h("text", { x: 12, y: pad + size / 2, transform: `rotate(-90 12 ${pad + size / 2})`, "text-anchor": "middle" }, "cIoU in B"),
    ...[0, 0.5, 1].map((t) => h("text", { x: x(t), y: pad + size + 14, "text-anchor": "middle" }, String(t))),
    ...[0.5, 1].map((t) => h("text", { x: left - 4, y: y(t) + 4, "text-anchor": "end" }, String(t))),
    ...dots);
}

function groups(title, rows, testid) {
  return h("div", {}, h("h3", {}, title), h("table", { "data-testid": testid },
    h("thead", {}, h("tr", {}, ...["group", "n", "cIoU up", "down", "mean Δ"].map((c) => h("th", {}, c)))),
    h("tbody", {}, rows.map((g) => h("tr", { "data-group": g.group }, h("td", {}, g.group), h("td", {}, g.n),
      h("td", {}, g.up), h("td", {}, g.down), h("td", {}, num(g.mean_delta)))))));
}

function changedTable(doc) {
  const rows = doc.changed.map((r) => h("tr", { "data-sample": r.id },
    h("td", {}, diffHref(r) ? h("a", { href: diffHref(r), "data-testid": "diff-link" }, r.id) : r.id),
    h("td", {}, num(r.ciou_a)), h("td", {}, num(r.ciou_b)),
    h("td", { class: r.delta > 0 ? "up" : r.delta < 0 ? "down" : "" }, (r.delta > 0 ? "+" : "") + num(r.delta)),
    h("td", {}, r.gate_a + " → " + r.gate_b), h("td", {}, r.class)));
  return h("div", {}, h("h3", {}, `changed samples (${doc.n_changed}${doc.n_changed > doc.changed.length ? ", largest " + doc.changed.length + " shown" : ""})`),
    h("table", { "data-testid": "changed" },
      h("thead", {}, h("tr", {}, ...["sample", "cIoU A", "cIoU B", "Δ", "gate", "class"].map((c) => h("th", {}, c)))),
      h("tbody", {}, rows)));
}

async function main() {
  const params = new URLSearchParams(location.search);
  const a = params.get("a"), b = params.get("b");
  const pick = await picker(a, b);
  document.getElementById("where").textContent = a && b ? `${b} vs ${a}` : "";
  if (!a || !b) { app.replaceChildren(pick); return; }
  app.replaceChildren(pick, h("p", { class: "muted" }, "comparing…"));
  let doc;
  try {
    doc = await getJSON("api/compare?a=" + enc(a) + "&b=" + enc(b));
  } catch (e) {
    app.replaceChildren(pick, errorCard(e.message));
    return;
  }
  const mc = doc.mcnemar, s = doc.summary;
  app.replaceChildren(pick,
    h("h2", {}, `${doc.b} vs ${doc.a} · ${doc.dataset} · ${doc.n_paired} paired samples`),
    h("div", { class: "row" }, h("div", {}, metricsTable(doc),
      h("p", { "data-testid": "mcnemar" }, `McNemar on cIoU@0.5 hits: ${mc.b_only} only in B, ${mc.a_only} only in A, exact p = ${mc.p_value.toPrecision(3)}`),
      h("p", { "data-testid": "summary" }, `${s.up} up, ${s.down} down; across 0.5: ${s["up_0.5"]} up, ${s["down_0.5"]} down; gate changed on ${s.gate_changed}`),
      doc.n_only_a || doc.n_only_b ? h("p", { "data-testid": "only" }, `evaluated in only one: ${doc.n_only_a} only in A, ${doc.n_only_b} only in B`) : ""),
      scatter(doc)),
    h("div", { class: "row" }, groups("by gate decision (A → B)", doc.by_gate, "by-gate"), groups("by class", doc.by_class, "by-class")),
    changedTable(doc));
}

main();
