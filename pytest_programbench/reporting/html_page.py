"""HTML: one self-contained page of a session's results, with plots, for people to look at.

Everything is inline: the data as JSON, and a small script that draws the charts as SVG
and makes the per-instance table sortable and filterable. Nothing is fetched, so the file
opens from disk, from a CI artifact, or offline. The page is built from the same document
as ``--pb-report`` (hidden-test names left out, their counts kept), and rewritten like it
while a run goes on.
"""

from __future__ import annotations

import html
import json
import os
from pathlib import Path
from typing import Any

from pytest_programbench.scoring import detail

REFRESH_SECONDS = 30  # while the run goes on, the page reloads itself to show new verdicts


def page_data(document: dict[str, Any], html_dir: Path | None) -> dict[str, Any]:
    """The document without hidden-test names (a page must stay small), with links to the files."""
    rows = []
    for row in document.get("instances", []):
        slim = {k: v for k, v in row.items() if k not in ("hidden_tests", "findings")}
        hidden = row.get("hidden_tests")
        if isinstance(hidden, dict):
            slim["hidden_counts"] = detail.totals(hidden)
        slim["links"] = {
            k: _href(row[k], html_dir) for k in ("eval_json", "trajectory") if isinstance(row.get(k), str)
        }
        slim["seconds"] = (row.get("agent_seconds") or 0.0) + (row.get("eval_seconds") or 0.0)
        rows.append(slim)
    data = {k: v for k, v in document.items() if k not in ("instances", "options")}
    data["instances"] = rows
    comparison = document.get("comparison")
    if isinstance(comparison, dict):
        data["comparison"] = {k: v for k, v in comparison.items() if k != "flips"}
        data["comparison"]["flipped"] = {
            iid: {k: len(v) for k, v in f.items()} for iid, f in comparison.get("flips", {}).items()
        }
    return data


def _href(path: str, html_dir: Path | None) -> str:
    if html_dir is not None:
        try:
            return Path(os.path.relpath(path, html_dir)).as_posix()
        except ValueError:  # another drive
            pass
    return Path(path).as_uri()


def render(document: dict[str, Any], *, final: bool = True, html_dir: Path | None = None) -> str:
    data = json.dumps(page_data(document, html_dir), default=str, separators=(",", ":"))
    # Inside <script>, "</script" or "<!--" in a string would end or confuse the element; "<"
    # only occurs inside JSON strings, where "\u003c" means the same.
    data = data.replace("<", "\\u003c")
    title = "ProgramBench results" + ("" if final else " (run in progress)")
    refresh = "" if final else f'<meta http-equiv="refresh" content="{REFRESH_SECONDS}">'
    return _PAGE.format(title=html.escape(title), refresh=refresh, data=data, style=_STYLE, script=_SCRIPT)


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">{refresh}
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title><style>{style}</style></head>
<body>
<h1>{title}</h1>
<section id="summary"></section>
<section id="charts">
  <figure><figcaption>Mean score by language</figcaption><div id="chart-language"></div></figure>
  <figure><figcaption>Mean score by difficulty</figcaption><div id="chart-difficulty"></div></figure>
  <figure><figcaption>Scores (instances per bin of 0.1)</figcaption><div id="chart-histogram"></div></figure>
  <figure id="fig-cost"><figcaption>Agent cost ($) against score</figcaption>
    <div id="chart-cost"></div></figure>
  <figure id="fig-time"><figcaption>Time (agent + scoring, s) against score</figcaption>
    <div id="chart-time"></div></figure>
</section>
<section id="comparison"></section>
<section id="instances">
  <h2>Instances</h2>
  <p><input id="filter" type="search" placeholder="filter: instance, language, difficulty, outcome">
  <span id="shown"></span></p>
  <table id="table"><thead></thead><tbody></tbody></table>
</section>
<script type="application/json" id="pb-data">{data}</script>
<script>{script}</script>
</body></html>
"""

_STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.4em}h2{font-size:1.15em}
#summary dl{display:grid;grid-template-columns:max-content auto;gap:.2em 1em}
#summary dt{font-weight:600}
#charts{display:flex;flex-wrap:wrap;gap:1.5em}
figure{margin:0}figcaption{font-size:.9em;color:#555;margin-bottom:.3em}
svg text{font-size:11px;fill:#333}
table{border-collapse:collapse;font-size:.9em}
th,td{padding:.2em .6em;border-bottom:1px solid #ddd;text-align:left}
th{cursor:pointer;background:#f4f4f4;user-select:none}
td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.resolved td.outcome{color:#070}tr.zero td.outcome,tr.error td.outcome{color:#a00}
tr.partial td.outcome,tr.almost td.outcome{color:#a60}
.improved{color:#070}.regressed{color:#a00}
"""

_SCRIPT = r"""
"use strict";
const DATA = JSON.parse(document.getElementById("pb-data").textContent);
const ROWS = DATA.instances;
const SVGNS = "http://www.w3.org/2000/svg";
function el(tag, attrs, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}
function svg(tag, attrs, text) {
  const e = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}
function fmt(x, d) { return x === null || x === undefined ? "" : Number(x).toFixed(d); }
function short(text) { return text.length > 160 ? text.slice(0, 160) + "\u2026" : text; }
function signed(x) { return (x >= 0 ? "+" : "") + Number(x).toFixed(4); }

function summary() {
  const s = DATA.summary || {};
  const box = document.getElementById("summary");
  const dl = el("dl");
  const items = [
    ["instances", s.n_instances, "n-instances"], ["items", s.n_items, "n-items"],
    ["mean score", fmt(s.mean_score, 4), "mean-score"],
    ["resolved", s.resolved, "n-resolved"], ["almost (>= 0.95)", s.almost, "n-almost"],
    ["partial", s.partial, "n-partial"], ["zero", s.zero, "n-zero"], ["errors", s.error, "n-error"],
  ];
  if (s.mean_gold_score !== undefined) {
    items.push(["mean gold score (vs the reference here)", fmt(s.mean_gold_score, 4), "mean-gold-score"]);
  }
  if (DATA.run_dir) items.push(["run directory", DATA.run_dir, "run-dir"]);
  for (const [k, v, id] of items) { dl.append(el("dt", {}, k), el("dd", {id: id}, String(v))); }
  box.append(el("h2", {}, "Summary"), dl,
    el("p", {}, "Errors count as score 0 in the mean (the official rule)."));
}

function bars(target, groups) {
  const names = Object.keys(groups || {});
  const w = 360, rowH = 22, left = 80, h = rowH * names.length + 24;
  const s = svg("svg", {width: w, height: h, role: "img", "class": "bars"});
  s.append(svg("line", {x1: left, y1: 0, x2: left, y2: h - 20, stroke: "#999"}));
  names.forEach((name, i) => {
    const v = groups[name].mean_score, y = i * rowH + 2;
    s.append(svg("text", {x: left - 6, y: y + 14, "text-anchor": "end"}, name));
    s.append(svg("rect", {x: left, y: y, width: Math.max(0, v * (w - left - 60)), height: rowH - 6,
      fill: "#4a7bd0", "data-name": name, "data-value": v}));
    s.append(svg("text", {x: left + v * (w - left - 60) + 4, y: y + 14},
      fmt(v, 3) + " (" + groups[name].instances + ")"));
  });
  document.getElementById(target).append(s);
}

function histogram() {
  const bins = new Array(10).fill(0);
  for (const r of ROWS) bins[Math.min(9, Math.floor(r.score * 10))] += 1;
  const w = 360, h = 160, pad = 24, bw = (w - 2 * pad) / 10, top = Math.max(1, ...bins);
  const s = svg("svg", {width: w, height: h + 20, role: "img", "class": "histogram"});
  bins.forEach((n, i) => {
    const bh = (h - pad) * n / top;
    s.append(svg("rect", {x: pad + i * bw, y: h - bh, width: bw - 2, height: bh, fill: "#4a7bd0",
      "data-bin": i, "data-value": n}));
    if (n) s.append(svg("text", {x: pad + i * bw + bw / 2, y: h - bh - 3, "text-anchor": "middle"}, n));
    s.append(svg("text", {x: pad + i * bw, y: h + 14}, (i / 10).toFixed(1)));
  });
  document.getElementById("chart-histogram").append(s);
}

function scatter(target, figure, key) {
  const pts = ROWS.filter(r => r[key] !== null && r[key] !== undefined && r[key] > 0);
  if (!pts.length) { document.getElementById(figure).hidden = true; return; }
  const w = 360, h = 180, pad = 34, top = Math.max(...pts.map(r => r[key]));
  const s = svg("svg", {width: w, height: h + 20, role: "img", "class": "scatter"});
  s.append(svg("line", {x1: pad, y1: h, x2: w - 8, y2: h, stroke: "#999"}));
  s.append(svg("line", {x1: pad, y1: 8, x2: pad, y2: h, stroke: "#999"}));
  s.append(svg("text", {x: pad, y: h + 14}, "0"));
  s.append(svg("text", {x: w - 8, y: h + 14, "text-anchor": "end"}, fmt(top, 2)));
  s.append(svg("text", {x: pad - 4, y: 14, "text-anchor": "end"}, "1"));
  for (const r of pts) {
    const c = svg("circle", {cx: pad + (w - pad - 8) * r[key] / top, cy: h - (h - 8) * r.score, r: 3.5,
      fill: "#d0694a", "fill-opacity": 0.7, "data-value": r[key]});
    const label = r.instance_id + ": score " + fmt(r.score, 2) + ", " + key + " " + fmt(r[key], 2);
    c.append(svg("title", {}, label));
    s.append(c);
  }
  document.getElementById(target).append(s);
}

function comparison() {
  const c = DATA.comparison;
  if (!c) return;
  const box = document.getElementById("comparison");
  box.append(el("h2", {}, "Comparison with " + c.source));
  const ci = c.ci && c.ci.low !== null
    ? " (" + Math.round(c.ci.confidence * 100) + "% CI [" + signed(c.ci.low) + ", " + signed(c.ci.high) +
      "], " + c.ci.method + ", " + c.ci.resamples + " resamples, seed " + c.ci.seed + ")" : "";
  box.append(el("p", {id: "compare-mean"}, "Mean score " + fmt(c.mean_then, 4) + " \u2192 " +
    fmt(c.mean_now, 4) + " over " + c.paired + " instance(s) in both: delta "));
  box.lastChild.append(el("strong", {id: "compare-delta"}, signed(c.mean_delta)), ci);
  const k = c.counts;
  if (c.gold) {
    box.append(el("p", {id: "compare-gold"}, "Gold score " + fmt(c.gold.mean_then, 4) + " \u2192 " +
      fmt(c.gold.mean_now, 4) + " over " + c.gold.paired + " instance(s) measured against the gold mask: " +
      "delta " + signed(c.gold.mean_delta)));
  }
  box.append(el("p", {id: "compare-counts"}, "improved " + k.improved + ", regressed " + k.regressed +
    ", same " + k.same + ", new " + k.new + ", gone " + k.gone + "; resolved gained " +
    c.resolved_gained.length + ", lost " + c.resolved_lost.length));
  const t = el("table", {id: "compare-table"});
  const head = el("tr");
  for (const h of ["instance", "language", "difficulty", "then", "now", "delta", "status", "tests now pass",
                   "tests now fail"]) head.append(el("th", {}, h));
  t.append(el("thead"));
  t.firstChild.append(head);
  const body = el("tbody");
  for (const i of c.instances) {
    const f = c.flipped[i.instance_id] || {};
    const tr = el("tr", {"class": i.status});
    const delta = i.delta === undefined ? "" : signed(i.delta);
    for (const v of [i.instance_id, i.language, i.difficulty, fmt(i.then, 3), fmt(i.now, 3), delta, i.status,
                     f.now_pass || "", f.now_fail || ""])
      tr.append(el("td", {}, String(v)));
    body.append(tr);
  }
  t.append(body);
  box.append(t);
}

const COLUMNS = [
  ["instance", r => r.instance_id], ["attempt", r => r.attempt], ["language", r => r.language],
  ["difficulty", r => r.difficulty], ["score", r => r.score, 3], ["passed", r => r.n_resolved],
  ["tests", r => r.n_tests], ["not passed", r => r.hidden_counts ? r.n_tests - r.n_resolved : null],
  ["outcome", r => r.outcome], ["cost $", r => r.agent_cost, 2], ["time s", r => r.seconds, 1],
  ["reason", r => short(r.reason || r.message || r.error_code || "")],
];
// --pb-gold-mask: the gold score beside the official one (which stays first: the headline).
if (ROWS.some(r => r.gold_score !== undefined && r.gold_score !== null)) {
  COLUMNS.splice(5, 0, ["gold score", r => r.gold_score, 3]);
}
let sortColumn = 0, sortAscending = true;

function table() {
  const head = document.querySelector("#table thead");
  const tr = el("tr");
  COLUMNS.forEach(([name], i) => {
    const th = el("th", {"data-column": i}, name);
    th.addEventListener("click", () => {
      sortAscending = sortColumn === i ? !sortAscending : true;
      sortColumn = i;
      fill();
    });
    tr.append(th);
  });
  tr.append(el("th", {}, "files"));
  head.append(tr);
  document.getElementById("filter").addEventListener("input", fill);
  fill();
}

function fill() {
  const needle = document.getElementById("filter").value.trim().toLowerCase();
  const get = COLUMNS[sortColumn][1];
  const rows = ROWS.filter(r => !needle || [r.instance_id, r.language, r.difficulty, r.outcome]
    .some(v => String(v).toLowerCase().includes(needle)));
  rows.sort((a, b) => {
    const x = get(a), y = get(b);
    const cmp = (x === null || x === undefined) - (y === null || y === undefined) ||
      (typeof x === "number" && typeof y === "number" ? x - y : String(x).localeCompare(String(y)));
    return sortAscending ? cmp : -cmp;
  });
  const body = document.querySelector("#table tbody");
  body.replaceChildren();
  for (const r of rows) {
    const tr = el("tr", {"class": r.outcome, "data-instance": r.instance_id});
    for (const [name, get, digits] of COLUMNS) {
      const v = get(r);
      const text = v === null || v === undefined ? "" : digits !== undefined ? fmt(v, digits) : String(v);
      const cls = typeof v === "number" ? "num" : name === "outcome" ? "outcome" : "";
      tr.append(el("td", {"class": cls}, text));
    }
    const files = el("td");
    for (const [k, href] of Object.entries(r.links || {})) {
      files.append(el("a", {href: href}, k === "eval_json" ? "eval.json" : k), " ");
    }
    tr.append(files);
    body.append(tr);
  }
  document.getElementById("shown").textContent = rows.length + " of " + ROWS.length + " shown";
}

summary();
bars("chart-language", (DATA.summary || {}).by_language);
bars("chart-difficulty", (DATA.summary || {}).by_difficulty);
histogram();
scatter("chart-cost", "fig-cost", "agent_cost");
scatter("chart-time", "fig-time", "seconds");
comparison();
table();
"""
