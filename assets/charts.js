// Draws the overview's charts from the figures the page embeds (#stats), with uPlot.
(function () {
  "use strict";
  var source = document.getElementById("stats");
  if (!source || typeof uPlot === "undefined") { return; }
  var data = JSON.parse(source.textContent);
  var xs = data.times;

  function draw(id, series, values, axes) {
    var el = document.getElementById(id);
    if (!el) { return; }
    var width = Math.max(320, (el.clientWidth || 600) - 16);
    var opts = {
      width: width,
      height: 220,
      series: [{}].concat(series),
      axes: [{}].concat(axes || [{}])
    };
    new uPlot(opts, [xs].concat(values), el);
  }

  draw("chart-requests", [
    { label: "started", stroke: "#0b5cad", width: 2 },
    { label: "verified", stroke: "#1a7f37", width: 2 },
    { label: "conversion %", stroke: "#9a6700", dash: [6, 4], scale: "%" }
  ], [data.started, data.verified, data.conversion],
  [{}, { scale: "%", side: 1, grid: { show: false } }]);

  draw("chart-delivery", [
    { label: "delivered", stroke: "#1a7f37", width: 2 },
    { label: "failed", stroke: "#cf222e", width: 2 }
  ], [data.delivered, data.failed]);

  draw("chart-latency", [
    { label: "median", stroke: "#0b5cad", width: 2 },
    { label: "90th percentile", stroke: "#8250df", width: 2 }
  ], [data.latency_p50, data.latency_p90]);

  draw("chart-blocks", [
    { label: "blocks", stroke: "#cf222e", width: 2 }
  ], [data.blocks]);
})();
