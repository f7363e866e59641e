// The control tower: counts by state and therapy, a paged order list, alerts with
// acknowledge/resolve, and one order's vein-to-vein timeline, all kept live by the
// gateway's event stream.
"use strict";

import { ApiError, follow, getJSON, identity, postJSON } from "./api.js";
import {
  STATE_LABELS, formatDuration, formatTime, funnelChart, temperatureChart, timeInStateChart,
} from "./charts.js";

const $ = (id) => document.getElementById(id);
const view = { me: null, state: "", therapy: "", cursor: null, openOrder: null,
               therapies: new Set() };

function h(tag, attrs = {}, children = []) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "text") node.textContent = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of [].concat(children)) {
    if (child === null || child === undefined) continue;
    node.append(typeof child === "string" ? document.createTextNode(child) : child);
  }
  return node;
}

function debounce(fn, ms) {
  let timer = null;
  return () => { clearTimeout(timer); timer = setTimeout(fn, ms); };
}

function showError(error) {
  const message = error instanceof ApiError ? error.message : String(error);
  $("live").textContent = message.slice(0, 80);
  $("live").dataset.state = "error";
}

// --- overview: funnel and therapy × state matrix -----------------------------------------
async function loadFunnel() {
  const funnel = await getJSON("/tower/api/funnel");
  $("total").textContent = `· ${funnel.total} orders, ${funnel.on_hold} on hold`;
  const figure = $("funnel");
  figure.replaceChildren(funnelChart(funnel.states, { onPick: pickState, selected: view.state }));
  const states = funnel.states.map((s) => s.state);
  const therapies = Object.keys(funnel.by_therapy).sort();
  therapies.forEach((t) => view.therapies.add(t));
  fillTherapyFilter();
  const head = h("tr", {}, [h("th", { text: "Therapy" }),
    ...states.map((s) => h("th", { class: "rot", text: STATE_LABELS[s] || s }))]);
  const rows = therapies.map((therapy) => h("tr", { "data-therapy": therapy }, [
    h("td", { text: therapy }),
    ...states.map((state) => {
      const n = funnel.by_therapy[therapy][state] || 0;
      return h("td", { class: `cell${n ? "" : " zero"}`, text: String(n), "data-state": state,
                       title: `${therapy} · ${STATE_LABELS[state] || state}: ${n}`,
                       onclick: () => { view.therapy = therapy; $("therapy-filter").value = therapy;
                                        pickState(state); } });
    }),
  ]));
  $("matrix").replaceChildren(h("thead", {}, head), h("tbody", {}, rows));
}

function fillTherapyFilter() {
  const select = $("therapy-filter");
  const have = new Set([...select.options].map((o) => o.value));
  for (const therapy of [...view.therapies].sort()) {
    if (!have.has(therapy)) select.append(h("option", { value: therapy, text: therapy }));
  }
}

function pickState(state) {
  view.state = view.state === state && !view.therapy ? "" : state;
  $("state-filter").value = view.state;
  reloadOrders();
}

// --- order list ------------------------------------------------------------------------------
function ordersUrl(cursor) {
  const q = new URLSearchParams({ limit: "50" });
  if (view.state) q.set("state", view.state);
  if (view.therapy) q.set("therapy", view.therapy);
  if (cursor) q.set("cursor", cursor);
  return `/tower/api/orders?${q}`;
}

function orderRow(row) {
  const inState = row.in_state;
  const over = inState && inState.over_target;
  const alerts = row.alerts.count
    ? h("span", { class: `badge ${row.alerts.worst}`, text: String(row.alerts.count) }) : "";
  return h("tr", {
    "data-testid": "order-row", "data-order-id": row.id, "data-status": row.status,
    "data-version": row.version, class: view.openOrder === row.id ? "selected" : null,
    onclick: () => openOrder(row.id),
  }, [
    h("td", { "data-testid": "patient" },
      row.patient ? [h("b", { text: row.patient }), h("div", { class: "mono muted", text: row.pseudonym })]
        : h("span", { class: "mono", text: row.pseudonym })),
    h("td", { class: "mono", text: row.coi || "—" }),
    h("td", { text: row.therapy.name }),
    h("td", { text: row.site }),
    h("td", {}, h("span", { class: `status ${row.status}`, "data-testid": "status",
                            text: STATE_LABELS[row.status] || row.status })),
    h("td", { class: over ? "over" : null,
              text: inState ? formatDuration(inState.seconds) + (inState.target_seconds
                ? ` / ${formatDuration(inState.target_seconds)}` : "") : "" }),
    h("td", { text: row.next ? `${row.next.what} ${formatTime(row.next.at)}` : "" }),
    h("td", {}, alerts),
    h("td", { text: formatTime(row.updated_at) }),
  ]);
}

function matchesFilter(row) {
  if (view.therapy && row.therapy.code !== view.therapy) return false;
  if (!view.state) return true;
  return view.state === "ON_HOLD" ? row.status === "ON_HOLD" : row.state === view.state;
}

async function reloadOrders() {
  view.cursor = null;
  $("clear-filter").hidden = !view.state && !view.therapy;
  const page = await getJSON(ordersUrl());
  $("order-rows").replaceChildren(...page.items.map(orderRow));
  view.cursor = page.next_cursor;
  $("more").hidden = !view.cursor;
  $("empty").hidden = page.items.length > 0;
  loadFunnel().catch(showError);
}

async function loadMore() {
  if (!view.cursor) return;
  const page = await getJSON(ordersUrl(view.cursor));
  $("order-rows").append(...page.items.map(orderRow));
  view.cursor = page.next_cursor;
  $("more").hidden = !view.cursor;
}

// A changed order: refresh its row where it is, or put it on top when it now matches.
async function refreshRow(orderId) {
  let row;
  try {
    row = await getJSON(`/tower/api/orders/${encodeURIComponent(orderId)}/row`);
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) return;
    throw error;
  }
  const existing = document.querySelector(`tr[data-order-id="${CSS.escape(orderId)}"]`);
  const fresh = orderRow(row);
  fresh.classList.add("flash");
  if (existing && matchesFilter(row)) existing.replaceWith(fresh);
  else if (existing) existing.remove();
  else if (matchesFilter(row)) $("order-rows").prepend(fresh);
  $("empty").hidden = $("order-rows").children.length > 0;
}

// --- alerts -----------------------------------------------------------------------------------
const KIND_LABELS = {
  temperature_excursion: "Temperature", slot_at_risk: "Slot at risk", missing_data: "Missing data",
  thaw_window: "Thaw window", dead_letter: "Undelivered message", hold: "Hold",
  identity_alarm: "Identity alarm",
};

function alertItem(alert, { compact = false } = {}) {
  const who = alert.status === "resolved"
    ? `resolved by ${alert.resolved_by}`
    : alert.status === "acknowledged" ? `acknowledged by ${alert.acknowledged_by}` : "";
  const act = (action) => async (event) => {
    event.stopPropagation();
    const note = action === "resolve" ? (prompt("How was it resolved?") ?? null) : null;
    event.target.disabled = true;
    try {
      await postJSON(`/tower/api/alerts/${encodeURIComponent(alert.key)}/${action}`,
                     note ? { note } : {});
      await Promise.all([loadAlerts(), view.openOrder ? loadDetail(view.openOrder) : null]);
    } catch (error) { showError(error); event.target.disabled = false; }
  };
  const canAct = view.me && view.me.may_act && alert.status !== "resolved";
  return h("li", { class: `alert ${alert.severity} ${alert.status}`, "data-testid": "alert",
                   "data-key": alert.key, "data-kind": alert.kind, "data-status": alert.status }, [
    h("div", { class: "title", text: alert.title }),
    h("div", { class: "meta" }, [
      `${KIND_LABELS[alert.kind] || alert.kind} · since ${formatTime(alert.since)}`,
      alert.due ? ` · due ${formatTime(alert.due)}` : "",
    ]),
    h("div", { class: "detail-text", text: alert.detail }),
    !compact && alert.order_id ? h("div", { class: "meta" }, [
      h("button", { class: "linklike", text: alert.coi || alert.order_id,
                    onclick: (e) => { e.stopPropagation(); openOrder(alert.order_id); } }),
      alert.pseudonym ? ` · ${alert.pseudonym}` : "", alert.therapy ? ` · ${alert.therapy}` : "",
    ]) : null,
    who ? h("div", { class: "who", "data-testid": "alert-who", text: who + (alert.note ? ` — ${alert.note}` : "") }) : null,
    canAct ? h("div", { class: "actions" }, [
      alert.status === "open" ? h("button", { "data-testid": "acknowledge", text: "Acknowledge",
                                              onclick: act("acknowledge") }) : null,
      h("button", { class: "secondary", "data-testid": "resolve", text: "Resolve",
                    onclick: act("resolve") }),
    ]) : null,
  ]);
}

async function loadAlerts() {
  const q = $("show-resolved").checked ? "?include_resolved=true" : "";
  const alerts = await getJSON(`/tower/api/alerts${q}`);
  $("alert-count").textContent = String(alerts.items.filter((a) => a.status === "open").length);
  $("alerts").replaceChildren(...alerts.items.map((a) => alertItem(a)));
  if (!alerts.items.length) $("alerts").append(h("li", { class: "muted", text: "Nothing needs action." }));
}

// --- one order's timeline ------------------------------------------------------------------
async function openOrder(orderId) {
  view.openOrder = orderId;
  document.querySelectorAll("tr.selected").forEach((tr) => tr.classList.remove("selected"));
  document.querySelector(`tr[data-order-id="${CSS.escape(orderId)}"]`)?.classList.add("selected");
  await loadDetail(orderId);
}

function closeOrder() {
  view.openOrder = null;
  $("detail").hidden = true;
  document.querySelectorAll("tr.selected").forEach((tr) => tr.classList.remove("selected"));
}

async function loadDetail(orderId) {
  const order = await getJSON(`/tower/api/orders/${encodeURIComponent(orderId)}`);
  if (view.openOrder !== orderId) return;
  const panel = $("detail");
  panel.dataset.orderId = order.id;
  panel.dataset.version = order.version;
  $("detail-title").textContent = order.patient ? order.patient.name : order.pseudonym;
  $("detail-sub").textContent = `CoI ${order.coi || "—"} · ${order.therapy.name} · ` +
    `${order.manufacturer} · site ${order.site} · version ${order.version}`;
  const body = [];
  const facts = [["Status", STATE_LABELS[order.status] || order.status], ["Pseudonym", order.pseudonym]];
  if (order.patient) facts.unshift(["MRN", order.patient.mrn], ["Born", order.patient.birth_date || "—"]);
  if (order.rules) {
    facts.push(["Storage limit", `${order.rules.max_celsius} °C (${order.rules.excursion_minutes} min)`],
               ["Thaw to infusion", `${order.rules.thaw_to_infusion_minutes} min`]);
  }
  body.push(h("dl", { class: "kv", "data-testid": "facts" },
              facts.flatMap(([k, v]) => [h("dt", { text: k }), h("dd", { text: v })])));
  if (order.alerts.length) {
    body.push(h("h3", { text: "Alerts" }),
              h("ul", { class: "alerts", "data-testid": "detail-alerts" },
                order.alerts.map((a) => alertItem(a, { compact: true }))));
  }
  body.push(h("h3", { text: "Time in state against targets" }), timeInStateChart(order.time_in_state));
  for (const shipment of order.shipments) {
    const leg = shipment.leg === "to_manufacturer" ? "to manufacturer" : "to site";
    body.push(h("h3", { text: `Shipment ${leg}: ${[shipment.courier, shipment.tracking_number].filter(Boolean).join(" ") || shipment.id}` }));
    body.push(h("div", { class: "legend", text:
      `${(shipment.readings || []).length} readings · logger ${shipment.logger_id || "—"} · ` +
      `${(shipment.excursions || []).length} excursion(s)` }));
    if (order.rules) body.push(temperatureChart(shipment, order.rules.max_celsius));
  }
  body.push(h("h3", { text: "Vein-to-vein timeline" }),
            h("ol", { class: "timeline", "data-testid": "timeline" }, order.timeline.map((entry) =>
              h("li", { class: `${entry.tone} ${entry.kind}`, "data-kind": entry.kind }, [
                h("span", { class: "mono", text: formatTime(entry.at) }),
                h("span", {}, [h("span", { class: "kind", text: entry.kind.replace("_", " ") }),
                               h("span", { class: "label", text: entry.label }),
                               entry.detail ? h("div", { class: "muted", text: entry.detail }) : null]),
              ]))));
  $("detail-body").replaceChildren(...body);
  panel.hidden = false;
}

// --- live updates -------------------------------------------------------------------------------
const refreshOverview = debounce(() => {
  loadFunnel().catch(showError);
  loadAlerts().catch(showError);
}, 250);

function onEvent(name, data) {
  if (name === "order") {
    refreshRow(data.id).catch(showError);
    if (view.openOrder === data.id) loadDetail(data.id).catch(showError);
    refreshOverview();
  } else if (name === "alert") {
    if (data.order_id && view.openOrder === data.order_id) loadDetail(data.order_id).catch(showError);
    refreshOverview();
  }
}

function onStatus(status) {
  const live = $("live");
  live.dataset.state = status;
  live.textContent = { open: "live", connecting: "connecting…", error: "reconnecting…" }[status];
}

async function start() {
  for (const state of Object.keys(STATE_LABELS)) {
    $("state-filter").append(h("option", { value: state, text: STATE_LABELS[state] }));
  }
  $("state-filter").addEventListener("change", (e) => { view.state = e.target.value; reloadOrders().catch(showError); });
  $("therapy-filter").addEventListener("change", (e) => { view.therapy = e.target.value; reloadOrders().catch(showError); });
  $("clear-filter").addEventListener("click", () => {
    view.state = ""; view.therapy = ""; $("state-filter").value = ""; $("therapy-filter").value = "";
    reloadOrders().catch(showError);
  });
  $("more").addEventListener("click", () => loadMore().catch(showError));
  $("detail-close").addEventListener("click", closeOrder);
  $("show-resolved").addEventListener("change", () => loadAlerts().catch(showError));
  document.addEventListener("keydown", (e) => { if (e.key === "Escape") closeOrder(); });
  try {
    view.me = await getJSON("/tower/api/me");
    $("who").textContent = `${view.me.display_name} · ${view.me.kind}` +
      (view.me.tenant ? ` · ${view.me.tenant}` : "") + (identity.role ? " (dev)" : "");
    await reloadOrders();
    document.body.dataset.ready = "1";
    await loadAlerts();
  } catch (error) { showError(error); }
  follow("/tower/api/events", {
    onEvent, onStatus,
    onResync: () => { reloadOrders().catch(showError); loadAlerts().catch(showError); },
  });
}

document.addEventListener("DOMContentLoaded", start);
