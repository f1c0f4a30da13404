// The console's only script: it redraws the overview's charts from
// /console/api/series and reloads a page's live part (?live=1) every few
// seconds. No framework, no build step.
"use strict";

const colors = ["#5fb3f9", "#f0883e", "#3fb950", "#d2a8ff", "#f85149", "#e3b341", "#56d4dd", "#ff7b72"];

function fmt(v) {
  if (v === null || v === undefined) return "—";
  const a = Math.abs(v);
  return a >= 100 ? Math.round(v).toString() : (Math.round(v * 10) / 10).toString();
}

// Charts keeps the samples it was sent and asks only for newer ones.
function startCharts(root) {
  const state = { t: [], charts: {} };
  const interval = Number(root.dataset.interval) || 1000;
  let windowMs = 15 * 60 * 1000;

  function merge(data) {
    windowMs = data.window_ms;
    const old = state.t.length;
    state.t = state.t.concat(data.t);
    for (const c of data.charts) {
      const known = state.charts[c.id] || (state.charts[c.id] = {});
      for (const s of c.series) {
        const prev = known[s.name] || new Array(old).fill(null);
        known[s.name] = prev.concat(s.values);
      }
      for (const name of Object.keys(known)) {
        if (known[name].length < state.t.length) {
          known[name] = known[name].concat(new Array(state.t.length - known[name].length).fill(null));
        }
      }
    }
    const cut = state.t.findIndex((t) => t > state.t[state.t.length - 1] - windowMs);
    if (cut > 0) {
      state.t = state.t.slice(cut);
      for (const id of Object.keys(state.charts)) {
        for (const name of Object.keys(state.charts[id])) state.charts[id][name] = state.charts[id][name].slice(cut);
      }
    }
  }

  function draw() {
    // The x axis spans the window, or the samples so far when fewer.
    const end = state.t.length ? state.t[state.t.length - 1] : Date.now();
    const start = state.t.length ? Math.max(end - windowMs, state.t[0]) : end - windowMs;
    const span = Math.max(end - start, interval);
    for (const fig of root.querySelectorAll("[data-chart]")) {
      const series = state.charts[fig.dataset.chart] || {};
      const names = Object.keys(series);
      let top = 0;
      for (const n of names) for (const v of series[n]) if (v !== null && v > top) top = v;
      top = top > 0 ? top * 1.1 : 1;
      const svg = fig.querySelector("svg");
      const ns = "http://www.w3.org/2000/svg";
      const lines = [];
      for (const y of [50, 99]) {
        const l = document.createElementNS(ns, "line");
        for (const [k, v] of Object.entries({ class: "grid", x1: 0, y1: y, x2: 300, y2: y })) l.setAttribute(k, v);
        lines.push(l);
      }
      names.forEach((n, i) => {
        let pts = "";
        series[n].forEach((v, k) => {
          if (v === null) return;
          const x = ((state.t[k] - start) / span) * 300;
          const y = 100 - (v / top) * 98;
          pts += `${x.toFixed(1)},${y.toFixed(1)} `;
        });
        const p = document.createElementNS(ns, "polyline");
        p.dataset.series = n;
        p.setAttribute("stroke", colors[i % colors.length]);
        p.setAttribute("points", pts);
        lines.push(p);
      });
      svg.replaceChildren(...lines);
      svg.dataset.points = String(state.t.length);
      const legend = fig.querySelector(".legend");
      legend.innerHTML = "";
      names.forEach((n, i) => {
        const vals = series[n];
        const li = document.createElement("li");
        li.style.setProperty("--c", colors[i % colors.length]);
        li.dataset.series = n;
        li.append(n + " ");
        const b = document.createElement("b");
        b.textContent = fmt(vals[vals.length - 1]);
        li.append(b);
        legend.append(li);
      });
      fig.querySelector(".max").textContent = "max " + fmt(top / 1.1);
    }
  }

  async function poll() {
    const since = state.t.length ? state.t[state.t.length - 1] : 0;
    try {
      const r = await fetch(`/console/api/series?since=${since}`, { credentials: "same-origin" });
      if (r.status === 401) { location.href = "/console/login"; return; }
      if (r.ok) { merge(await r.json()); draw(); }
    } catch (e) { /* the next poll tries again */ }
    setTimeout(poll, Math.max(interval, 1000));
  }
  poll();
}

// startLive reloads the page's live part; a form being used holds it.
function startLive(el) {
  async function reload() {
    if (!document.hidden && !el.contains(document.activeElement)) {
      const u = new URL(location.href);
      u.searchParams.set("live", "1");
      try {
        const r = await fetch(u, { credentials: "same-origin" });
        if (r.status === 401) { location.href = "/console/login"; return; }
        if (r.ok) el.innerHTML = await r.text();
      } catch (e) { /* the next reload tries again */ }
    }
    setTimeout(reload, 2000);
  }
  setTimeout(reload, 2000);
}

document.addEventListener("DOMContentLoaded", () => {
  const charts = document.getElementById("charts");
  if (charts) startCharts(charts);
  for (const el of document.querySelectorAll("[data-live]")) startLive(el);
});
