/* CarbonLedger dashboard: figures, live refresh, what-if forms. No framework. */
(function () {
  "use strict";

  var PLOT_CONFIG = { responsive: true, displaylogo: false, modeBarButtonsToRemove: ["lasso2d", "select2d"] };

  function renderFigures(root) {
    (root || document).querySelectorAll("[data-figure]").forEach(function (el) {
      var src = document.getElementById(el.getAttribute("data-figure"));
      if (!src || !window.Plotly) { return; }
      var fig = JSON.parse(src.textContent);
      window.Plotly.newPlot(el, fig.data, fig.layout, PLOT_CONFIG);
    });
  }

  // --- formatting -------------------------------------------------------------------------
  function fmt(value, digits) {
    if (value === null || value === undefined || Number.isNaN(value)) { return "—"; }
    var abs = Math.abs(value);
    var d = digits === undefined ? (abs >= 100 ? 0 : abs >= 10 ? 1 : 2) : digits;
    return value.toLocaleString("en-GB", { minimumFractionDigits: d, maximumFractionDigits: d });
  }
  function energyText(j) {
    if (j === null || j === undefined) { return "—"; }
    var kwh = j / 3.6e6;
    return Math.abs(kwh) >= 1000 ? fmt(kwh / 1000) + " MWh" : fmt(kwh) + " kWh";
  }
  function massText(g) {
    if (g === null || g === undefined) { return "—"; }
    var kg = g / 1000;
    if (Math.abs(kg) >= 1000) { return fmt(kg / 1000) + " tCO2e"; }
    if (Math.abs(kg) < 1) { return fmt(g, 1) + " gCO2e"; }
    return fmt(kg) + " kgCO2e";
  }
  function hoursText(s) { return s === null || s === undefined ? "—" : fmt(s / 3600) + " h"; }
  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (text !== undefined) { node.textContent = text; }
    return node;
  }
  function table(head, rows) {
    var t = el("table"), thead = el("thead"), tr = el("tr");
    head.forEach(function (h, i) { tr.appendChild(el("th", i ? { "class": "num" } : {}, h)); });
    thead.appendChild(tr); t.appendChild(thead);
    var tbody = el("tbody");
    rows.forEach(function (r) {
      var row = el("tr");
      r.forEach(function (c, i) { row.appendChild(el("td", i ? { "class": "num" } : {}, c)); });
      tbody.appendChild(row);
    });
    t.appendChild(tbody);
    var wrap = el("div", { "class": "table-wrap" }); wrap.appendChild(t);
    return wrap;
  }
  function assumptionList(items) {
    var box = el("div", { "class": "small" });
    if (!items || !items.length) { return box; }
    box.appendChild(el("h3", {}, "Assumptions"));
    var ul = el("ul", { "class": "assumptions" });
    items.forEach(function (a) { ul.appendChild(el("li", {}, a)); });
    box.appendChild(ul);
    return box;
  }

  // --- API calls ----------------------------------------------------------------------------
  function problemText(status, body) {
    if (body && typeof body === "object") {
      var parts = [];
      if (body.title) { parts.push(body.title); }
      // A validation problem's detail is its errors joined: show the errors, not both.
      if (Array.isArray(body.errors) && body.errors.length) {
        body.errors.forEach(function (e) { parts.push((e.field ? e.field + ": " : "") + (e.message || "")); });
        return parts.join(" — ");
      }
      if (body.detail && typeof body.detail === "string") { parts.push(body.detail); }
      var fields = body.invalid_params || body.fields;
      var source = fields && typeof fields === "object" ? fields : body;
      Object.keys(source).forEach(function (k) {
        if (["title", "detail", "status", "type", "instance"].indexOf(k) >= 0) { return; }
        var v = source[k];
        parts.push(k + ": " + (Array.isArray(v) ? v.join(" ") : (typeof v === "object" ? JSON.stringify(v) : v)));
      });
      if (parts.length) { return parts.join(" — "); }
    }
    return "The what-if service answered with HTTP " + status + ".";
  }
  function postJson(url, payload, csrf) {
    return fetch(url, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "Accept": "application/json", "X-CSRFToken": csrf },
      body: JSON.stringify(payload)
    }).then(function (resp) {
      return resp.text().then(function (text) {
        var body = null;
        try { body = text ? JSON.parse(text) : null; } catch (e) { body = null; }
        if (!resp.ok) {
          var failure = new Error(problemText(resp.status, body));
          failure.fieldErrors = body && Array.isArray(body.errors) ? body.errors : [];
          throw failure;
        }
        if (body === null) { throw new Error("The what-if service returned no JSON."); }
        return body;
      });
    });
  }
  function formPayload(form) {
    var out = {};
    form.querySelectorAll("[data-field]").forEach(function (input) {
      var v = input.value.trim();
      if (v === "") { return; }
      var kind = input.getAttribute("data-type");
      if (kind === "number") { v = Number(v); } else if (kind === "int") { v = parseInt(v, 10); }
      else if (kind === "datetime") { v = new Date(v + "Z").toISOString(); }
      out[input.getAttribute("data-field")] = v;
    });
    return out;
  }
  // A 400 names each field and its bound (accounting/domain/bounds.py): show each message beside
  // the input it is about, as a server-rendered form would.
  function clearFieldErrors(form) {
    form.querySelectorAll(".field-error").forEach(function (n) { n.remove(); });
    form.querySelectorAll("[aria-invalid]").forEach(function (n) {
      n.removeAttribute("aria-invalid"); n.removeAttribute("aria-describedby");
    });
  }
  function showFieldErrors(form, errors) {
    (errors || []).forEach(function (e, i) {
      var input = e.field ? form.querySelector('[data-field="' + e.field + '"]') : null;
      if (!input) { return; }
      var id = (form.id || "form") + "-error-" + i;
      var note = el("span", { "class": "field-error", "id": id, "data-error-for": e.field }, e.message || "");
      input.setAttribute("aria-invalid", "true");
      input.setAttribute("aria-describedby", id);
      input.insertAdjacentElement("afterend", note);
    });
  }
  function bindForm(form, build, render) {
    var out = document.getElementById(form.getAttribute("data-result"));
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var button = form.querySelector("button[type=submit]");
      var csrf = form.querySelector("input[name=csrfmiddlewaretoken]").value;
      clearFieldErrors(form);
      button.disabled = true;
      out.innerHTML = "";
      out.appendChild(el("div", { "class": "alert info" }, "Computing…"));
      var payload;
      try { payload = build(form); } catch (e) {
        out.innerHTML = ""; out.appendChild(el("div", { "class": "alert error", "role": "alert" }, e.message));
        button.disabled = false; return;
      }
      postJson(form.getAttribute("data-url"), payload, csrf).then(function (data) {
        out.innerHTML = "";
        render(out, data);
      }).catch(function (err) {
        out.innerHTML = "";
        showFieldErrors(form, err.fieldErrors);
        out.appendChild(el("div", { "class": "alert error", "role": "alert" }, err.message));
      }).finally(function () { button.disabled = false; });
    });
  }

  // --- job what-if renderers ------------------------------------------------------------------
  function renderProjection(out, data) {
    var b = data.baseline || {}, p = data.projected || {};
    var rows = [
      ["Device", (b.device_count || "?") + " × " + (b.device_key || "?"), (p.device_count || "?") + " × " + (p.device_key || "?")],
      ["Runtime", hoursText(b.runtime_s), hoursText(p.runtime_s)],
      ["Average power per device", fmt(b.avg_power_w) + " W", fmt(p.avg_power_w) + " W"],
      ["Energy (GPU, host, facility)", energyText(b.total_energy_j), energyText(p.total_energy_j)],
      ["Operational carbon", massText(b.operational_co2e_g), massText(p.operational_co2e_g)],
      ["Embodied carbon", massText(b.embodied_co2e_g), massText(p.embodied_co2e_g)],
      ["Total carbon", massText(b.co2e_g), massText(p.co2e_g)],
      ["Uncertainty band", massText(b.co2e_low_g) + " – " + massText(b.co2e_high_g),
        massText(p.co2e_low_g) + " – " + massText(p.co2e_high_g)],
      ["Grid intensity · PUE", fmt(b.intensity_g_per_kwh) + " g/kWh · " + fmt(b.pue, 2),
        fmt(p.intensity_g_per_kwh) + " g/kWh · " + fmt(p.pue, 2)],
      ["Basis", b.basis || "—", p.basis || "—"]
    ];
    var summary = el("p", { "class": "whatif-summary" });
    var delta = (b.co2e_g && p.co2e_g !== undefined) ? (p.co2e_g - b.co2e_g) / b.co2e_g * 100 : null;
    summary.textContent = "Speed-up " + fmt(data.speedup, 2) + "× (" + (data.method || "model") + ")" +
      (delta === null ? "" : "; carbon " + (delta <= 0 ? "−" : "+") + fmt(Math.abs(delta), 1) + " % vs the ledger footprint") +
      (data.calibration_jobs ? "; calibrated on " + data.calibration_jobs + " jobs" : "");
    out.appendChild(summary);
    out.appendChild(table(["", "Measured (ledger)", "Projected"], rows));
    out.appendChild(assumptionList(data.assumptions));
  }
  function renderWindow(out, data) {
    var rows = [
      ["Best start (UTC)", (data.best_start || "").replace("T", " ").slice(0, 16)],
      ["Best end (UTC)", (data.best_end || "").replace("T", " ").slice(0, 16)],
      ["Average intensity, best window", fmt(data.best_avg_intensity_g_per_kwh) + " gCO2e/kWh"],
      ["Average intensity, earliest start", fmt(data.now_avg_intensity_g_per_kwh) + " gCO2e/kWh"],
      ["Saving", fmt((data.saving_fraction || 0) * 100, 1) + " %"],
      ["Windows compared", String(data.candidates === undefined ? "—" : data.candidates)]
    ];
    if (data.saving_g !== undefined && data.saving_g !== null) { rows.push(["Carbon saved", massText(data.saving_g)]); }
    out.appendChild(table(["", "Value"], rows));
    out.appendChild(assumptionList(data.assumptions));
  }

  // --- fleet planner -------------------------------------------------------------------------
  function plannerPayload(form) {
    var p = formPayload(form);
    var workloads = [];
    form.querySelectorAll("[data-workload]").forEach(function (row) {
      var hours = Number(row.querySelector("[data-w=hours]").value);
      if (!hours) { return; }
      var w = { family: row.getAttribute("data-family"), kind: row.getAttribute("data-kind"), device_hours_per_year: hours };
      var util = row.querySelector("[data-w=util]").value;
      if (util !== "") { w.avg_util = Number(util) / 100; }
      workloads.push(w);
    });
    if (!workloads.length) { throw new Error("Enter device-hours per year for at least one workload."); }
    p.workloads = workloads;
    return p;
  }
  function renderPlan(out, data) {
    var rows = [
      ["IT energy per year", energyText(data.energy_before_j_per_year), energyText(data.energy_after_j_per_year)],
      ["Operational carbon per year", massText(data.operational_co2e_before_g_per_year), massText(data.operational_co2e_after_g_per_year)],
      ["Embodied amortisation per year", massText(data.old_embodied_g_per_year), massText(data.new_embodied_g_per_year)],
      ["Busy utilisation", fmt((data.busy_utilisation_before || 0) * 100, 1) + " %", fmt((data.busy_utilisation_after || 0) * 100, 1) + " %"]
    ];
    var payback = data.payback_years === null || data.payback_years === undefined ? "never (no operational saving)"
      : fmt(data.payback_years, 1) + " years (" + fmt(data.payback_low_years, 1) + "–" + fmt(data.payback_high_years, 1) + ")";
    out.appendChild(el("p", { "class": "whatif-summary" }, "Carbon payback: " + payback +
      "; new embodied " + massText(data.new_embodied_co2e_g) + "; yearly operational saving " +
      massText(data.operational_saving_g_per_year) +
      (data.break_even_intensity_g_per_kwh ? "; break-even grid intensity " + fmt(data.break_even_intensity_g_per_kwh) + " gCO2e/kWh" : "")));
    if (data.capacity_shortfall_device_h > 0) {
      out.appendChild(el("div", { "class": "alert error" }, "The new fleet is short of " +
        fmt(data.capacity_shortfall_device_h) + " device-hours per year for these workloads."));
    }
    out.appendChild(table(["", "Current fleet", "Upgraded fleet"], rows));
    var chart = el("div", { "class": "figure", "id": "payback-chart" });
    out.appendChild(chart);
    out.appendChild(assumptionList(data.assumptions));
    drawPayback(chart, data);
  }
  function drawPayback(node, data) {
    if (!window.Plotly) { return; }
    var before = (data.operational_co2e_before_g_per_year || 0) / 1e6;
    var after = (data.operational_co2e_after_g_per_year || 0) / 1e6;
    var emb = (data.new_embodied_co2e_g || 0) / 1e6;
    var horizon = Math.min(15, Math.max(5, data.payback_years ? Math.ceil(data.payback_years * 2) : 5));
    var years = [], keep = [], upgrade = [], low = [], high = [];
    for (var i = 0; i <= horizon * 4; i++) {
      var t = i / 4;
      years.push(t); keep.push(before * t); upgrade.push(emb + after * t);
      low.push((data.new_embodied_low_g || 0) / 1e6 + after * t);
      high.push((data.new_embodied_high_g || 0) / 1e6 + after * t);
    }
    var traces = [
      { x: years, y: keep, name: "Keep current fleet", mode: "lines", line: { color: "#6b7280", width: 2 },
        hovertemplate: "Year %{x:.2f}<br>%{y:,.1f} tCO2e cumulative<extra></extra>" },
      { x: years, y: high, name: "Upgrade (embodied high)", mode: "lines", line: { width: 0 }, showlegend: false, hoverinfo: "skip" },
      { x: years, y: low, name: "Embodied range", mode: "lines", line: { width: 0 }, fill: "tonexty",
        fillcolor: "rgba(0,114,178,0.15)", hoverinfo: "skip" },
      { x: years, y: upgrade, name: "Upgrade (new embodied + operational)", mode: "lines", line: { color: "#0072B2", width: 3 },
        hovertemplate: "Year %{x:.2f}<br>%{y:,.1f} tCO2e cumulative<extra></extra>" }
    ];
    var shapes = [];
    if (data.payback_years) {
      shapes.push({ type: "line", x0: data.payback_years, x1: data.payback_years, yref: "paper", y0: 0, y1: 1,
        line: { color: "#D55E00", dash: "dot" } });
    }
    window.Plotly.newPlot(node, traces, {
      title: { text: "Carbon payback: cumulative tCO2e, keep versus upgrade", x: 0.01, font: { size: 15 } },
      height: 400, margin: { l: 64, r: 24, t: 56, b: 96 }, paper_bgcolor: "#fff", plot_bgcolor: "#fff",
      xaxis: { title: { text: "Years from upgrade" } }, yaxis: { title: { text: "Cumulative tCO2e" }, rangemode: "tozero" },
      legend: { orientation: "h", y: -0.28 }, shapes: shapes,
      font: { family: "Inter, -apple-system, 'Segoe UI', Roboto, Arial, sans-serif", size: 12 }
    }, PLOT_CONFIG);
  }

  // --- live -------------------------------------------------------------------------------------
  function startLive(node) {
    var url = node.getAttribute("data-live-url");
    var every = Number(node.getAttribute("data-refresh-s") || "5") * 1000;
    var body = node.querySelector("tbody");
    var stamp = document.getElementById("live-updated");
    function text(id, value) { var n = document.getElementById(id); if (n) { n.textContent = value; } }
    function tick() {
      fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
        .then(function (r) { if (!r.ok) { throw new Error("HTTP " + r.status); } return r.json(); })
        .then(function (data) {
          text("live-running", String(data.running));
          text("live-power", fmt(data.power_kw) + " kW");
          text("live-energy", fmt(data.energy_kwh) + " kWh");
          text("live-co2", fmt(data.co2e_kg) + " kgCO2e");
          body.innerHTML = "";
          if (!data.jobs.length) {
            var tr = el("tr"); var td = el("td", { colspan: "9", "class": "muted" }, "No running jobs right now.");
            tr.appendChild(td); body.appendChild(tr);
          }
          data.jobs.forEach(function (j) {
            var tr = el("tr");
            var a = el("a", { href: "/jobs/" + j.id + "/" }, j.name || j.scheduler_job_id);
            var first = el("td"); first.appendChild(a); tr.appendChild(first);
            [j.team, j.username, j.family + " · " + j.kind, j.site].forEach(function (v) { tr.appendChild(el("td", {}, v)); });
            [fmt(j.elapsed_h), j.avg_power_kw === null ? "—" : fmt(j.avg_power_kw), fmt(j.energy_kwh), fmt(j.co2e_kg)]
              .forEach(function (v) { tr.appendChild(el("td", { "class": "num" }, v)); });
            body.appendChild(tr);
          });
          if (data.fleet_power) { redrawPower("fig-fleet-power", data.fleet_power.t, data.fleet_power.power_kw); }
          if (stamp) { stamp.textContent = "Updated " + new Date().toLocaleTimeString("en-GB"); stamp.classList.remove("error"); }
        })
        .catch(function (err) { if (stamp) { stamp.textContent = "Refresh failed (" + err.message + "), retrying"; } });
    }
    tick();
    window.setInterval(tick, every);
  }

  // --- live power (Live page's fleet chart, job page's live chart) -------------------------------
  function plotFor(fid) { return document.querySelector('[data-figure="' + fid + '"]'); }
  function redrawPower(fid, t, kw) {
    var node = plotFor(fid);
    if (!node || !window.Plotly || !node.data) { return; }
    var trace = Object.assign({}, node.data[0], { x: t, y: kw });
    window.Plotly.react(node, [trace], node.layout, PLOT_CONFIG);
  }
  function energyKwhText(kwh) {
    if (kwh === null || kwh === undefined) { return "—"; }
    return Math.abs(kwh) >= 1000 ? fmt(kwh / 1000) + " MWh" : fmt(kwh) + " kWh";
  }
  function startJobLive(node) {
    var url = node.getAttribute("data-power-url");
    var every = Number(node.getAttribute("data-refresh-s") || "5") * 1000;
    var span = Number(node.getAttribute("data-span-s") || "1800") * 1000;
    function text(id, value) { var n = document.getElementById(id); if (n) { n.textContent = value; } }
    function tick() {
      var start = new Date(Date.now() - span).toISOString();
      fetch(url + "?start=" + encodeURIComponent(start), { credentials: "same-origin", headers: { "Accept": "application/json" } })
        .then(function (r) { if (!r.ok) { throw new Error("HTTP " + r.status); } return r.json(); })
        .then(function (data) {
          redrawPower("fig-job-live", data.total.t, data.total.power_kw);
          text("job-live-energy", energyKwhText(data.energy_so_far_kwh));
          text("job-live-power", data.current_power_kw === null ? "—" : fmt(data.current_power_kw) + " kW");
          text("job-live-projected", energyKwhText(data.projected_total_kwh));
          text("job-live-note", data.projection_note || "");
          text("job-live-updated", "Updated " + new Date().toLocaleTimeString("en-GB") +
            (data.last_window_end ? "; latest window ended " + data.last_window_end.slice(11, 19) + " UTC" : ""));
        })
        .catch(function (err) { text("job-live-updated", "Refresh failed (" + err.message + "), retrying"); });
    }
    window.setInterval(tick, every);
  }
  // Zoom to window resolution: when the hourly trace is zoomed to RAW_MAX_MS or less, the raw
  // windows of that range replace it; a reset (double-click) brings the hourly figure back.
  var RAW_MAX_MS = 6 * 3600 * 1000;
  function rawTraces(data) {
    var out = [], palette = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"];
    data.devices.forEach(function (d, i) {
      var c = palette[i % palette.length];
      out.push({ type: "scatter", mode: "lines", x: d.t, y: d.power_w, name: d.label, legendgroup: d.label,
        line: { width: 1.6, color: c, shape: "hv" }, xaxis: "x", yaxis: "y",
        hovertemplate: d.label + "<br>%{x|%d %b %H:%M:%S}<br>%{y:,.0f} W<extra></extra>" });
      out.push({ type: "scatter", mode: "lines", x: d.t, y: d.util_pct, name: d.label, legendgroup: d.label, showlegend: false,
        line: { width: 1.6, color: c, shape: "hv" }, xaxis: "x2", yaxis: "y2",
        hovertemplate: d.label + "<br>%{x|%d %b %H:%M:%S}<br>%{y:.0f} %<extra></extra>" });
    });
    return out;
  }
  // Plotly gives date-axis ranges as "YYYY-MM-DD HH:MM:SS.sss" in UTC, without a zone.
  function plotlyDate(v) {
    var text = String(v).replace(" ", "T");
    return new Date(/[zZ]|[+-]\d\d:?\d\d$/.test(text) ? text : text + "Z");
  }
  function bindZoom(box) {
    var fid = box.getAttribute("data-zoom-for"), node = plotFor(fid), src = document.getElementById(fid);
    if (!node || !src || !window.Plotly || box.getAttribute("data-resolution") === "window") { return; }
    var original = JSON.parse(src.textContent), note = document.getElementById("trace-note"), busy = false;
    node.on("plotly_relayout", function (ev) {
      if (busy) { return; }
      if (ev["xaxis.autorange"] || ev["xaxis2.autorange"]) {
        if (box.getAttribute("data-resolution") === "window") {
          busy = true; box.setAttribute("data-resolution", "hour");
          window.Plotly.react(node, original.data, original.layout, PLOT_CONFIG).then(function () { busy = false; });
          if (note) { note.textContent = "Hourly averages; drag across the chart to 6 hours or less to see the raw windows, double-click to reset."; }
        }
        return;
      }
      var r = ev["xaxis.range"] || ev["xaxis2.range"] || [];
      var a = ev["xaxis.range[0]"] || ev["xaxis2.range[0]"] || r[0], b = ev["xaxis.range[1]"] || ev["xaxis2.range[1]"] || r[1];
      if (!a || !b) { return; }
      var t0 = plotlyDate(a), t1 = plotlyDate(b);
      if (isNaN(t0) || isNaN(t1) || t1 - t0 > RAW_MAX_MS) { return; }
      var url = box.getAttribute("data-zoom-url") + "?start=" + encodeURIComponent(t0.toISOString()) + "&end=" + encodeURIComponent(t1.toISOString());
      fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
        .then(function (r) { if (!r.ok) { throw new Error("HTTP " + r.status); } return r.json(); })
        .then(function (data) {
          busy = true; box.setAttribute("data-resolution", "window");
          var layout = JSON.parse(JSON.stringify(original.layout));
          layout.xaxis.range = [t0.toISOString(), t1.toISOString()]; layout.xaxis.autorange = false;
          layout.xaxis2.range = [t0.toISOString(), t1.toISOString()]; layout.xaxis2.autorange = false;
          layout.xaxis2.title = { text: "Window end (UTC)" };
          (layout.annotations || []).forEach(function (a) { a.text = String(a.text).replace("hourly average", "per window"); });
          return window.Plotly.react(node, rawTraces(data), layout, PLOT_CONFIG).then(function () {
            busy = false;
            if (note) { note.textContent = "Raw windows " + data.start.slice(0, 19).replace("T", " ") + " – " + data.end.slice(0, 19).replace("T", " ") + " UTC" + (data.truncated ? " (capped)" : "") + "; double-click for hourly averages."; }
          });
        })
        .catch(function (err) { busy = false; if (note) { note.textContent = "Could not load the raw windows (" + err.message + ")."; } });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    renderFigures(document);
    document.querySelectorAll("[data-power-url]").forEach(startJobLive);
    document.querySelectorAll("[data-zoom-url]").forEach(bindZoom);
    document.querySelectorAll("form[data-whatif=project]").forEach(function (f) { bindForm(f, formPayload, renderProjection); });
    document.querySelectorAll("form[data-whatif=window]").forEach(function (f) { bindForm(f, formPayload, renderWindow); });
    document.querySelectorAll("form[data-whatif=fleet]").forEach(function (f) { bindForm(f, plannerPayload, renderPlan); });
    document.querySelectorAll("[data-live-url]").forEach(startLive);
    document.querySelectorAll("select[data-autosubmit]").forEach(function (s) {
      s.addEventListener("change", function () { s.form.submit(); });
    });
  });
}());
