// Triggers page: each trigger's chart of invocations by outcome and the share that did not
// succeed, drawn by uPlot (lib/charts.js) from the range choice's data-series-url
// (dashboard.charts.trigger_series) and refetched every 15 s. The table itself is the server's.
//
// The page loads this as a classic script (<script defer>), after uPlot's; the shared parts are
// ES modules in lib/, loaded with import(), which resolves them against this file's URL.
"use strict";

(async function () {
  const control = document.getElementById("chart-ranges");
  if (!control) return;
  const { chartsLive, perStep } = await import("./lib/charts.js");
  // One colour per outcome (workers.models.Outcome), the rest grey.
  const COLOURS = {
    success: "#2f8f4e",
    function_error: "#c43d3d",
    timeout: "#d49a14",
    partial_failure: "#8a4fb8",
    discarded: "#56607a",
  };

  chartsLive({
    control,
    specs: {
      invocations: {
        item: (data, id) => data.triggers.find((trigger) => trigger.id === id),
        scales: [{ name: "n" }, { name: "%", unit: "%", range: [0, 100] }],
        series: (data, trigger) => [
          ...data.outcomes.map(([outcome, label]) => ({
            label: `${label} ${perStep(data)}`,
            stroke: COLOURS[outcome] || "#9aa3b5",
            values: trigger.invocations[outcome],
          })),
          {
            label: "Did not succeed",
            scale: "%",
            unit: "%",
            stroke: "#c43d3d",
            dash: [4, 4],
            points: true,
            values: trigger.error_rate.map((rate) => (rate === null ? null : rate * 100)),
          },
        ],
      },
    },
  });
})();
