// cartwin serve: the pages' behaviour. Served by the app itself; talks only to the app.
"use strict";

const $ = (sel, root = document) => root.querySelector(sel);
const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));

async function postJSON(url, body) {
  const r = await fetch(url, {method: "POST", headers: {"content-type": "application/json"}, body: JSON.stringify(body)});
  return r.json();
}

// --- Design --------------------------------------------------------------------------------
function formFields(form) {
  const out = {};
  for (const el of $$("input, select, textarea", form)) {
    if (el.name) out[el.name] = el.value;
  }
  return out;
}

// "arms[0] (tyu19).dose.cells_per_kg" -> "arms.0.dose.cells_per_kg"
function problemPath(problem) {
  const at = problem.indexOf(": ");
  if (at < 0) return "";
  return problem.slice(0, at).replace(/ \([^)]*\)/g, "").replace(/\[(\d+)\]/g, ".$1");
}

function showCheck(result) {
  const box = $("#check");
  box.classList.toggle("ok", result.ok);
  box.classList.toggle("bad", !result.ok);
  $("#check-message").textContent = result.message;
  $("#problems").replaceChildren(...result.problems.map(p => Object.assign(document.createElement("li"), {textContent: p})));
  const form = $("#protocol-form");
  $$(".problem", form).forEach(el => el.remove());
  $$(".has-problem", form).forEach(el => el.classList.remove("has-problem"));
  for (const p of result.problems) {
    let path = problemPath(p);
    let target = null;
    while (path && !target) {
      target = form.querySelector(`[data-path="${CSS.escape(path)}"]`);
      if (!target) path = path.includes(".") ? path.slice(0, path.lastIndexOf(".")) : "";
    }
    if (!target) continue;
    target.classList.add("has-problem");
    const note = Object.assign(document.createElement("div"), {className: "problem", textContent: p});
    target.appendChild(note);
  }
}

function applyDesign(result, replaceForm) {
  if (result.error) {
    showCheck({ok: false, message: "error: " + result.error, problems: []});
    return;
  }
  if (typeof result.toml === "string") $("#toml").value = result.toml;
  if (result.source) $("#source").value = result.source;
  if (replaceForm && result.form !== null && result.form !== undefined) $("#protocol-form").innerHTML = result.form;
  showCheck(result);
  const name = $("#editor-name");
  if (name) name.textContent = $("#source").value;
  document.dispatchEvent(new Event("cartwin:protocol"));
}

function setupDesign() {
  const form = $("#protocol-form");
  if (!form) return;
  let pending = 0;
  const send = async (action, structural) => {
    const ticket = ++pending;
    const result = await postJSON("/api/design/form", {fields: formFields(form), action, source: $("#source").value});
    if (ticket === pending) applyDesign(result, structural || !!action);
  };
  form.addEventListener("change", e => send(null, e.target.dataset.structural === "1"));
  form.addEventListener("click", e => {
    const button = e.target.closest("button[data-action]");
    if (button) { e.preventDefault(); send(button.dataset.action, true); }
  });
  form.addEventListener("submit", e => e.preventDefault());
  $("#check-toml").addEventListener("click", async () => {
    applyDesign(await postJSON("/api/design/toml", {toml: $("#toml").value, source: $("#source").value}), true);
  });
  $("#upload").addEventListener("change", async e => {
    const file = e.target.files[0];
    if (!file) return;
    const data = new FormData();
    data.append("file", file);
    const r = await fetch("/api/design/upload", {method: "POST", body: data});
    const result = r.status === 413 ? {error: await r.text()} : await r.json();
    applyDesign(result, true);
    e.target.value = "";
  });
  showCheck({ok: $("#check").classList.contains("ok"), message: $("#check-message").textContent,
             problems: $$("#problems li").map(li => li.textContent)});
}

// --- Design search: the spec, checked as `cartwin design --check` checks a file ------------------
function showSpecCheck(result) {
  const box = $("#spec-check");
  box.classList.toggle("ok", !!result.ok);
  box.classList.toggle("bad", !result.ok);
  $("#spec-message").textContent = result.message;
  $("#spec-problems").replaceChildren(...(result.problems || []).map(p => Object.assign(document.createElement("li"), {textContent: p})));
}

function setupDesignSearch() {
  const spec = $("#spec");
  if (!spec) return;
  let pending = 0;
  const check = async () => {
    const ticket = ++pending;
    const result = await postJSON("/api/design/spec", {spec: spec.value, spec_source: $("#spec-source").value,
                                                       toml: $("#toml").value, source: $("#source").value});
    if (ticket === pending) showSpecCheck(result);
  };
  spec.addEventListener("change", check);
  $("#check-spec").addEventListener("click", check);
  $("#use-editor-protocol").addEventListener("click", () => {
    const name = $("#source").value;
    const line = `protocol = ${JSON.stringify(name)}`;
    spec.value = /^protocol\s*=.*$/m.test(spec.value) ? spec.value.replace(/^protocol\s*=.*$/m, line) : line + "\n" + spec.value;
    check();
  });
  $("#spec-upload").addEventListener("change", async e => {
    const file = e.target.files[0];
    if (!file) return;
    const data = new FormData();
    data.append("file", file);
    data.append("toml", $("#toml").value);
    data.append("source", $("#source").value);
    const r = await fetch("/api/design/spec/upload", {method: "POST", body: data});
    const result = r.status === 413 ? {error: await r.text()} : await r.json();
    if (result.error) {
      showSpecCheck({ok: false, message: "error: " + result.error, problems: []});
    } else {
      spec.value = result.spec;
      $("#spec-source").value = result.source;
      showSpecCheck(result);
    }
    e.target.value = "";
  });
  // the protocol in the editor is one a spec may name: check the spec again when it changes
  document.addEventListener("cartwin:protocol", check);
}

// --- Runs and design searches: live progress -----------------------------------------------------
function setupStatus() {
  const box = $("#status");
  if (!box) return;
  const api = box.dataset.api;
  const live = ["queued", "running"];
  if (!live.includes(box.dataset.state)) return;
  const timer = setInterval(async () => {
    const s = await (await fetch(api)).json();
    $("#state").textContent = s.state;
    $("#queue").textContent = s.queue_position ? ` · number ${s.queue_position} in the queue` : "";
    const p = s.progress || {};
    const bar = $("#progress");
    if (p.total) { bar.max = p.total; bar.value = p.done; } else { bar.removeAttribute("value"); }
    $("#progress-text").textContent = p.phase ? p.phase + (p.total ? `: ${p.done}/${p.total} ${p.unit || "chunks"}` : "") : "";
    if (!live.includes(s.state)) { clearInterval(timer); location.reload(); }
  }, 700);
}

// --- Read: charts ------------------------------------------------------------------------------
const COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22"];
const CONFIG = {responsive: true, displaylogo: false, modeBarButtonsToRemove: ["toImage", "sendDataToCloud"]};

function layout(title, ytitle, extra = {}) {
  return Object.assign({
    title: {text: title, font: {size: 14}, x: 0.01, xanchor: "left"}, margin: {l: 60, r: 30, t: 50, b: 40},
    height: 340, xaxis: {title: {text: "day", standoff: 4}, zeroline: false}, yaxis: {title: {text: ytitle}},
    legend: {orientation: "h", y: -0.25, yanchor: "top", groupclick: "togglegroup"}, hovermode: "closest",
    modebar: {orientation: "v"},
  }, extra);
}

function chartDiv(container, key) {
  const div = document.createElement("div");
  div.className = "chart";
  div.dataset.chart = key;
  container.appendChild(div);
  return div;
}

function positive(v, log) { return v === null || (log && v <= 0) ? null : v; }

function drawTimeCourses(container, data, prefix = "") {
  const colour = Object.fromEntries(data.arms.map((a, i) => [a.id, COLOURS[i % COLOURS.length]]));
  const label = Object.fromEntries(data.arms.map(a => [a.id, prefix + a.label]));
  for (const r of data.readouts) {
    if (!r.rows.length) continue;
    const log = r.scale === "log";
    const traces = [];
    for (const arm of data.arms) {
      for (const test of r.tests) {
        const rows = r.rows.filter(x => x.arm === arm.id && x.test === test);
        if (!rows.length) continue;
        const name = label[arm.id] + (r.tests.length > 1 ? ` ${test}` : "");
        const days = rows.map(x => x.day);
        traces.push({x: days.concat(days.slice().reverse()),
                     y: rows.map(x => positive(x.q95, log)).concat(rows.map(x => positive(x.q05, log)).reverse()),
                     fill: "toself", fillcolor: colour[arm.id] + "22", line: {width: 0}, hoverinfo: "skip",
                     legendgroup: arm.id, showlegend: false, name: name + " 5-95%", type: "scatter"});
        traces.push({x: days, y: rows.map(x => positive(x.q50, log)), name, legendgroup: arm.id, type: "scatter",
                     mode: "lines+markers", marker: {size: 4}, line: {color: colour[arm.id], dash: test === "C4" ? "dot" : "solid"},
                     customdata: rows.map(x => [x.q05, x.q95, x.n]),
                     hovertemplate: `${name}<br>day %{x}<br>median %{y:.3g} ${r.unit}<br>5-95%: %{customdata[0]:.3g}-%{customdata[1]:.3g}<br>n = %{customdata[2]}<extra></extra>`});
      }
    }
    const div = chartDiv(container, r.key);
    const extra = {};
    extra.yaxis = {title: {text: r.unit}, type: log ? "log" : "linear"};
    extra.updatemenus = [{type: "buttons", direction: "right", x: 1, y: 1.02, xanchor: "right", yanchor: "bottom", showactive: true,
                          active: log ? 1 : 0, font: {size: 11},
                          buttons: [{label: "linear", method: "relayout", args: ["yaxis.type", "linear"]},
                                    {label: "log", method: "relayout", args: ["yaxis.type", "log"]}]}];
    Plotly.newPlot(div, traces, layout(r.title, r.unit, extra), CONFIG);
  }
}

const MARKS = [
  ["remission_day", "remission (SELENA-SLEDAI 0, PGA < 1)", "diamond", "#2ca02c"],
  ["bcell_aplasia_onset_day", "B-cell aplasia", "triangle-down", "#1f77b4"],
  ["bcell_return_day", "B-cell return", "triangle-up", "#17becf"],
  ["crs_onset_day", "CRS onset", "circle", "#ff7f0e"],
];

function drawSwimmers(container, data, prefix = "") {
  data.arms.forEach((arm, i) => {
    const lanes = data.swimmers[arm.id];
    if (!lanes) {
      const p = Object.assign(document.createElement("p"), {className: "note",
        textContent: `${prefix}${arm.label}: more than ${data.swimmer_max} patients; no swimmer plot (see the trajectories)`});
      container.appendChild(p);
      return;
    }
    const subjects = lanes.map(l => l.subject);
    const traces = [{type: "bar", orientation: "h", y: subjects, base: lanes.map(l => l.first_day),
                     x: lanes.map(l => l.last_day - l.first_day), marker: {color: "#c9d6e3"}, name: "follow-up",
                     hovertemplate: "%{y}: day %{base} to %{x}<extra>follow-up</extra>"}];
    for (const [key, name, symbol, colour] of MARKS) {
      const hits = lanes.filter(l => l[key] !== null && l[key] !== undefined);
      if (!hits.length) continue;
      traces.push({type: "scatter", mode: "markers", name, y: hits.map(l => l.subject), x: hits.map(l => l[key]),
                   marker: {symbol, size: 11, color: colour},
                   customdata: hits.map(l => l.crs_max),
                   hovertemplate: key === "crs_onset_day" ? "%{y}: CRS grade %{customdata} from day %{x}<extra></extra>"
                                                          : `%{y}: ${name} day %{x}<extra></extra>`});
    }
    const events = lanes.flatMap(l => l.events.map(e => ({subject: l.subject, ...e})));
    if (events.length) {
      traces.push({type: "scatter", mode: "markers", name: "grade >= 3 adverse event", y: events.map(e => e.subject),
                   x: events.map(e => e.day_of_max), marker: {symbol: "x", size: 10, color: "#d62728"},
                   text: events.map(e => `${e.term} grade ${e.max_grade}`),
                   hovertemplate: "%{y}: %{text}, day %{x}<extra></extra>"});
    }
    const div = chartDiv(container, `swimmer_${i}`);
    const height = Math.max(260, 90 + 26 * lanes.length);
    Plotly.newPlot(div, traces, layout(`${prefix}${arm.label}: patient by patient`, "", {
      height, barmode: "overlay", yaxis: {automargin: true, autorange: "reversed", type: "category"}}), CONFIG);
  });
}

function drawDifferences(container, data) {
  // each arm against the first: differences in proportion (percentage points) and ratios of
  // geometric means, with their 95% intervals; one chart per kind
  const kinds = [["difference", "difference from the reference (percentage points)", 100, 0],
                 ["ratio", "ratio to the reference (geometric means)", 1, 1]];
  for (const [kind, title, scale, nothing] of kinds) {
    const rows = data.differences.filter(d => d.kind === kind && d.estimate !== null);
    if (!rows.length) continue;
    const arms = [...new Set(rows.map(d => d.arm))];
    const traces = arms.map((arm, i) => {
      const mine = rows.filter(d => d.arm === arm);
      return {type: "scatter", mode: "markers", name: mine[0].arm_label, legendgroup: arm,
              y: mine.map(d => d.label), x: mine.map(d => d.estimate * scale),
              marker: {size: 9, color: COLOURS[(i + 1) % COLOURS.length]},
              error_x: {type: "data", symmetric: false, array: mine.map(d => d.upper === null ? 0 : (d.upper - d.estimate) * scale),
                        arrayminus: mine.map(d => d.lower === null ? 0 : (d.estimate - d.lower) * scale)},
              customdata: mine.map(d => [d.lower === null ? NaN : d.lower * scale, d.upper === null ? NaN : d.upper * scale]),
              hovertemplate: `%{y}<br>${mine[0].arm_label}: %{x:.3g} [%{customdata[0]:.3g}, %{customdata[1]:.3g}]<extra></extra>`};
    });
    const div = chartDiv(container, `differences_${kind}`);
    const n = new Set(rows.map(d => d.label)).size;
    Plotly.newPlot(div, traces, layout(`Against ${data.reference_label}: ${title}`, "", {
      height: Math.max(300, 110 + 28 * n), xaxis: {title: {text: title}, type: kind === "ratio" ? "log" : "linear"},
      yaxis: {automargin: true, type: "category"},
      shapes: [{type: "line", xref: "x", yref: "paper", x0: nothing, x1: nothing, y0: 0, y1: 1, line: {dash: "dot", color: "#888"}}]}), CONFIG);
  }
}

async function drawTrajectories(runId, test, labels = {}) {
  const div = $("#trajectories");
  const data = await (await fetch(`/api/runs/${runId}/trajectories?test=${encodeURIComponent(test)}`)).json();
  const arms = [...new Set(data.series.map(s => s.arm))];
  const colour = Object.fromEntries(arms.map((a, i) => [a, COLOURS[i % COLOURS.length]]));
  const seen = new Set();
  const traces = data.series.map(s => {
    const first = !seen.has(s.arm);
    seen.add(s.arm);
    return {type: "scatter", mode: "lines+markers", x: s.day, y: s.value, name: labels[s.arm] || s.arm, legendgroup: s.arm,
            showlegend: first, line: {color: colour[s.arm], width: 1.2}, marker: {size: 3},
            hovertemplate: `${s.subject} (${s.arm})<br>day %{x}<br>%{y:.4g} ${data.unit}<extra></extra>`};
  });
  const shownNote = Object.entries(data.total).filter(([a, n]) => data.shown[a] < n)
    .map(([a, n]) => `${a}: first ${data.shown[a]} of ${n}`).join("; ");
  Plotly.react(div, traces, layout(`${test} per patient${shownNote ? " (" + shownNote + ")" : ""}`, data.unit), CONFIG);
}

async function setupCharts() {
  const section = $("#charts");
  if (section) {
    const runId = section.dataset.run;
    const data = await (await fetch(`/api/runs/${runId}/charts`)).json();
    drawTimeCourses($("#timecourses"), data);
    drawSwimmers($("#swimmers"), data);
    drawDifferences($("#differences"), data);
    const select = $("#trajectory-test");
    if (select) {
      const labels = Object.fromEntries(data.arms.map(a => [a.id, a.label]));
      select.addEventListener("change", () => drawTrajectories(runId, select.value, labels));
      await drawTrajectories(runId, select.value, labels);
    }
    section.dataset.drawn = "1";
  }
  const compared = $$(".compare-charts");
  for (const [i, box] of compared.entries()) {
    const data = await (await fetch(`/api/runs/${box.dataset.run}/charts`)).json();
    drawTimeCourses(box, data, "AB"[i] + ": ");
    box.dataset.drawn = "1";
  }
}

// --- Design search: its result as charts -------------------------------------------------------
function drawDesign(container, data) {
  const s = data.summary;
  const required = Object.fromEntries(s.requirements.map(r => [r.endpoint, r]));
  const panels = s.requirements.map(r => r.endpoint).concat(s.goal.toxicity.filter(e => !(e in required)));
  s.recommendations.forEach((rec, p) => {
    const rows = data.points.filter(x => x.product === rec.product);
    const doses = [...new Set(rows.map(x => x.dose))];
    for (const endpoint of panels) {
      if (!rows.length || !(endpoint in rows[0])) continue;
      const traces = doses.map((dose, i) => {
        const mine = rows.filter(x => x.dose === dose && x[endpoint] !== null).sort((a, b) => a.intensity - b.intensity);
        return {type: "scatter", mode: "lines+markers", name: dose, legendgroup: dose,
                x: mine.map(x => x.intensity), y: mine.map(x => x[endpoint]),
                line: {color: COLOURS[i % COLOURS.length]}, marker: {size: 6},
                error_y: {type: "data", symmetric: false, array: mine.map(x => x[endpoint + "_upper"] - x[endpoint]),
                          arrayminus: mine.map(x => x[endpoint] - x[endpoint + "_lower"]), thickness: 1},
                customdata: mine.map(x => [x[endpoint + "_k"], x[endpoint + "_n"], x[endpoint + "_lower"], x[endpoint + "_upper"],
                                           x.fludarabine_mg_m2, x.cyclophosphamide_mg_m2]),
                hovertemplate: `${dose}<br>intensity %{x:.3g} (Flu %{customdata[4]:.4g}, Cy %{customdata[5]:.4g} mg/m²)` +
                               "<br>%{customdata[0]}/%{customdata[1]} = %{y:.1%}<br>95%: %{customdata[2]:.1%}-%{customdata[3]:.1%}<extra></extra>"};
      });
      const shapes = [];
      if (endpoint in required) {
        shapes.push({type: "line", xref: "paper", x0: 0, x1: 1, y0: required[endpoint].at_least, y1: required[endpoint].at_least,
                     line: {dash: "dash", color: "#444", width: 1}});
      }
      if (rec.intensity !== null) {
        shapes.push({type: "line", yref: "paper", y0: 0, y1: 1, x0: rec.intensity, x1: rec.intensity,
                     line: {dash: "dot", color: "#2a9d3a", width: 1.5}});
      }
      let title = `${rec.product}: ${data.labels[endpoint] || endpoint}`;
      if (endpoint in required && required[endpoint].days_at_least !== null) title += ` >= ${required[endpoint].days_at_least} days`;
      if (!(endpoint in required)) title += " (toxicity)";
      const div = chartDiv(container, `design_${p}_${endpoint}`);
      Plotly.newPlot(div, traces, layout(title, "proportion of patients", {
        xaxis: {title: {text: "lymphodepletion intensity (" + s.intensity_path.join(" → ") + ")", standoff: 4}, range: [-0.05, 1.05]},
        yaxis: {title: {text: "proportion of patients (95% CI)"}, range: [-0.03, 1.03], tickformat: ".0%"}, shapes}), CONFIG);
    }
  });
}

async function setupDesignCharts() {
  const section = $("#design-figures");
  if (!section) return;
  const data = await (await fetch(`/api/designs/${section.dataset.design}/result`)).json();
  drawDesign($("#design-charts"), data);
  section.dataset.drawn = "1";
}

document.addEventListener("DOMContentLoaded", () => {
  setupDesign();
  setupDesignSearch();
  setupDesignCharts();
  setupStatus();
  setupCharts();
});
