// Draws a meshctl rollout timeline (the JSON of meshctl.domain.timeline.Timeline) with
// uPlot: one chart of the canary weight written and observed, one chart per SLO metric with
// its threshold; steps, verdicts, human actions and events are vertical marks on each.
// Used by the dashboard (live: update() swaps the data, no reload) and the HTML report.
(function () {
  "use strict";

  var MARK_COLORS = {step: "#8c959f", verdict: "#8250df", action: "#bf8700", gate: "#0969da",
                     event: "#57606a"};

  function marksPlugin(getMarks) {
    return {hooks: {draw: [function (u) {
      var ctx = u.ctx, box = u.bbox;
      ctx.save();
      getMarks().forEach(function (m) {
        var x = Math.round(u.valToPos(m.at, "x", true));
        if (x < box.left || x > box.left + box.width) return;
        ctx.strokeStyle = m.kind !== "action" && m.warning ? "#cf222e" : (MARK_COLORS[m.kind] || "#57606a");
        ctx.lineWidth = m.kind === "action" ? 2 : 1;
        ctx.setLineDash(m.kind === "step" ? [4, 4] : []);
        ctx.beginPath();
        ctx.moveTo(x, box.top);
        ctx.lineTo(x, box.top + box.height);
        ctx.stroke();
      });
      ctx.restore();
    }]}};
  }

  function column(points, i) { return points.map(function (p) { return p[i]; }); }

  // Aligns several [[t, value], ...] lines on one x axis (nulls where a line has no point).
  function aligned(lines) {
    var tables = lines.map(function (pts) { return [column(pts, 0), column(pts, 1)]; });
    var nonEmpty = tables.filter(function (t) { return t[0].length; });
    if (!nonEmpty.length) return [[]].concat(lines.map(function () { return []; }));
    var joined = uPlot.join(tables.map(function (t) { return t[0].length ? t : [[], []]; }));
    return joined;
  }

  function weightData(t) { return aligned([t.written, t.observed]); }

  // The metric's points, and its threshold drawn across the whole span.
  function metricData(m, s) {
    var xs = column(m.points, 0), ys = column(m.points, 1);
    if (s && (!xs.length || s[0] < xs[0])) { xs.unshift(s[0]); ys.unshift(null); }
    if (s && s[1] > xs[xs.length - 1]) { xs.push(s[1]); ys.push(null); }
    var limit = xs.map(function () { return m.threshold; });
    return [xs, ys, limit];
  }

  // The span of everything in the timeline: every chart shares it, so marks line up.
  function span(t) {
    var all = [];
    [t.written, t.observed].concat(t.metrics.map(function (m) { return m.points; }))
      .forEach(function (pts) { pts.forEach(function (p) { all.push(p[0]); }); });
    t.marks.forEach(function (m) { all.push(m.at); });
    if (!all.length) return null;
    var lo = Math.min.apply(null, all), hi = Math.max.apply(null, all);
    return hi > lo ? [lo, hi] : [lo - 1, hi + 1];
  }

  function size(el) { return {width: Math.max(320, el.clientWidth || 800), height: 220}; }

  function chart(el, title, series, data, getMarks, yRange, getSpan, yValues) {
    var box = document.createElement("div");
    box.className = "chart";
    el.appendChild(box);
    var opts = Object.assign(size(box), {
      title: title,
      scales: {x: {time: true, range: function (u, lo, hi) { return getSpan() || [lo, hi]; }},
               y: yRange ? {range: yRange} : {}},
      series: [{}].concat(series),
      plugins: [marksPlugin(getMarks)],
      legend: {live: false},
    });
    if (yValues) opts.axes = [{}, {values: yValues, size: 80}];
    return new uPlot(opts, data, box);
  }

  function isRatio(name) {
    return name.indexOf("availability") >= 0 || name.indexOf("error") >= 0;
  }

  // Ratios near 1 read as percentages with enough digits to tell 99.9% from 99.95%.
  function percent(u, splits) {
    return splits.map(function (v) { return v === null ? "" : (v * 100).toFixed(3) + "%"; });
  }

  function unitOf(name) {
    if (name.indexOf("latency") >= 0) return " (ms)";
    if (isRatio(name)) return " (%)";
    return "";
  }

  function render(el, timeline) {
    var state = {timeline: timeline};
    var getMarks = function () { return state.timeline.marks; };
    var getSpan = function () { return span(state.timeline); };
    el.innerHTML = "";
    var weights = chart(el, "Canary weight (%)", [
      {label: "written", stroke: "#1f6feb", width: 2, paths: uPlot.paths.stepped({align: 1}),
       spanGaps: true},
      {label: "observed", stroke: "#2da44e", width: 2, dash: [6, 3],
       paths: uPlot.paths.stepped({align: 1}), spanGaps: false, points: {show: true}},
    ], weightData(timeline), getMarks, [0, 100], getSpan);
    var metrics = {};
    timeline.metrics.forEach(function (m) {
      metrics[m.name] = chart(el, m.name + unitOf(m.name), [
        {label: m.name, stroke: "#0969da", width: 2, spanGaps: true, points: {show: true}},
        {label: "threshold " + (m.thresholdText || ""), stroke: "#cf222e", dash: [8, 4],
         points: {show: false}},
      ], metricData(m, span(timeline)), getMarks, null, getSpan, isRatio(m.name) ? percent : null);
    });
    var out = {
      weights: weights, metrics: metrics,
      update: function (next) {
        state.timeline = next;
        var names = next.metrics.map(function (m) { return m.name; }).join(",");
        if (names !== Object.keys(metrics).sort().join(",")) {
          var fresh = render(el, next);  // a metric appeared: draw anew
          out.weights = fresh.weights; out.metrics = fresh.metrics; out.update = fresh.update;
          return;
        }
        weights.setData(weightData(next));
        next.metrics.forEach(function (m) { metrics[m.name].setData(metricData(m, span(next))); });
      },
    };
    return out;
  }

  // A report: the timelines in #timelines, each drawn into #charts-<index>.
  function renderReport() {
    var all = JSON.parse(document.getElementById("timelines").textContent);
    return all.map(function (t, i) { return render(document.getElementById("charts-" + i), t); });
  }

  window.MeshctlTimeline = {render: render, renderReport: renderReport};
})();
