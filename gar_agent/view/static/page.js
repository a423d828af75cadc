// gar view: one page over the viewer's JSON API, or over the documents embedded in an exported file.
// No framework and no external script: everything the page needs is in this file (works offline).
"use strict";

const EMBED = (() => {
  const el = document.getElementById("gar-data");
  const text = el ? el.textContent.trim() : "";
  return text ? JSON.parse(text) : null;
})();
const COLORS = ["#e6194b", "#3cb44b", "#0082c8", "#f58231", "#911eb4", "#46f0f0"];
const app = document.getElementById("app");
let INFO = null;

// ------------------------------------------------------------------ helpers

function h(tag, attrs, ...children) {
  const svg = ["svg", "rect", "text", "path", "line", "image", "g"].includes(tag);
  const el = svg ? document.createElementNS("http://www.w3.org/2000/svg", tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "html") el.innerHTML = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function fmt(x) {
  if (x === null || x === undefined) return "–";
  if (typeof x === "number") return Number.isInteger(x) ? String(x) : String(+x.toFixed(4));
  if (typeof x === "boolean") return x ? "true" : "false";
  if (Array.isArray(x)) return "[" + x.map(fmt).join(", ") + "]";
  if (typeof x === "object") return JSON.stringify(x);
  return String(x);
}
const pct = (x) => (x === null || x === undefined ? "–" : (100 * x).toFixed(1));
const boxText = (b) => (b ? "[" + b.join(", ") + "]" : "–");

async function api(path) {
  const r = await fetch(path);
  let body = null;
  try { body = await r.json(); } catch (e) { body = { error: r.status + " " + r.statusText }; }
  if (!r.ok) throw new Error(body.error || r.status + " " + r.statusText);
  return body;
}

function errorCard(message, title) {
  return h("div", { class: "card error-card", "data-testid": "error-card" }, h("strong", {}, title || "cannot show this"), ": ", message);
}

function table(headers, rows, attrs) {
  return h("table", attrs || {}, h("thead", {}, h("tr", {}, headers.map((x) => h("th", {}, x)))), h("tbody", {}, rows));
}

const enc = encodeURIComponent;
const runHref = (ref) => "#/run/" + enc(ref);
function mediaUrl(ref, kind) {
  if (EMBED) return EMBED.media[kind];
  return "api/media?ref=" + enc(ref) + "&kind=" + kind;
}

// ------------------------------------------------------------------ the frame with boxes

function frameView(doc, boxes, imgUrl) {
  const W = doc.image.width, H = doc.image.height;
  const svg = h("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, "data-testid": "frame", preserveAspectRatio: "xMinYMin meet" });
  if (imgUrl) svg.append(h("image", { href: imgUrl, x: 0, y: 0, width: W, height: H }));
  for (const b of boxes) {
    if (!b.box) continue;
    const [x1, y1, x2, y2] = b.box;
    const color = b.kind === "gt" ? "#ffd700" : COLORS[(b.source || 0) % COLORS.length];
    svg.append(h("rect", {
      class: "box " + b.kind, x: x1, y: y1, width: Math.max(1, x2 - x1), height: Math.max(1, y2 - y1),
      stroke: color, "data-kind": b.kind, "data-source": b.source === null ? "" : b.source, "data-box": b.box.join(","),
    }));
    if (b.label && (b.kind === "current" || b.kind === "final" || b.kind === "gt"))
      svg.append(h("text", { x: x1 + 3, y: Math.max(12, y1 - 3) }, b.label));
  }
  const legend = h("div", { class: "legend muted" },
    h("span", {}, "- - initial"), h("span", {}, "··· before refine"), h("span", {}, "━ at this step / final"),
    doc.gt ? h("span", {}, "yellow: ground truth") : null);
  return h("div", { class: "frame" }, svg, legend);
}

// ------------------------------------------------------------------ audio

function waveView(peaks, audioUrl) {
  const wrap = h("div", { class: "card", "data-testid": "audio" }, h("h3", {}, "Audio"));
  if (peaks) {
    const n = peaks.min.length, Hh = 80;
    let d = "";
    for (let i = 0; i < n; i++) d += `M${i},${(Hh / 2) * (1 - peaks.max[i])}V${(Hh / 2) * (1 - peaks.min[i]) + 0.5}`;
    const svg = h("svg", { class: "wave", viewBox: `0 0 ${n} ${Hh}`, preserveAspectRatio: "none", "data-testid": "waveform" },
      h("path", { d, stroke: "#4c6ef5", "stroke-width": 1 }));
    const cursor = h("line", { x1: 0, x2: 0, y1: 0, y2: Hh });
    svg.append(cursor);
    wrap.append(svg);
    const audio = h("audio", { controls: true, src: audioUrl, preload: "metadata" });
    audio.addEventListener("timeupdate", () => {
      const x = (audio.currentTime / (peaks.duration_s || audio.duration || 1)) * n;
      cursor.setAttribute("x1", x); cursor.setAttribute("x2", x);
    });
    svg.addEventListener("click", (ev) => {
      const r = svg.getBoundingClientRect();
      audio.currentTime = ((ev.clientX - r.left) / r.width) * (peaks.duration_s || audio.duration || 0);
    });
    wrap.append(audio, h("div", { class: "muted" }, `${fmt(peaks.duration_s)} s, 16 kHz mono`));
  } else {
    wrap.append(h("p", { class: "muted" }, "the audio file is not available (moved or changed since the run; record with --embed-media)"));
  }
  return wrap;
}

// ------------------------------------------------------------------ one step

function callsView(calls) {
  if (!calls.length) return null;
  return h("div", {}, h("h3", {}, `Model calls (${calls.length})`), calls.map((c, i) =>
    h("div", { class: "card call", "data-testid": "call" },
      h("div", {}, h("span", { class: "pill" }, c.stage), c.source === null ? "" : `source ${c.source} · `,
        `${c.template} · temperature ${fmt(c.temperature)} · top-p ${fmt(c.top_p)} · n ${c.n} · media ${c.media.join(", ") || "none"} · ${c.usage.input_tokens} in / ${c.usage.output_tokens} out tokens`),
      h("details", {}, h("summary", {}, "prompt"), h("pre", { "data-testid": "prompt" }, c.prompt)),
      h("details", { open: i === 0 }, h("summary", {}, `raw answers (${c.answers.length})`),
        h("ol", { start: 0 }, c.answers.map((a) => h("li", {}, h("pre", { "data-testid": "raw-answer" }, a))))),
      c.error ? errorCard(c.error, "the model raised") : null)));
}

function votesView(d) {
  if (!d.votes || !d.votes.length) return null;
  const fresh = new Set(d.new_votes || []);
  const rows = d.votes.map((v) => {
    const p = v.parsed;
    return h("tr", { class: v.error ? "err" : "", "data-vote": v.index },
      h("td", { class: "num" }, v.index, fresh.has(v.index) ? " •" : ""),
      h("td", { class: "num" }, p ? fmt(p.av_consistency) : "–"),
      h("td", {}, p ? fmt(p.keep) : "–"),
      h("td", {}, p ? p.role_tags.join(", ") : ""),
      h("td", {}, p ? p.anchor_votes.map((a) => `${a.anchor} ${fmt(a.score)}`).join(", ") : ""),
      h("td", {}, v.error || ""));
  });
  return h("div", {}, h("h3", {}, "Votes (• this pass)"),
    table(["#", "av_consistency", "keep", "role_tags", "anchor_votes", "dropped because"], rows, { "data-testid": "votes" }));
}

function analysisView(a) {
  if (!a) return null;
  return h("div", {}, h("h3", {}, "Aggregate"), table(["av_consistency", "keep", "role_tags", "anchor_votes", "votes parsed"], [
    h("tr", {}, h("td", { class: "num", "data-agg": "av_consistency" }, fmt(a.av_consistency)), h("td", { "data-agg": "keep" }, fmt(a.keep)),
      h("td", {}, a.role_tags.join(", ")), h("td", {}, a.anchor_votes.map((x) => `${x.anchor} ${fmt(x.score)}`).join(", ")),
      h("td", { class: "num" }, `${a.n_parsed} of ${a.n_votes}`)),
  ], { "data-testid": "aggregate" }));
}

function gateView(g) {
  if (!g) return null;
  const row = (name, value, rule, ok, thresholdName, threshold) => h("tr", {},
    h("td", {}, name), h("td", { class: "num", "data-gate": name, "data-value": JSON.stringify(value) }, fmt(value)),
    h("td", {}, rule, threshold === undefined ? "" : h("span", { "data-gate": thresholdName, "data-value": JSON.stringify(threshold) }, fmt(threshold))),
    h("td", {}, h("span", { class: "pill " + (ok ? "pass" : "fail") }, ok ? "pass" : "fail")));
  return h("div", {}, h("h3", {}, "Gate"), table(["value", "", "must be", ""], [
    row("keep", g.keep, "true", g.keep),
    row("av_consistency", g.av_consistency, "≥ tau_av ", g.av_consistency >= g.tau_av, "tau_av", g.tau_av),
    row("audio_confidence", g.audio_confidence, "≥ tau_audio ", g.audio_confidence >= g.tau_audio, "tau_audio", g.tau_audio),
  ], { "data-testid": "gate" }),
  h("p", {}, "decision: ", h("strong", { "data-gate": "decision" }, g.refine ? "refine" : "skip refinement"),
    g.reasons.length ? " — " + g.reasons.join("; ") : ""));
}

function refineView(r) {
  if (!r) return null;
  const p = r.parsed || {};
  const ops = p.ops ? Object.entries(p.ops).filter(([, v]) => v !== 0 && v !== null).map(([k, v]) => `${k} ${fmt(v)}`).join(", ") : "–";
  const rows = [
    ["previous box", boxText(r.previous_box)], ["proposed bbox (model frame)", p.bbox ? fmt(p.bbox) : "–"],
    ["changed", fmt(p.changed)], ["ops", ops], ["applied", r.applied], ["clamp ±px", fmt(r.max_delta)],
    ["clamped", fmt(r.clamped)], ["new box", boxText(r.box)], ["refined description", p.refined_description || "–"],
    ["error", r.error || "–"],
  ].map(([k, v]) => h("tr", {}, h("th", {}, k), h("td", { "data-refine": k }, v)));
  return h("div", {}, h("h3", {}, "Refinement"), h("table", { "data-testid": "refinement" }, h("tbody", {}, rows)));
}

function generateView(d) {
  const parsed = (title, list) => list.length ? h("div", {}, h("h3", {}, title), table(["#", "parsed", "error"],
    list.map((x, i) => h("tr", { class: x.error ? "err" : "" }, h("td", {}, i), h("td", {}, x.value ? fmt(x.value) : "–"), h("td", {}, x.error || ""))))) : null;
  return h("div", {}, parsed("Audio answer", d.audio), parsed("Box answer", d.boxes),
    h("p", { class: "muted" }, "pairing: ", d.pairing || "–"),
    d.sources.length ? h("div", {}, h("h3", {}, "Sources"), table(["source", "audio class", "confidence", "initial box", "description"],
      d.sources.map((s) => h("tr", {}, h("td", {}, s.index), h("td", {}, s.audio_class), h("td", { class: "num" }, fmt(s.audio_confidence)),
        h("td", { "data-initial": s.index }, boxText(s.initial_box)), h("td", {}, typeof s.description === "string" ? s.description : JSON.stringify(s.description)))))) : null,
    d.error ? errorCard(d.error, "generate") : null);
}

function stepView(step) {
  const d = step.detail;
  const head = h("h3", { "data-testid": "step-title" }, `step ${step.index} · ${step.node}`,
    step.source === null ? "" : ` · source ${step.source}`, step.pass ? ` · pass ${step.pass}` : "",
    ` · ${fmt(step.elapsed_s)} s`);
  let body;
  if (d.kind === "generate") body = generateView(d);
  else if (d.kind === "other") body = h("div", {}, h("h3", {}, "State written"), h("pre", {}, JSON.stringify(step.state, null, 1)));
  else body = h("div", {}, votesView(d), analysisView(d.kind === "analyze" || d.kind === "gate" || d.kind === "source" ? d.analysis : null),
    gateView(d.kind === "gate" || d.kind === "source" ? d.gate : null), refineView(d.kind === "refine" || d.kind === "source" ? d.refinement : null),
    d.error ? errorCard(d.error, "source error") : null);
  return h("div", { class: "card", "data-testid": "step" }, head, body, callsView(step.calls));
}

function finalView(doc) {
  const rows = doc.final.sources.map((s, i) => h("tr", {}, h("td", {}, i), h("td", {}, s.audio_class), h("td", { class: "num" }, fmt(s.audio_confidence)),
    h("td", {}, boxText(s.initial_box)), h("td", { "data-final": i }, boxText(s.box)),
    h("td", {}, s.gate ? (s.gate.refine ? "refine" : "skip") : "–"), h("td", {}, fmt(s.refined))));
  return h("div", { class: "card", "data-testid": "step" }, h("h3", { "data-testid": "step-title" }, "final"),
    doc.final.error ? errorCard(doc.final.error, "the run failed") : null,
    table(["source", "audio class", "confidence", "initial box", "final box", "gate", "refined"], rows, { "data-testid": "final" }),
    doc.gt ? h("p", {}, "ground truth: ", doc.gt.map(boxText).join(" ")) : null);
}

// ------------------------------------------------------------------ views

// The graph file the run recorded, as text (textContent: never markup, never run), and its diff to ours.
function graphSourceView(gs) {
  if (!gs) return null;
  const title = `graph source · recorded ${gs.name} · sha256 ${(gs.sha256 || "").slice(0, 16)}`;
  if (gs.source === null) return h("details", { class: "card", "data-testid": "graph-source" }, h("summary", {}, title), h("div", { class: "muted" }, gs.missing || "no source recorded"));
  const verdict = !gs.shipped ? "no shipped graph of this name"
    : gs.shipped.same ? `the same as the shipped ${gs.shipped.file}` : `differs from the shipped ${gs.shipped.file}`;
  const parts = [h("summary", {}, title, " · ", h("span", { "data-testid": "graph-source-verdict" }, verdict))];
  if (gs.diff) {
    const lines = gs.diff.split("\n").map((line) => h("span", { class: /^(\+\+\+|---) /.test(line) ? "head" : line.startsWith("+") ? "add" : line.startsWith("-") ? "del" : line.startsWith("@@") ? "hunk" : "" }, line + "\n"));
    parts.push(h("h4", {}, "diff: recorded → shipped"), h("pre", { class: "source diff", "data-testid": "graph-source-diff" }, lines),
      gs.diff_cut ? h("div", { class: "muted" }, "(diff cut)") : null);
  }
  parts.push(h("h4", {}, "recorded source (shown, never run)"), h("pre", { class: "source", "data-testid": "graph-source-text" }, gs.source),
    gs.source_cut ? h("div", { class: "muted" }, "(source cut)") : null);
  return h("details", { class: "card", "data-testid": "graph-source", open: gs.shipped && !gs.shipped.same ? true : null }, parts);
}

async function runView(ref) {
  const doc = EMBED ? EMBED.run : await api("api/run?ref=" + enc(ref));
  const steps = doc.steps;
  const finalStep = { index: "final", boxes: doc.final.boxes, graph_node: "__end__" };
  const s = doc.settings;
  const header = h("div", { class: "card" },
    h("h2", {}, "run ", h("span", { "data-testid": "run-id" }, doc.run_id)),
    doc.sample ? h("div", { "data-testid": "sample-scores" }, `evaluation sample ${doc.sample.id} · cIoU `,
      h("strong", { "data-testid": "sample-ciou" }, fmt(doc.sample.ciou)), ` · AP ${fmt(doc.sample.ap)}`) : null,
    h("div", {}, `${doc.created.replace("T", " ")} · graph ${doc.graph.name} · protocol ${doc.protocol} · K=${s.sources} N=${s.n_votes} ` +
      `tau_av=${s.tau_av} tau_audio=${s.tau_audio} · backend ${doc.backend || "–"} · ${doc.usage.calls ?? "–"} calls · ${fmt(doc.usage.wall_s)} s`),
    h("div", { class: "muted" }, `image ${doc.inputs.image ? doc.inputs.image.name : "–"} (${doc.image.width}×${doc.image.height}) · audio ${doc.inputs.audio ? doc.inputs.audio.name : "–"}`,
      doc.parent ? ` · ${doc.fork ? "fork" : "replay"} of ${doc.parent}` : "",
      doc.fork ? ` (${doc.fork.edits.join("; ")})` : ""),
    EMBED ? null : h("div", {}, h("a", { href: "api/run?ref=" + enc(ref), target: "_blank" }, "trace JSON")));
  const notices = doc.notices.map((n) => h("div", { class: "card notice" }, n));
  const failed = doc.final.error ? errorCard(doc.final.error, "the run failed") : null;
  const frameHolder = h("div", { class: "card" }, h("h3", {}, "Frame"));
  const stepHolder = h("div", {});
  const graphHolder = h("div", { class: "card", "data-testid": "graph", html: doc.graph_svg });
  const timeline = h("ul", { class: "timeline", "data-testid": "timeline" });
  const imgUrl = mediaUrl(ref, "image");
  const buttons = [];
  function select(i) {
    const step = i === steps.length ? finalStep : steps[i];
    buttons.forEach((b, j) => b.classList.toggle("on", j === i));
    frameHolder.replaceChildren(h("h3", {}, "Frame · ", i === steps.length ? "final" : `step ${i}`), frameView(doc, step.boxes, imgUrl));
    stepHolder.replaceChildren(i === steps.length ? finalView(doc) : stepView(step));
    graphHolder.querySelectorAll(".node").forEach((n) => n.classList.toggle("current", n.dataset.node === step.graph_node));
    if (!EMBED) history.replaceState(null, "", location.hash.split("?")[0] + "?step=" + (i === steps.length ? "final" : i));
  }
  steps.forEach((st, i) => {
    const b = h("button", { "data-step": i, onclick: () => select(i) }, `${i}. ${st.node}`, st.source === null ? "" : ` [source ${st.source}]`,
      st.pass && st.pass > 1 ? ` pass ${st.pass}` : "", st.detail.kind === "gate" && st.detail.gate ? (st.detail.gate.refine ? " → refine" : " → skip") : "");
    buttons.push(b); timeline.append(h("li", {}, b));
  });
  const fb = h("button", { "data-step": "final", onclick: () => select(steps.length) }, "final boxes");
  buttons.push(fb); timeline.append(h("li", {}, fb));
  const audioHolder = h("div", {});
  app.replaceChildren(header, ...notices, failed || "", graphHolder, graphSourceView(doc.graph_source) || "", h("div", { class: "row" },
    h("div", { class: "col" }, frameHolder, audioHolder),
    h("div", { class: "col" }, h("div", { class: "card" }, h("h3", {}, "Steps"), timeline), stepHolder)));
  const wanted = (location.hash.split("?step=")[1] || "final");
  select(wanted === "final" || isNaN(+wanted) ? steps.length : Math.min(+wanted, steps.length));
  document.onkeydown = (ev) => {
    const cur = buttons.findIndex((b) => b.classList.contains("on"));
    if (ev.key === "ArrowDown" || ev.key === "j") select(Math.min(cur + 1, steps.length));
    if (ev.key === "ArrowUp" || ev.key === "k") select(Math.max(cur - 1, 0));
  };
  let peaks = null;
  try { peaks = EMBED ? EMBED.waveform : await api("api/waveform?ref=" + enc(ref)); } catch (e) { peaks = null; }
  audioHolder.replaceChildren(waveView(peaks, mediaUrl(ref, "audio")));
}

async function runsView(params) {
  const q = params.get("q") || "", offset = +(params.get("offset") || 0), limit = 100;
  const page = await api(`api/runs?offset=${offset}&limit=${limit}&q=${enc(q)}`);
  const picked = new Set();
  const diffBtn = h("button", { disabled: true, "data-testid": "diff-button", onclick: () => {
    const [a, b] = [...picked]; location.hash = "#/diff/" + enc(a) + "/" + enc(b);
  } }, "diff the 2 selected runs");
  const filter = h("input", { type: "search", placeholder: "filter: id, image, class, status, graph, protocol…", value: q, size: 40, "data-testid": "runs-filter" });
  let timer = null;
  filter.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(() => { location.hash = "#/runs?q=" + enc(filter.value); }, 250); });
  const rows = page.rows.map((r) => {
    if (r.error) return h("tr", { class: "err", "data-ref": r.ref }, h("td", {}), h("td", { colspan: 14 }, errorCard(r.error, r.id)));
    const box = h("input", { type: "checkbox", "data-pick": r.ref, onchange: (ev) => {
      if (ev.target.checked) picked.add(r.ref); else picked.delete(r.ref);
      diffBtn.disabled = picked.size !== 2;
    } });
    return h("tr", { "data-ref": r.ref, class: r.failed ? "err" : "" }, h("td", {}, box),
      h("td", { class: "nowrap" }, r.time.replace("T", " ").slice(0, 19)),
      h("td", {}, h("img", { class: "thumb", loading: "lazy", alt: "", src: "api/thumb?ref=" + enc(r.ref) })),
      h("td", {}, h("a", { href: runHref(r.ref), "data-testid": "run-link", title: r.id }, r.id.length > 16 ? r.id.slice(0, 12) + "…" : r.id), r.kind !== "run" ? ` (${r.kind})` : "", h("div", { class: "muted" }, r.image)),
      h("td", { class: "num" }, r.k), h("td", { class: "num", "data-col": "n" }, r.n),
      h("td", { class: "num nowrap", "data-col": "tau" }, `${fmt(r.tau_av)} / ${fmt(r.tau_audio)}`),
      h("td", { "data-col": "classes" }, (r.classes || []).join(", ")),
      h("td", { "data-col": "status" }, h("span", { class: "pill " + (r.failed ? "fail" : "pass") }, r.status || (r.failed ? "failed" : "–"))),
      h("td", {}, r.graph), h("td", {}, r.protocol),
      h("td", {}, r.failed ? h("span", { class: "pill fail" }, r.run_error) : r.boxes.map(boxText).join(" ")),
      h("td", { class: "num" }, r.refined), h("td", { class: "num" }, fmt(r.calls)), h("td", { class: "num" }, fmt(r.wall_s)));
  });
  const nav = pager(page, limit, (o) => `#/runs?q=${enc(q)}&offset=${o}`);
  const evals = INFO.mode === "traces" ? (await api("api/evals")).rows : [];
  app.replaceChildren(evals.length ? evalsTable(evals) : "", h("h2", {}, "Runs"), h("div", { class: "toolbar" }, filter, diffBtn), nav,
    table(["", "time", "frame", "run", "K", "N", "tau_av / tau_audio", "audio classes", "status", "graph", "protocol", "final boxes", "refined", "calls", "wall s"], rows, { "data-testid": "runs" }));
  filter.focus(); filter.setSelectionRange(q.length, q.length);
}

function evalsTable(evals) {
  // the evaluations (and gate sweeps) of a folder that holds them beside runs; two picked open the comparison
  const picked = new Set();
  const compareBtn = h("button", { disabled: true, "data-testid": "compare-button", onclick: () => {
    const [a, b] = [...picked]; location.href = `compare?a=${enc(a)}&b=${enc(b)}`;
  } }, "compare the 2 selected evaluations");
  const rows = evals.map((e) => h("tr", { "data-eval": e.ref, class: e.error ? "err" : "" },
    h("td", {}, e.error ? "" : h("input", { type: "checkbox", "data-pick-eval": e.ref, onchange: (ev) => {
      if (ev.target.checked) picked.add(e.ref); else picked.delete(e.ref);
      compareBtn.disabled = picked.size !== 2;
    } })),
    h("td", {}, h("a", { href: "#/eval?ref=" + enc(e.ref), "data-testid": "eval-link" }, e.ref)),
    h("td", {}, e.dataset || "–"), h("td", { class: "num" }, e.n_samples),
    h("td", { class: "num" }, e.settings.n_votes ?? "–"), h("td", { class: "num nowrap" }, `${fmt(e.settings.tau_av)} / ${fmt(e.settings.tau_audio)}`),
    h("td", { class: "num" }, pct(e.metrics["ciou@0.5"])), h("td", { class: "num" }, pct(e.metrics.auc)),
    h("td", { class: "num" }, fmt(e.metrics.n_failed)), h("td", {}, e.sweep ? h("span", { class: "pill pass" }, "sweep") : ""),
    h("td", {}, e.error || "")));
  return h("div", {}, h("h2", {}, "Evaluations"), h("div", { class: "toolbar" }, compareBtn),
    table(["", "evaluation", "dataset", "samples", "N", "tau_av / tau_audio", "cIoU@0.5 %", "AUC %", "failed", "gate sweep", ""], rows, { "data-testid": "evals" }));
}

function pager(page, limit, href) {
  const from = page.total ? page.offset + 1 : 0, to = Math.min(page.offset + limit, page.total);
  return h("div", { class: "pager", "data-testid": "pager" }, `${from}–${to} of ${page.total}`,
    page.offset > 0 ? h("a", { href: href(Math.max(0, page.offset - limit)) }, "◀ previous") : null,
    to < page.total ? h("a", { href: href(page.offset + limit) }, "next ▶") : null);
}

async function diffView(a, b) {
  const d = await api(`api/diff?a=${enc(a)}&b=${enc(b)}`);
  const keys = Object.keys(d.a.settings);
  const side = (s, label) => h("div", { class: "diffside card", "data-testid": "diff-" + label },
    h("h3", {}, `${label.toUpperCase()}: `, h("a", { href: runHref(s.ref) }, s.run_id)),
    h("div", { class: "muted" }, `${s.created.replace("T", " ")} · graph ${s.graph} · protocol ${s.protocol} · ${s.calls ?? "–"} calls · ${fmt(s.wall_s)} s`),
    s.error ? errorCard(s.error, "the run failed") : null,
    frameView({ image: s.image, gt: null }, s.boxes, "api/media?ref=" + enc(s.ref) + "&kind=image"));
  const settingsRows = keys.map((k) => {
    const changed = JSON.stringify(d.a.settings[k]) !== JSON.stringify(d.b.settings[k]);
    return h("tr", {}, h("th", {}, k), h("td", { class: changed ? "changed" : "" }, fmt(d.a.settings[k])), h("td", { class: changed ? "changed" : "" }, fmt(d.b.settings[k])));
  });
  const list = (title, items, id) => h("div", { class: "card" }, h("h3", {}, `${title} (${items.length} differ)`),
    items.length ? table(["what", "A", "B"], items.map(([w, x, y]) => h("tr", {}, h("td", {}, w), h("td", {}, h("pre", {}, fmt(x))), h("td", {}, h("pre", {}, fmt(y))))), { "data-testid": id }) : h("p", { class: "muted" }, "same"));
  const boxes = h("div", { class: "card" }, h("h3", {}, "Final boxes"), table(["source", "A", "B", "IoU"],
    d.boxes.map((x) => h("tr", {}, h("td", {}, x.source), h("td", {}, boxText(x.a)), h("td", {}, boxText(x.b)), h("td", { class: "num", "data-iou": x.source }, x.iou === null ? "–" : x.iou.toFixed(3)))), { "data-testid": "diff-boxes" }));
  app.replaceChildren(h("h2", {}, "Diff ", d.same ? h("span", { class: "pill pass" }, "same") : h("span", { class: "pill fail" }, "differ")),
    h("div", { class: "row" }, side(d.a, "a"), side(d.b, "b")),
    h("div", { class: "card" }, h("h3", {}, "Settings"), table(["", "A", "B"], settingsRows, { "data-testid": "diff-settings" })),
    list("Settings and inputs", d.settings, "diff-settings-changed"), list("Answers", d.answers, "diff-answers"),
    list("Decisions", d.decisions, "diff-decisions"), boxes);
}

function histogram(values, bins) {
  const counts = new Array(bins).fill(0);
  for (const v of values) counts[Math.min(bins - 1, Math.max(0, Math.floor(v * bins)))]++;
  const L = 34, W = 420, H = 140, T = 14, bw = W / bins, top = Math.max(1, ...counts);
  const svg = h("svg", { class: "hist", viewBox: `0 0 ${L + W + 6} ${T + H + 44}`, width: L + W + 6, height: T + H + 44, "data-testid": "iou-hist" });
  const y = (c) => T + H - (c / top) * H;
  // the count axis: 0, the middle and the tallest bar, with light grid lines
  for (const c of [...new Set([0, Math.round(top / 2), top])]) {
    svg.append(h("line", { class: "grid", x1: L, x2: L + W, y1: y(c), y2: y(c) }));
    svg.append(h("text", { class: "tick", x: L - 4, y: y(c) + 4, "text-anchor": "end" }, String(c)));
  }
  svg.append(h("line", { class: "axis", x1: L, x2: L, y1: T, y2: T + H }), h("line", { class: "axis", x1: L, x2: L + W, y1: T + H, y2: T + H }));
  counts.forEach((c, i) => {
    const bh = (c / top) * H;
    svg.append(h("rect", { class: "bar", x: L + i * bw + 1, y: T + H - bh, width: bw - 2, height: bh, "data-bin": i, "data-count": c }));
    if (c) svg.append(h("text", { class: "count", x: L + i * bw + bw / 2, y: T + H - bh - 3, "text-anchor": "middle", "data-count-label": i }, String(c)));
  });
  for (let t = 0; t <= 10; t += 2) svg.append(h("text", { class: "tick", x: L + (t / 10) * W, y: T + H + 16, "text-anchor": t === 0 ? "start" : t === 10 ? "end" : "middle" }, (t / 10).toFixed(1)));
  svg.append(h("text", { class: "label", x: L + W / 2, y: T + H + 36, "text-anchor": "middle" }, "cIoU"));
  svg.append(h("text", { class: "label", x: 10, y: T + H / 2, "text-anchor": "middle", transform: `rotate(-90 10 ${T + H / 2})` }, "samples"));
  return svg;
}

function sweepView(sweep) {
  if (!sweep || !Array.isArray(sweep.settings)) return null;
  const rec = sweep.recorded || {};
  const rows = sweep.settings.map((x) => {
    const m = x.metrics || {};
    const here = x.tau_av === rec.tau_av && x.tau_audio === rec.tau_audio && x.n_votes === rec.n_votes;
    return h("tr", { class: here ? "changed" : "", "data-sweep": `${x.tau_av}/${x.tau_audio}/${x.n_votes}` },
      h("td", { class: "num" }, fmt(x.tau_av)), h("td", { class: "num" }, fmt(x.tau_audio)), h("td", { class: "num" }, fmt(x.n_votes)),
      h("td", { class: "num" }, fmt(x.n_decided)), h("td", { class: "num" }, fmt(x.n_needs_model)),
      h("td", { class: "num" }, pct(m["ciou@0.3"])), h("td", { class: "num" }, pct(m["ciou@0.5"])), h("td", { class: "num" }, pct(m.auc)),
      h("td", { class: "num" }, fmt(m.refined)), h("td", { class: "num" }, fmt(m.skipped)));
  });
  return h("div", { class: "card" }, h("h3", {}, "Gate sweep (sweep.json)"),
    h("div", { class: "muted" }, `recorded: tau_av ${fmt(rec.tau_av)} · tau_audio ${fmt(rec.tau_audio)} · N ${fmt(rec.n_votes)} (highlighted)` +
      (sweep.n_unavailable ? ` · ${sweep.n_unavailable} samples unavailable` : "") + (sweep.strict ? " · strict" : "")),
    table(["tau_av", "tau_audio", "N", "decided", "needs the model", "cIoU@0.3 %", "cIoU@0.5 %", "AUC %", "refined", "skipped"], rows, { "data-testid": "sweep" }));
}

async function evalView(params) {
  const ref = params.get("ref") || "";
  const ev = await api("api/eval" + (ref ? "?ref=" + enc(ref) : ""));
  const m = ev.metrics || {};
  const st = { ref, sort: params.get("sort") || "id", desc: params.get("desc") === "1", status: params.get("status") || "",
    iou_min: params.get("iou_min") || "", iou_max: params.get("iou_max") || "", cls: params.get("cls") || "", offset: +(params.get("offset") || 0) };
  const limit = 100;
  const qs = (o) => Object.entries({ ...st, ...o }).filter(([, v]) => v !== "" && v !== false && v !== 0).map(([k, v]) => `${k}=${enc(v === true ? 1 : v)}`).join("&");
  const go = (o) => { location.hash = "#/eval?" + qs({ offset: 0, ...o }); };
  const metricKeys = [["n_total", "samples run"], ["n_evaluated", "in the metrics"], ["n_failed", "failed"], ["n_missing", "missing"],
    ["ciou@0.3", "cIoU@0.3 %"], ["ciou@0.5", "cIoU@0.5 %"], ["auc", "AUC %"], ["ap", "AP %"], ["piap", "PIAP %"], ["matched_mean_iou", "matched mean IoU %"], ["refined", "refined"], ["skipped", "skipped"]];
  const metrics = h("div", { class: "card" }, h("h3", {}, "Metrics"), ev.metrics_error ? errorCard(ev.metrics_error, "metrics.json") : null,
    table(["metric", "value"], metricKeys.filter(([k]) => k in m).map(([k, label]) => h("tr", {}, h("td", {}, label),
      h("td", { class: "num", "data-metric": k }, k.startsWith("n_") || k === "refined" || k === "skipped" ? fmt(m[k]) : pct(m[k])))), { "data-testid": "metrics" }));
  const g = ev.gate;
  const gate = h("div", { class: "card" }, h("h3", {}, "Gate"), table(["", ""], [
    ["tau_av / tau_audio", `${fmt(g.tau_av)} / ${fmt(g.tau_audio)}`], ["sources", g.sources], ["gated", g.gated], ["refine", g.refine], ["skip", g.skip],
    ["keep rate", g.keep_rate === null ? "–" : pct(g.keep_rate) + " %"], ["mean av_consistency", fmt(g.mean_av)], ["mean audio confidence", fmt(g.mean_audio_confidence)],
    ...Object.entries(g.reasons).map(([k, v]) => [`refined because ${k}`, v]),
  ].map(([k, v]) => h("tr", {}, h("td", {}, k), h("td", { class: "num", "data-gate-stat": k }, v))), { "data-testid": "gate-stats" }));
  const hist = h("div", { class: "card" }, h("h3", {}, `Per-sample cIoU (${ev.ciou.length} evaluated)`), histogram(ev.ciou, 20));
  const sweep = ev.sweep_error ? errorCard(ev.sweep_error, "sweep.json") : sweepView(ev.sweep);
  const cfg = ev.config || {};
  const head = h("div", { class: "card" }, h("h2", {}, "Evaluation ", ev.root), ev.config_error ? errorCard(ev.config_error, "eval.json") : null,
    h("div", {}, `dataset ${cfg.dataset || "–"} · ${ev.n_samples} sample files` + (ev.n_unreadable ? ` (${ev.n_unreadable} unreadable)` : "")),
    cfg.settings ? h("div", { class: "muted" }, `graph ${cfg.settings.graph} · N=${cfg.settings.n_votes} · backend ${cfg.settings.backend}${cfg.settings.model ? " " + cfg.settings.model : ""}`) : null);
  const status = h("select", { "data-testid": "filter-status", onchange: (e) => go({ status: e.target.value }) },
    ["", "failed", "refined", "skipped", "ok"].map((v) => h("option", { value: v, selected: v === st.status }, v || "all samples")));
  const num = (name, ph) => h("input", { type: "number", step: "0.05", min: 0, max: 1, placeholder: ph, value: st[name], size: 6, "data-testid": "filter-" + name,
    onchange: (e) => go({ [name]: e.target.value }) });
  const cls = h("input", { type: "search", placeholder: "class", value: st.cls, "data-testid": "filter-cls", onchange: (e) => go({ cls: e.target.value }) });
  const page = await api("api/samples?limit=" + limit + "&" + qs({}));
  const cols = [["id", "id"], ["frame", null], ["ciou", "cIoU"], ["ap", "AP"], ["matched_mean_iou", "matched IoU"], ["refined", "refined"], ["skipped", "skipped"], ["classes", null], ["calls", "calls"], ["wall_s", "wall s"], ["error", null]];
  const headRow = h("tr", {}, cols.map(([k, label]) => label
    ? h("th", { class: "sortable" + (st.sort === k ? " sorted" + (st.desc ? "" : " asc") : ""), "data-sort": k,
      onclick: () => go({ sort: k, desc: st.sort === k ? !st.desc : false }) }, label)
    : h("th", {}, k === "frame" ? "overlay" : k)));
  const rows = page.rows.map((r) => h("tr", { class: r.failed ? "err" : "", "data-sample": r.id },
    h("td", {}, r.trace ? h("a", { href: runHref(r.trace), "data-testid": "sample-link" }, r.id) : r.id),
    h("td", {}, r.trace ? h("img", { class: "thumb", loading: "lazy", alt: "", src: "api/thumb?ref=" + enc(r.trace) }) : ""),
    h("td", { class: "num", "data-ciou": r.ciou === null ? "" : r.ciou }, fmt(r.ciou)), h("td", { class: "num" }, fmt(r.ap)), h("td", { class: "num" }, fmt(r.matched_mean_iou)),
    h("td", { class: "num" }, r.refined), h("td", { class: "num" }, r.skipped), h("td", {}, r.classes.join(", ")),
    h("td", { class: "num" }, fmt(r.calls)), h("td", { class: "num" }, fmt(r.wall_s)), h("td", {}, r.error || "")));
  const samples = h("div", { class: "card" }, h("h3", {}, "Samples"),
    h("div", { class: "toolbar" }, status, "cIoU from", num("iou_min", "min"), "to", num("iou_max", "max"), cls),
    pager(page, limit, (o) => "#/eval?" + qs({ offset: o })),
    h("table", { "data-testid": "samples" }, h("thead", {}, headRow), h("tbody", {}, rows)));
  app.replaceChildren(head, h("div", { class: "row" }, metrics, gate, hist), sweep || "", samples);
}

// ------------------------------------------------------------------ routing

function navigation() {
  const nav = document.getElementById("nav");
  const route = location.hash.slice(2).split(/[/?]/)[0] || "";
  const links = EMBED ? [] : [INFO.mode === "eval" ? ["eval", "Evaluation"] : null, INFO.mode !== "run" ? ["runs", "Runs"] : null].filter(Boolean);
  nav.replaceChildren(...links.map(([r, label]) => h("a", { href: "#/" + r, class: route === r ? "on" : "" }, label)));
  document.getElementById("where").textContent = EMBED ? "exported run (no server)" : INFO.path;
}

async function route() {
  document.onkeydown = null;
  const hash = location.hash.slice(1) || "/";
  const [path, query] = hash.split("?");
  const params = new URLSearchParams(query || "");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  navigation();
  try {
    if (EMBED) return await runView(EMBED.run.ref);
    if (parts[0] === "run") return await runView(parts.slice(1).join("/"));
    if (parts[0] === "diff") return await diffView(parts[1], parts[2]);
    if (parts[0] === "runs") return await runsView(params);
    if (parts[0] === "eval" || (!parts.length && INFO.mode === "eval")) return await evalView(params);
    if (!parts.length && INFO.mode === "run") return await runView(".");
    return await runsView(params);
  } catch (e) {
    app.replaceChildren(errorCard(e.message), h("p", {}, h("a", { href: "#/" }, "back to the start")));
  }
}

window.addEventListener("hashchange", route);

(async () => {
  try {
    INFO = EMBED ? { mode: "run" } : await api("api/info");
  } catch (e) {
    app.replaceChildren(errorCard(e.message, "the viewer's server does not answer"));
    return;
  }
  route();
})();
