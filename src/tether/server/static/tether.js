// Tether's UI behaviour: no inline scripts (the CSP forbids them), everything from here.
"use strict";
(function () {
  // A <select data-autosubmit> submits its form when changed (the project switcher).
  document.addEventListener("change", function (e) {
    var el = e.target;
    if (el && el.matches && el.matches("select[data-autosubmit]") && el.form) el.form.submit();
  });

  // A <button data-copy="id"> copies the text of element #id (a new API key) to the
  // clipboard; where the clipboard is not available (plain http off localhost) the text is
  // selected for Ctrl-C instead.
  document.addEventListener("click", function (e) {
    var button = e.target.closest && e.target.closest("button[data-copy]");
    if (!button) return;
    var source = document.getElementById(button.getAttribute("data-copy"));
    if (!source) return;
    var select = function () {
      var range = document.createRange();
      range.selectNodeContents(source);
      var sel = window.getSelection();
      sel.removeAllRanges();
      sel.addRange(range);
      button.textContent = "Selected: press Ctrl-C";
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(source.textContent).then(
        function () { button.textContent = "Copied"; }, select);
    } else {
      select();
    }
  });

  // Trace tree: a toggle shows or hides a span's children (loaded once, by htmx).
  document.addEventListener("click", function (e) {
    var toggle = e.target.closest && e.target.closest("[data-toggle]");
    if (toggle) {
      e.stopPropagation();
      var box = document.getElementById(toggle.getAttribute("data-toggle"));
      if (box) {
        var hidden = box.classList.toggle("collapsed");
        toggle.textContent = hidden ? "▸" : "▾";
        toggle.setAttribute("aria-expanded", hidden ? "false" : "true");
      }
      return;
    }
    var row = e.target.closest && e.target.closest(".span-row");
    if (row) {
      document.querySelectorAll(".span-row.selected").forEach(function (r) { r.classList.remove("selected"); });
      row.classList.add("selected");
    }
  });

  // Charts: <div class="chart" data-chart="name"> drawn with uPlot from the JSON in
  // <script type="application/json" id="metrics-data"> (data, never run).
  function fmt(unit) {
    return function (u, v) {
      if (v == null) return "—";
      if (unit === "usd") return "$" + v.toFixed(v < 0.01 ? 5 : 2);
      if (unit === "ms") return v < 1000 ? v.toFixed(0) + " ms" : (v / 1000).toFixed(1) + " s";
      if (unit === "%") return (v * 100).toFixed(1) + "%";
      return String(Math.round(v * 100) / 100);
    };
  }
  var PALETTE = ["#3056d3", "#12813d", "#c01f28", "#b54708", "#7a2eb8", "#0e7490", "#667085", "#be185d"];
  function drawCharts() {
    var source = document.getElementById("metrics-data");
    if (!source || typeof uPlot === "undefined") return;
    var data = JSON.parse(source.textContent);
    document.querySelectorAll(".chart[data-chart]").forEach(function (el) {
      var chart = data.charts[el.getAttribute("data-chart")];
      if (!chart) return;
      el.textContent = "";
      if (!chart.series.length || !data.times.length) {
        el.textContent = "no runs in this time range";
        el.classList.add("muted");
        return;
      }
      var series = [{}];
      var columns = [data.times];
      chart.series.forEach(function (s, i) {
        series.push({ label: s.label, stroke: PALETTE[i % PALETTE.length], width: 2, value: fmt(chart.unit),
                      spanGaps: false, points: { show: data.times.length < 60 } });
        columns.push(s.values);
      });
      var width = Math.max(el.clientWidth || 440, 320);
      var plot = new uPlot({
        title: chart.title, width: width, height: 220, series: series,
        axes: [{}, { values: function (u, ticks) { return ticks.map(function (t) { return fmt(chart.unit)(u, t); }); }, size: 70 }],
        scales: { x: { time: true } }
      }, columns, el);
      el.setAttribute("data-rendered", "true");
      el._plot = plot;
    });
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", drawCharts);
  else drawCharts();
})();
