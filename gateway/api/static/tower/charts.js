// Inline SVG charts: the state funnel, a shipment's temperature trace with its excursion
// band, and time in state against targets. No library: a few shapes each, drawn to scale.
"use strict";

const NS = "http://www.w3.org/2000/svg";

export function el(tag, attrs = {}, children = []) {
  const node = document.createElementNS(NS, tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value !== undefined && value !== null) node.setAttribute(name, String(value));
  }
  for (const child of [].concat(children)) {
    if (child === null || child === undefined) continue;
    node.append(typeof child === "string" ? document.createTextNode(child) : child);
  }
  return node;
}

function title(text) { return el("title", {}, text); }

export function formatDuration(seconds) {
  const abs = Math.abs(seconds);
  if (abs < 3600) return `${Math.round(seconds / 60)} min`;
  if (abs < 48 * 3600) return `${(seconds / 3600).toFixed(1)} h`;
  return `${(seconds / 86400).toFixed(1)} d`;
}

export function formatTime(iso) {
  if (!iso) return "";
  return iso.slice(0, 16).replace("T", " ");
}

export const STATE_LABELS = {
  REFERRED: "Referred", ENROLLED: "Enrolled", SLOT_REQUESTED: "Slot requested",
  SLOT_CONFIRMED: "Slot confirmed", APHERESIS_SCHEDULED: "Apheresis scheduled",
  COLLECTED: "Collected", SHIPPED_TO_MFG: "Shipped to mfg", RECEIVED_AT_MFG: "Received at mfg",
  MANUFACTURING: "Manufacturing", RELEASED: "Released", RELEASED_OOS: "Released (OOS)",
  MFG_FAILED: "Mfg failed", SHIPPED_TO_SITE: "Shipped to site", RECEIVED_AT_SITE: "Received at site",
  STORED: "Stored", THAWED: "Thawed", INFUSED: "Infused", CANCELLED: "Cancelled", ON_HOLD: "On hold",
};

// Counts per lifecycle state as horizontal bars, journey order top to bottom.
export function funnelChart(states, { onPick, selected } = {}) {
  const rowHeight = 17, labelWidth = 118, barWidth = 270, width = labelWidth + barWidth + 50;
  const height = states.length * rowHeight + 4;
  const max = Math.max(1, ...states.map((s) => s.count));
  const svg = el("svg", { class: "chart funnel", width, height, viewBox: `0 0 ${width} ${height}`,
                          role: "img", "aria-label": "Orders per lifecycle state" });
  states.forEach((entry, index) => {
    const y = index * rowHeight + 2;
    const w = entry.count ? Math.max(2, (entry.count / max) * barWidth) : 0;
    const hold = entry.state === "ON_HOLD";
    const terminal = entry.state === "INFUSED" || entry.state === "CANCELLED";
    const fill = hold ? "#b91c1c" : terminal ? "#9ca3af" : entry.state === "MFG_FAILED" ? "#dc2626"
      : "#2563eb";
    const group = el("g", { class: "funnel-row", "data-state": entry.state, "data-count": entry.count,
                            style: onPick ? "cursor:pointer" : null }, [
      title(`${STATE_LABELS[entry.state] || entry.state}: ${entry.count}`),
      el("rect", { x: 0, y, width, height: rowHeight - 2,
                   fill: selected === entry.state ? "#dbeafe" : "transparent" }),
      el("text", { x: labelWidth - 6, y: y + 11, "text-anchor": "end" },
         STATE_LABELS[entry.state] || entry.state),
      // centred bars make the narrowing of the journey visible, like a funnel
      el("rect", { x: labelWidth + (barWidth - w) / 2, y: y + 1, width: w, height: rowHeight - 4,
                   fill, rx: 2 }),
      el("text", { x: labelWidth + barWidth + 6, y: y + 11 }, String(entry.count)),
    ]);
    if (onPick) group.addEventListener("click", () => onPick(entry.state));
    svg.append(group);
  });
  return svg;
}

// One shipment's logger readings against the therapy's storage limit. The area warmer than
// the limit is tinted, the limit is a dashed line and each excursion is a shaded column.
export function temperatureChart(shipment, maxCelsius) {
  const readings = (shipment.readings || []).map((r) => ({ t: Date.parse(r.at), c: r.celsius }));
  const width = 680, height = 200, left = 46, right = 12, top = 12, bottom = 26;
  const svg = el("svg", { class: "chart temperature", width, height, viewBox: `0 0 ${width} ${height}`,
                          role: "img", "data-testid": "temperature-chart",
                          "aria-label": `Temperature trace, limit ${maxCelsius} °C` });
  if (!readings.length) {
    return el("svg", { class: "chart temperature empty", width, height: 22, role: "img",
                       "data-testid": "temperature-chart" },
              [el("text", { x: 0, y: 14 }, "No temperature readings from the logger yet.")]);
  }
  const excursions = (shipment.excursions || []).map((e) => ({
    start: Date.parse(e.started_at),
    end: e.ended_at ? Date.parse(e.ended_at) : readings[readings.length - 1].t,
    worst: e.worst_celsius,
  }));
  const t0 = readings[0].t, t1 = Math.max(readings[readings.length - 1].t, t0 + 60000);
  const temps = readings.map((r) => r.c).concat(maxCelsius);
  const span = Math.max(...temps) - Math.min(...temps);
  const c0 = Math.min(...temps) - Math.max(5, span * 0.1);
  const c1 = Math.max(...temps) + Math.max(5, span * 0.1);
  const x = (t) => left + ((t - t0) / (t1 - t0)) * (width - left - right);
  const y = (c) => top + ((c1 - c) / (c1 - c0)) * (height - top - bottom);
  svg.append(el("rect", { class: "excursion-band", x: left, y: top, width: width - left - right,
                          height: Math.max(0, y(maxCelsius) - top), fill: "#fee2e2" },
                [title(`warmer than ${maxCelsius} °C`)]));
  for (const e of excursions) {
    svg.append(el("rect", { class: "excursion", x: x(e.start), y: top,
                            width: Math.max(2, x(e.end) - x(e.start)), height: height - top - bottom,
                            fill: "#dc2626", "fill-opacity": 0.18 },
                  [title(`excursion: worst ${e.worst} °C`)]));
  }
  for (let i = 0; i <= 4; i++) {
    const c = c0 + ((c1 - c0) * i) / 4;
    svg.append(el("line", { class: "grid", x1: left, x2: width - right, y1: y(c), y2: y(c) }));
    svg.append(el("text", { x: left - 4, y: y(c) + 3, "text-anchor": "end" }, `${c.toFixed(0)}°`));
  }
  svg.append(el("line", { class: "limit", x1: left, x2: width - right, y1: y(maxCelsius),
                          y2: y(maxCelsius), stroke: "#b91c1c", "stroke-width": 1.5,
                          "stroke-dasharray": "6 4" }));
  svg.append(el("text", { x: width - right - 2, y: y(maxCelsius) - 4, "text-anchor": "end",
                          fill: "#b91c1c" }, `limit ${maxCelsius} °C`));
  const path = readings.map((r, i) => `${i ? "L" : "M"}${x(r.t).toFixed(1)},${y(r.c).toFixed(1)}`);
  svg.append(el("path", { class: "trace", d: path.join(" "), fill: "none", stroke: "#1d4ed8",
                          "stroke-width": 1.8 }));
  for (const r of readings) {
    if (r.c > maxCelsius) svg.append(el("circle", { cx: x(r.t), cy: y(r.c), r: 2.5, fill: "#b91c1c" }));
  }
  svg.append(el("line", { class: "axis", x1: left, x2: width - right, y1: height - bottom,
                          y2: height - bottom }));
  svg.append(el("text", { x: left, y: height - 8 }, formatTime(new Date(t0).toISOString())));
  svg.append(el("text", { x: width - right, y: height - 8, "text-anchor": "end" },
                formatTime(new Date(t1).toISOString())));
  return svg;
}

// Each state the order has been in, as a bar against its target: the target sits at the
// same place on every row so over-runs line up, whatever the unit (minutes for a thaw,
// weeks for manufacturing).
export function timeInStateChart(spans) {
  const rowHeight = 20, labelWidth = 130, barArea = 380, width = labelWidth + barArea + 150;
  const targetX = labelWidth + barArea * 0.6;
  const height = spans.length * rowHeight + 18;
  const svg = el("svg", { class: "chart time-in-state", width, height, viewBox: `0 0 ${width} ${height}`,
                          role: "img", "data-testid": "time-in-state",
                          "aria-label": "Time in each state against its target" });
  const untargeted = Math.max(1, ...spans.filter((s) => s.target_seconds == null).map((s) => s.seconds));
  spans.forEach((span, index) => {
    const y = index * rowHeight + 2;
    let w, fill, text;
    if (span.target_seconds) {
      const ratio = span.seconds / span.target_seconds;
      w = Math.min(ratio, 1.6) * barArea * 0.6;
      fill = span.over_target ? "#dc2626" : ratio > 0.8 ? "#d97706" : "#059669";
      text = `${formatDuration(span.seconds)} / ${formatDuration(span.target_seconds)}`;
    } else {
      w = (span.seconds / untargeted) * barArea * 0.4;
      fill = "#9ca3af";
      text = formatDuration(span.seconds);
    }
    if (span.current) text += " · now";
    const source = span.target_source ? ` (${span.target_source} target)` : " (no target)";
    svg.append(el("g", { class: "span-row", "data-state": span.state,
                         "data-over": span.over_target ? "1" : "0" }, [
      title(`${STATE_LABELS[span.state] || span.state}: ${text}${source}`),
      el("text", { x: labelWidth - 6, y: y + 13, "text-anchor": "end" },
         STATE_LABELS[span.state] || span.state),
      el("rect", { x: labelWidth, y: y + 3, width: Math.max(w, span.seconds > 0 ? 2 : 0),
                   height: rowHeight - 6, fill, rx: 2,
                   "fill-opacity": span.current ? 0.65 : 1 }),
      el("text", { x: labelWidth + barArea + 6, y: y + 13,
                   class: span.over_target ? "over" : "" }, text),
    ]));
  });
  svg.append(el("line", { x1: targetX, x2: targetX, y1: 0, y2: height - 16, stroke: "#111",
                          "stroke-dasharray": "3 3" }));
  svg.append(el("text", { x: targetX, y: height - 4, "text-anchor": "middle" }, "target"));
  return svg;
}
