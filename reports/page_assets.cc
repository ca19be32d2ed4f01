// The pages' inline stylesheet and script. The script draws the memory chart as SVG markup
// (parsed by the HTML parser, so the page names no namespace URL and loads nothing).
#include "reports/timeline.h"

namespace vramsim::report_internal {

const char* const kReportCss = R"CSS(
:root { --fg: #1f2328; --muted: #656d76; --line: #d0d7de; --bg: #f6f8fa; --card: #fff;
  --peak: #cf222e; }
* { box-sizing: border-box; }
body { margin: 0; padding: 22px 30px 36px; background: var(--bg); color: var(--fg);
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial,
  sans-serif; }
header { margin: 0 0 14px; }
h1 { font-size: 24px; margin: 0 0 4px; display: flex; align-items: center; gap: 12px;
  flex-wrap: wrap; }
.model { word-break: break-all; }
.peakbadge { background: var(--peak); color: #fff; border-radius: 999px; padding: 2px 12px;
  font-size: 16px; font-weight: 600; white-space: nowrap; }
.summary { margin: 0 0 4px; color: var(--muted); font-size: 15px; }
.peakline { margin: 0; }
code, .mono, .name { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas,
  "DejaVu Sans Mono", "Liberation Mono", monospace; font-size: 12.5px; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 8px;
  padding: 14px 20px 16px; margin: 0 0 16px; }
h2 { font-size: 17px; margin: 0 0 2px; }
.note { color: var(--muted); margin: 0 0 10px; font-size: 13px; }
.muted { color: var(--muted); }
.chart { width: 100%; min-height: 420px; }
.chart-svg { display: block; font-size: 12px; }
.phase-label { fill: #57606a; font-size: 11.5px; font-weight: 600; letter-spacing: .06em;
  text-transform: uppercase; }
.grid line { stroke: #000; stroke-opacity: .09; }
.axis line { stroke: #57606a; }
.ylab, .xlab { fill: #57606a; font-variant-numeric: tabular-nums; }
.axis-title { fill: #57606a; font-size: 12px; }
.area { stroke: #fff; stroke-width: .4; stroke-opacity: .6; }
.total-line { fill: none; stroke: #1f2328; stroke-width: 1.2; stroke-opacity: .75; }
.peak-line { stroke: var(--peak); stroke-width: 1.5; stroke-dasharray: 5 4; }
.peak-dot { fill: var(--peak); stroke: #fff; stroke-width: 2; }
.peak-label { fill: var(--peak); font-weight: 700; font-size: 13px; paint-order: stroke;
  stroke: #fff; stroke-width: 4px; stroke-linejoin: round; }
.cursor { stroke: #1f2328; stroke-opacity: .55; pointer-events: none; }
.tip { position: absolute; z-index: 10; background: #fff; border: 1px solid var(--line);
  border-radius: 6px; box-shadow: 0 4px 14px rgba(0, 0, 0, .12); padding: 8px 10px;
  font-size: 12.5px; pointer-events: none; max-width: 440px; }
.tip table { border-collapse: collapse; margin-top: 4px; }
.tip td { padding: 1px 8px 1px 0; }
.legend { display: flex; flex-wrap: wrap; gap: 6px 22px; margin-top: 8px; }
.key { display: flex; align-items: center; gap: 6px; }
.swatch { width: 12px; height: 12px; border-radius: 3px; display: inline-block; }
.swatch.band { border: 1px solid #c9ced6; }
.legend.phases { margin-top: 4px; font-size: 13px; }
.small { font-size: 12px; }
td.made { min-width: 160px; max-width: 280px; overflow-wrap: anywhere; }
.kname { font-weight: 600; }
.kval { font-variant-numeric: tabular-nums; }
.scroll { max-height: 560px; overflow: auto; border: 1px solid var(--line); border-radius: 6px; }
table.data { border-collapse: collapse; width: 100%; font-size: 13px; }
table.data th { position: sticky; top: 0; z-index: 1; background: #f6f8fa; text-align: left;
  font-weight: 600; border-bottom: 1px solid var(--line); padding: 6px 10px; }
table.data td { padding: 4px 10px; border-bottom: 1px solid #eaeef2; vertical-align: top; }
table.data tbody tr:nth-child(even) { background: #fafbfc; }
table.data tbody tr:hover { background: #eef5ff; }
.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
th.num { text-align: right; }
td.name { overflow-wrap: anywhere; min-width: 180px; max-width: 400px; }
td.wrap { overflow-wrap: anywhere; min-width: 110px; }
td.why { overflow-wrap: anywhere; min-width: 160px; }
td.nowrap { white-space: nowrap; }
.cat { display: inline-flex; align-items: center; gap: 5px; white-space: nowrap; }
.cat::before { content: ""; width: 10px; height: 10px; border-radius: 2px; background: var(--c); }
.minibar { display: flex; height: 12px; margin-top: 3px; border-radius: 2px; overflow: hidden; }
.minibar span { display: block; height: 100%; }
.barcol { width: 240px; min-width: 160px; }
tr.rest td { color: var(--muted); font-style: italic; }
.fit-no { color: var(--peak); }
.scatter { display: block; font-size: 12px; max-width: 100%; height: auto; }
.scatter .pt { stroke-width: 2; }
.scatter .series { fill: none; stroke-width: 1.5; stroke-opacity: .55; }
footer { color: var(--muted); font-size: 12px; margin-top: 6px; }
)CSS";

const char* const kReportJs = R"JS(
(function () {
  'use strict';
  var island = document.getElementById('vramsim-data');
  var host = document.getElementById('chart');
  var tip = document.getElementById('tip');
  if (!island || !host) return;
  var data = JSON.parse(island.textContent);
  var ENT = {'&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;'};
  function esc(s) { return String(s).replace(/[&<>"']/g, function (c) { return ENT[c]; }); }
  var UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  function fmtBytes(b) {
    if (b < 1024) return b + ' B';
    var u = 0;
    while (b >= 1024 && u < UNITS.length - 1) { b /= 1024; u++; }
    return b.toFixed(2) + ' ' + UNITS[u];
  }
  function niceStep(range, count) {
    var raw = range / count;
    var mag = Math.pow(10, Math.floor(Math.log10(raw)));
    var f = raw / mag;
    return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 2.5 ? 2.5 : f <= 5 ? 5 : 10) * mag;
  }
  function r1(v) { return Math.round(v * 10) / 10; }
  function attrs(o) {
    var s = '';
    for (var k in o) s += ' ' + k + '="' + esc(o[k]) + '"';
    return s;
  }
  function clip(s, n) { s = String(s); return s.length > n ? s.slice(0, n - 1) + '\u2026' : s; }

  var pts = data.points, labels = data.labels, cats = data.categories;
  var N = Math.max(1, data.steps);
  var totals = pts.map(function (p) {
    var t = 0;
    for (var k = 1; k < p.length; k++) t += p[k];
    return t;
  });

  function render() {
    if (!pts.length) {
      host.innerHTML = '<p class="note">This trace has no steps.</p>';
      return;
    }
    var W = Math.max(640, Math.floor(host.clientWidth || 1200)), H = 420;
    var m = {l: 80, r: 30, t: 40, b: 48};
    var iw = W - m.l - m.r, ih = H - m.t - m.b;
    var top = Math.max(1, data.peak ? data.peak.bytes : 0, Math.max.apply(null, totals));
    var unit = 1, ui = 0;
    while (ui < UNITS.length - 1 && top * 1.12 >= unit * 1024) { unit *= 1024; ui++; }
    var ystep = niceStep(top * 1.12 / unit, 5) * unit;
    var ymax = Math.ceil(top * 1.12 / ystep) * ystep;
    function X(s) { return r1(m.l + s / N * iw); }
    function Y(v) { return r1(m.t + ih - v / ymax * ih); }
    var o = [];
    o.push('<svg' + attrs({id: 'chart-svg', 'class': 'chart-svg', width: W, height: H,
      viewBox: '0 0 ' + W + ' ' + H, role: 'img',
      'aria-label': 'live memory over the training step of ' + data.model}) + '>');

    o.push('<g class="phases">');
    data.phases.forEach(function (p) {
      var x0 = X(p[1]), x1 = X(p[2]);
      o.push('<rect' + attrs({'class': 'band', fill: data.phase_colors[p[0]] || '#eee', x: x0, y: m.t,
        width: Math.max(r1(x1 - x0), 0.5), height: ih}) + '><title>' +
        esc(p[0] + ': steps ' + p[1] + '\u2013' + (p[2] - 1)) + '</title></rect>');
      if (x1 - x0 >= 8 * p[0].length + 10) {
        o.push('<text' + attrs({'class': 'phase-label', x: r1((x0 + x1) / 2), y: m.t - 10,
          'text-anchor': 'middle'}) + '>' + esc(p[0]) + '</text>');
      }
    });
    o.push('</g>');

    o.push('<g class="grid">');
    for (var v = 0; v <= ymax + ystep / 2; v += ystep) {
      var y = Y(v);
      o.push('<line' + attrs({x1: m.l, x2: m.l + iw, y1: y, y2: y}) + '/>');
      o.push('<text' + attrs({'class': 'ylab', x: m.l - 8, y: y, dy: '0.32em',
        'text-anchor': 'end'}) + '>' + (v === 0 ? '0' : +(v / unit).toFixed(2) + ' ' +
        UNITS[ui]) + '</text>');
    }
    var xstep = Math.max(1, niceStep(N, 10));
    for (var s = 0; s <= N; s += xstep) {
      o.push('<text' + attrs({'class': 'xlab', x: X(s), y: m.t + ih + 18,
        'text-anchor': 'middle'}) + '>' + Math.round(s) + '</text>');
    }
    o.push('</g>');

    // Stacked areas; the first and last points stretch to the ends of their steps.
    var n = pts.length;
    var xs = [X(pts[0][0])];
    for (var i = 0; i < n; i++) xs.push(X(pts[i][0] + 0.5));
    xs.push(X(pts[n - 1][0] + 1));
    function ext(a) { return [a[0]].concat(a, [a[a.length - 1]]); }
    var cum = pts.map(function () { return 0; });
    o.push('<g class="areas">');
    data.stack.forEach(function (c) {
      var lower = ext(cum), any = false;
      for (var i = 0; i < n; i++) {
        cum[i] += pts[i][c + 1];
        if (pts[i][c + 1] > 0) any = true;
      }
      if (!any) return;
      var upper = ext(cum), d = 'M' + xs[0] + ',' + Y(upper[0]);
      for (var j = 1; j < xs.length; j++) d += 'L' + xs[j] + ',' + Y(upper[j]);
      for (j = xs.length - 1; j >= 0; j--) d += 'L' + xs[j] + ',' + Y(lower[j]);
      o.push('<path' + attrs({'class': 'area', 'data-category': cats[c].name,
        fill: cats[c].color, d: d + 'Z'}) + '><title>' + esc(cats[c].name) + '</title></path>');
    });
    var tot = ext(cum), line = 'M' + xs[0] + ',' + Y(tot[0]);
    for (var j = 1; j < xs.length; j++) line += 'L' + xs[j] + ',' + Y(tot[j]);
    o.push('<path' + attrs({'class': 'total-line', d: line}) + '/></g>');

    o.push('<g class="axis"><line' + attrs({x1: m.l, x2: m.l + iw, y1: m.t + ih, y2: m.t + ih}) +
      '/><line' + attrs({x1: m.l, x2: m.l, y1: m.t, y2: m.t + ih}) + '/></g>');
    o.push('<text' + attrs({'class': 'axis-title', x: m.l + iw / 2, y: H - 8,
      'text-anchor': 'middle'}) + '>step (ops in schedule order)</text>');
    o.push('<text' + attrs({'class': 'axis-title', transform: 'rotate(-90)', x: -(m.t + ih / 2),
      y: 16, 'text-anchor': 'middle'}) + '>live memory</text>');

    if (data.peak) {
      var px = X(data.peak.step + 0.5), py = Y(data.peak.bytes);
      var right = px > m.l + iw * 0.6;
      o.push('<g class="peak"><line' + attrs({'class': 'peak-line', x1: px, x2: px, y1: m.t,
        y2: m.t + ih}) + '/><circle' + attrs({'class': 'peak-dot', cx: px, cy: py, r: 5}) + '/>');
      o.push('<text' + attrs({'class': 'peak-label', x: right ? px - 10 : px + 10,
        y: Math.max(m.t + 14, py - 10), 'text-anchor': right ? 'end' : 'start'}) + '>' +
        esc('peak ' + fmtBytes(data.peak.bytes) + ' \u00b7 step ' + data.peak.step + ' \u00b7 ' +
          clip(data.peak.name, 48) + ' (' + data.peak.phase + ')') + '</text></g>');
    }
    o.push('<line' + attrs({'class': 'cursor', x1: 0, x2: 0, y1: m.t, y2: m.t + ih,
      visibility: 'hidden'}) + '/>');
    o.push('</svg>');
    host.innerHTML = o.join('');

    var svg = host.querySelector('svg'), cursor = svg.querySelector('.cursor');
    function hide() { cursor.setAttribute('visibility', 'hidden'); if (tip) tip.hidden = true; }
    svg.addEventListener('mouseleave', hide);
    svg.addEventListener('mousemove', function (ev) {
      var box = svg.getBoundingClientRect();
      var x = (ev.clientX - box.left) * (W / box.width);
      if (x < m.l || x > m.l + iw) { hide(); return; }
      var s = (x - m.l) / iw * N - 0.5, lo = 0, hi = n - 1;
      while (lo < hi) {
        var mid = (lo + hi) >> 1;
        if (pts[mid][0] < s) lo = mid + 1; else hi = mid;
      }
      if (lo > 0 && Math.abs(pts[lo - 1][0] - s) < Math.abs(pts[lo][0] - s)) lo--;
      var p = pts[lo], lab = labels[lo], cx = X(p[0] + 0.5);
      cursor.setAttribute('x1', cx);
      cursor.setAttribute('x2', cx);
      cursor.setAttribute('visibility', 'visible');
      if (!tip) return;
      var rows = '';
      data.stack.slice().reverse().forEach(function (c) {
        if (!p[c + 1]) return;
        rows += '<tr><td><span class="swatch" style="background:' + esc(cats[c].color) +
          '"></span> ' + esc(cats[c].name) + '</td><td class="num">' + fmtBytes(p[c + 1]) +
          '</td></tr>';
      });
      rows += '<tr><td><b>total</b></td><td class="num"><b>' + fmtBytes(totals[lo]) +
        '</b></td></tr>';
      tip.innerHTML = '<b>' + esc(clip(lab[0], 80)) + '</b><div class="muted">' +
        esc(lab[1] + ' \u00b7 ' + lab[2] + ' \u00b7 step ' + p[0]) + '</div>' +
        (lab[3] ? '<div class="muted">' + esc(clip(lab[3], 80)) + '</div>' : '') +
        '<table>' + rows + '</table>';
      tip.hidden = false;
      var left = ev.pageX + 16;
      if (left + tip.offsetWidth > window.scrollX + document.documentElement.clientWidth - 8) {
        left = ev.pageX - 16 - tip.offsetWidth;
      }
      tip.style.left = left + 'px';
      tip.style.top = (ev.pageY + 12) + 'px';
    });
  }

  render();
  var timer = 0;
  window.addEventListener('resize', function () {
    clearTimeout(timer);
    timer = setTimeout(render, 120);
  });
})();
)JS";

}  // namespace vramsim::report_internal
