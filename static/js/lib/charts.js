// Time-series charts drawn with uPlot, for the pages that have them (the Streams overview and
// the Triggers page). uPlot is the pinned npm package's uPlot.iife.min.js, served as a static
// file (config/settings.py, STATICFILES_DIRS) and loaded by the page before its own script;
// it defines window.uPlot.
//
// The range choice (templates/dashboard/_chart_ranges.html) carries the series URL, the range
// shown and the refresh interval in data-* attributes. Every element with data-chart="<kind>"
// and data-id="<id>" on the page is a chart box; the page says in `specs[kind]` what to draw in
// it from the JSON (dashboard.charts). Series are refetched every data-refresh-ms and at once on
// a range click, which also sets ?range= in the page's URL; a hidden tab does not fetch.
// Counters are null in the step still running (dashboard.charts): their line ends at the last
// complete step rather than dropping toward 0. After each drawing the range choice gets
// data-drawn-range (the range the charts show) and fires "charts:drawn".
//
// specs[kind] = {
//   item(data, id): the source or trigger of the JSON the box with that data-id draws, or none;
//   scales: [{name, unit, range}]: the y scales, the first on the left, a second on the right
//     (range [min, max] fixed, else from 0 to the highest value);
//   series(data, item): [{label, values (one per data.times, null for a gap), stroke, fill,
//     scale (a name from scales, default "n"), unit, dash, points (draw each value's point)}],
// }
//
// Names in legends come from the page's own words, never from item data.

function stepText(seconds) {
  return seconds === 60 ? "minute" : `${seconds / 60} minutes`;
}

// "per minute", "per 5 minutes": what each point of a counter adds up.
export function perStep(data) {
  return `per ${stepText(data.step_seconds)}`;
}

function utcDate(seconds) {
  return window.uPlot.tzDate(new Date(seconds * 1000), "Etc/UTC");
}

const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

function pad(n) {
  return String(n).padStart(2, "0");
}

// Time ticks in UTC, 24-hour, as the rest of the dashboard writes times; midnight names the day.
function timeTicks(u, splits) {
  return splits.map((seconds) => {
    const date = new Date(seconds * 1000);
    const hours = date.getUTCHours();
    const minutes = date.getUTCMinutes();
    if (hours === 0 && minutes === 0) return `${MONTHS[date.getUTCMonth()]} ${date.getUTCDate()}`;
    return `${pad(hours)}:${pad(minutes)}`;
  });
}

function valueText(value, unit) {
  if (value === null || value === undefined) return "—";
  const rounded = Math.abs(value) >= 100 ? Math.round(value) : Math.round(value * 10) / 10;
  return unit ? `${rounded} ${unit}` : String(rounded);
}

function chartOptions(spec, drawn, width) {
  const scales = { x: { time: true } };
  const axes = [{ stroke: "#56607a", grid: { stroke: "#eceff4" }, ticks: { stroke: "#dde2ea" }, space: 60, values: timeTicks }];
  for (const [index, scale] of (spec.scales || [{ name: "n" }]).entries()) {
    scales[scale.name] = scale.range ? { range: scale.range } : { range: (u, min, max) => [0, Math.max(1, max)] };
    axes.push({
      scale: scale.name,
      side: index === 0 ? 3 : 1, // the first scale on the left, a second one on the right
      size: 60,
      stroke: "#56607a",
      grid: index === 0 ? { stroke: "#eceff4" } : { show: false },
      ticks: { stroke: "#dde2ea" },
      values: (u, splits) => splits.map((value) => valueText(value, scale.unit)),
    });
  }
  return {
    width,
    height: spec.height || 150,
    tzDate: utcDate,
    scales,
    axes,
    cursor: { drag: { x: false, y: false } },
    series: [
      { label: "UTC", value: "{YYYY}-{MM}-{DD} {HH}:{mm}" },
      ...drawn.map((series) => ({
        label: series.label,
        scale: series.scale || "n",
        stroke: series.stroke,
        fill: series.fill,
        width: 1.5,
        dash: series.dash,
        // A gauge with no sample in a step is a gap in the line, not a zero.
        spanGaps: false,
        // Points only where asked: a lone value between gaps draws no line.
        points: { show: Boolean(series.points), size: 4 },
        value: (u, value) => valueText(value, series.unit),
      })),
    ],
  };
}

export function chartsLive({ control, specs }) {
  const uPlot = window.uPlot;
  const url = new URL(control.dataset.seriesUrl, window.location.href);
  const refreshMs = Math.max(5000, Number(control.dataset.refreshMs) || 15000);
  const buttons = Array.from(control.querySelectorAll("button[data-range]"));
  let range = control.dataset.range;
  let data = null;
  let timer = null;
  let stopped = false;
  let asked = 0;
  let lastMissing = "";
  // box element -> {plot, key}: key is what the chart was built for (its labels name the step).
  const charts = new Map();
  const resizes = new ResizeObserver((entries) => {
    for (const entry of entries) {
      const chart = charts.get(entry.target);
      const width = Math.floor(entry.contentRect.width);
      if (chart && width > 0 && width !== chart.plot.width) chart.plot.setSize({ width, height: chart.plot.height });
    }
  });

  function forget(box) {
    charts.get(box).plot.destroy();
    charts.delete(box);
    resizes.unobserve(box);
  }

  function draw() {
    if (!data) return;
    for (const box of Array.from(charts.keys())) {
      if (!box.isConnected) forget(box);
    }
    const missing = [];
    for (const box of document.querySelectorAll("[data-chart]")) {
      const spec = specs[box.dataset.chart];
      const item = spec && spec.item(data, Number(box.dataset.id));
      if (!item) {
        missing.push(`${box.dataset.chart}-${box.dataset.id}`);
        continue;
      }
      const drawn = spec.series(data, item);
      const columns = [data.times, ...drawn.map((series) => series.values)];
      const key = drawn.map((series) => series.label).join("\n");
      const chart = charts.get(box);
      if (chart && chart.key === key) {
        chart.plot.setData(columns);
        continue;
      }
      if (chart) forget(box);
      const plot = new uPlot(chartOptions(spec, drawn, Math.max(200, box.clientWidth)), columns, box);
      charts.set(box, { plot, key });
      resizes.observe(box);
    }
    control.dataset.drawnRange = data.range;
    control.dispatchEvent(new CustomEvent("charts:drawn"));
    // A box the page added since the last fetch (a new source): fetch now rather than at the
    // next refresh, once for each set of such boxes, so one that never comes costs one fetch.
    const wanted = missing.join(" ");
    if (wanted && wanted !== lastMissing) refresh();
    lastMissing = wanted;
  }

  function schedule() {
    clearTimeout(timer);
    timer = stopped || document.hidden ? null : setTimeout(refresh, refreshMs);
  }

  async function refresh() {
    const mine = ++asked;
    url.searchParams.set("range", range);
    try {
      const response = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin", cache: "no-store" });
      if (response.status === 401 || response.status === 403) {
        stopped = true;
        return;
      }
      if (!response.ok) throw new Error(`the server answered ${response.status}`);
      const body = await response.json();
      // A click on another range while this was on its way: its own fetch draws.
      if (mine !== asked) return;
      data = body;
      draw();
    } catch (error) {
      // The charts keep what they show; the next refresh tries again.
      console.warn(`charts: ${error.message}`);
    } finally {
      if (mine === asked) schedule();
    }
  }

  for (const button of buttons) {
    button.addEventListener("click", () => {
      range = button.dataset.range;
      control.dataset.range = range;
      for (const other of buttons) other.setAttribute("aria-pressed", String(other === button));
      // The page's own URL keeps the choice (?range=), so a reload or a copied link opens at
      // it: the server renders the pressed button from it (dashboard.views._chart_ranges).
      const pageUrl = new URL(window.location.href);
      pageUrl.searchParams.set("range", range);
      window.history.replaceState(window.history.state, "", pageUrl);
      refresh();
    });
  }
  document.addEventListener("visibilitychange", () => {
    if (document.hidden) {
      clearTimeout(timer);
      timer = null;
    } else if (timer === null && !stopped) {
      refresh();
    }
  });
  refresh();
  // The page calls this when it adds chart boxes (the overview's refresh adds new sources').
  return { draw };
}
