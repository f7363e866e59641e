// The scan station: a keyboard-wedge field that is always focused, a full-screen verdict,
// and the bedside flow (wristband first, then the bag, then a second person).
"use strict";

// checking: the one scan waiting for the gateway (null when none); redShowing: a red verdict
// is on the screen and nobody has acknowledged it yet.
const state = { user: null, role: null, wristband: null, bedsideOrder: null, typedOverVerdict: "",
                checking: null, redShowing: false };
const $ = (id) => document.getElementById(id);

async function signIn() {
  const user = $("user").value.trim();
  if (!user) { $("user").focus(); return; }
  const form = new URLSearchParams({ username: user, password: $("password").value,
                                     role: $("role").value });
  const response = await fetch("/auth/login", { method: "POST", body: form });
  $("password").value = "";
  if (!response.ok) {
    const problem = await response.json().catch(() => ({}));
    $("signin-error").textContent = problem.detail || "Sign-in failed.";
    $("signin-error").hidden = false;
    return;
  }
  const who = await response.json();
  $("signin-error").hidden = true;
  state.user = who.username;
  state.role = who.role || $("role").value;
  $("who").textContent = `${user} (${state.role})`;
  $("signin").hidden = true;
  $("work").hidden = false;
  focusScan();
}

function signOut() {
  fetch("/auth/logout", { method: "POST" }).catch(() => {});
  state.user = null;
  // A wristband is only ever the check of the person who scanned it. The order of a first
  // green check stays, for the second person who signs in next to confirm.
  state.wristband = null;
  $("band-status").textContent = "—";
  $("who").textContent = "not signed in";
  $("work").hidden = true;
  $("signin").hidden = false;
  $("user").value = "";
  $("user").focus();
}

function focusScan() { if (!$("work").hidden && $("verdict").hidden) $("scan").focus(); }

function checkpoint() { return $("checkpoint").value; }

function onCheckpoint() {
  const bedside = checkpoint() === "bedside";
  $("bedside-steps").hidden = !bedside;
  if (!bedside) { state.wristband = null; state.bedsideOrder = null; $("band-status").textContent = "—"; }
  focusScan();
}

// A wristband carries the CoI (&/) and, in its DataMatrix, the patient id (&#); its linear
// Code 128 holds the CoI alone. A bag's label always has a unit number (= + FIN) or a product
// code (=<). The gateway refuses a bag sent as the wristband whatever this guess says.
function looksLikeWristband(text) {
  const body = text.replace(/^\][A-Za-z]\d/, "");
  return (body.includes("&/") || body.includes("&#")) && !/=[A-NP-Z1-9]\d{4}/.test(body)
    && !body.includes("=<");
}

// How long a scan waits for the gateway before the station says it got no answer.
const ANSWER_TIMEOUT_MS = 20000;

// Every way a scan can go unanswered is a red screen that says so: the person holding the bag
// must never be left with an empty scan field and no verdict.
function unanswered(code, reason) {
  return { green: false, verdict: "red", reason_code: code, reason, checkpoint: checkpoint() };
}

async function post(url, body, isForm) {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), ANSWER_TIMEOUT_MS);
  const init = isForm ? { method: "POST", body } : {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) };
  let response;
  let payload;
  try {
    response = await fetch(url, { ...init, signal: controller.signal });
    payload = await response.json().catch(() => null);
  } catch (error) {
    if (error && error.name === "AbortError") {
      return unanswered("no_answer", `vein2vein did not answer within ${ANSWER_TIMEOUT_MS / 1000} ` +
        "seconds: this bag was not checked, and it is not known whether the scan was recorded. " +
        "Do not use the bag on this scan; scan it again.");
    }
    return unanswered("station_offline", "The station cannot reach vein2vein: this bag was not " +
      "checked and nothing was recorded. Do not use the bag on this scan; check the station's " +
      "network connection, then scan again.");
  } finally {
    clearTimeout(timer);
  }
  if (!response.ok) {
    const problem = payload || {};
    return unanswered(problem.code || `http_${response.status}`, (typeof problem.detail === "string"
      && problem.detail) || `vein2vein refused the scan (HTTP ${response.status}) without a ` +
      "reason: this bag was not checked. Do not use the bag on this scan; scan it again.");
  }
  if (!payload || typeof payload.green !== "boolean") {
    return unanswered("unexpected_answer", "vein2vein's answer was not a verdict: this bag was " +
      "not checked. Do not use the bag on this scan; scan it again.");
  }
  return payload;
}

// One scan at a time. A scan waits up to ANSWER_TIMEOUT_MS for its verdict while the scan
// field keeps the focus, so the scanner's next read would be sent at once and its verdict
// could replace this one's: a RED — STOP gone before anyone saw it, and at the bedside a next
// bag sent with the wristband the red had cleared. A read (bag, wristband or photo) that
// arrives while a scan is being checked is not sent and not kept for later: the screen says
// it was not used, and a person scans it again once they have seen the verdict.
function refuseWhileChecking() {
  state.checking.refused += 1;
  $("checking-note").textContent = "A scan arrived while the previous one was being checked; " +
    "it was not used. Wait for the verdict, then scan again.";
  $("checking-note").hidden = false;
}

async function check(url, body, isForm) {
  const checking = { refused: 0 };
  state.checking = checking;
  $("checking-note").hidden = true;
  $("checking").hidden = false;
  // The answer is read against the checkpoint the scan was sent at (the bedside steps).
  $("checkpoint").disabled = true;
  let result;
  try {
    result = await post(url, body, isForm);
  } catch {
    result = unanswered("station_error", "The station could not check this scan: this bag was " +
      "not checked. Do not use the bag on this scan; scan it again.");
  } finally {
    state.checking = null;
    $("checkpoint").disabled = false;
    $("checking").hidden = true;
    $("checking-note").hidden = true;
  }
  if (show(result) && checking.refused) {
    $("verdict-note").textContent = "A scan arrived while this one was being checked; it was " +
      "not used. Read this screen, press Acknowledge, then scan again.";
    $("verdict-note").hidden = false;
  }
}

// A read made while a verdict is on the screen (a photo chosen in a dialog opened before
// the verdict came, say) is not sent either: the person has not seen the verdict yet, and at
// the bedside a red has just cleared the wristband it would have been checked against.
function refuseOverVerdict() {
  $("verdict-note").textContent = "A scan arrived while this screen was showing; it was not " +
    "used. Read this screen, press Acknowledge, then scan again.";
  $("verdict-note").hidden = false;
}

// At the bedside every bag is checked against the patient: no wristband scanned (and no
// order carried over from a first green check), no bag is sent, typed or photographed.
function needsWristbandFirst() {
  if (checkpoint() !== "bedside" || state.wristband || state.bedsideOrder) return false;
  show({ green: false, reason_code: "wristband_first",
         reason: "Scan the patient's wristband first, then the bag." });
  return true;
}

async function submitText(text) {
  if (!text) return;
  if (state.checking) { refuseWhileChecking(); return; }
  if (!$("verdict").hidden) { refuseOverVerdict(); return; }
  if (checkpoint() === "bedside" && looksLikeWristband(text)) {
    state.wristband = text;
    $("band-status").textContent = "wristband scanned ✓ — now scan the bag";
    return;
  }
  if (needsWristbandFirst()) return;
  const body = { checkpoint: checkpoint(), user: state.user, role: state.role, unit_scan: text,
                 location: $("location").value || null };
  if (checkpoint() === "bedside") {
    if (state.wristband) body.wristband_scan = state.wristband;
    else body.order_id = state.bedsideOrder;
  }
  await check("/scans", body, false);
}

async function submitPhoto(file) {
  if (state.checking) { refuseWhileChecking(); return; }
  if (!$("verdict").hidden) { refuseOverVerdict(); return; }
  if (needsWristbandFirst()) return;
  const form = new FormData();
  form.append("checkpoint", checkpoint());
  form.append("user", state.user);
  form.append("role", state.role);
  form.append("image", file);
  if ($("location").value) form.append("location", $("location").value);
  if (checkpoint() === "bedside") {
    if (state.wristband) form.append("wristband_scan", state.wristband);
    else if (state.bedsideOrder) form.append("order_id", state.bedsideOrder);
  }
  await check("/scans/image", form, true);
}

// A verdict that arrives while an unacknowledged red is showing never replaces it: the red
// stays until someone acknowledges it, and the later verdict is not shown as current (nor
// does it move the bedside check on: the red already started that over).
function keepRed(result) {
  const green = result.green === true;
  const item = document.createElement("li");
  item.className = green ? "green" : "red";
  item.textContent = `${new Date().toLocaleTimeString()} ${green ? "GREEN" : "RED"} ` +
    `${result.checkpoint || ""} ${result.unit_id || ""} ${result.reason_code || ""} ` +
    "(arrived over a red: not used)";
  $("history").prepend(item);
  $("verdict-note").textContent = `Another answer (${green ? "GREEN" : "RED"}` +
    `${result.unit_id ? ` for unit ${result.unit_id}` : ""}) arrived while this red was ` +
    "showing; it was not used. Read this screen, press Acknowledge, then scan again" +
    `${checkpoint() === "bedside" ? ", wristband first" : ""}.`;
  $("verdict-note").hidden = false;
}

// Shows a verdict full-screen; false when it was kept off the screen by an unacknowledged red.
function show(result) {
  if (state.redShowing && !$("verdict").hidden) { keepRed(result); return false; }
  const green = result.green === true;
  const panel = $("verdict");
  panel.className = `verdict ${green ? "green" : "red"}`;
  $("verdict-word").textContent = green ? "GREEN" : "RED — STOP";
  $("verdict-reason").textContent = result.reason || "";
  const detail = [result.reason_code, result.unit_id && `unit ${result.unit_id}`,
                  result.coi && `CoI ${result.coi}`, `${result.checkpoint || checkpoint()} · ${state.user}`];
  $("verdict-detail").textContent = detail.filter(Boolean).join(" · ");
  $("verdict-note").hidden = true;
  state.typedOverVerdict = "";
  panel.hidden = false;
  state.redShowing = !green;
  $("verdict-ok").focus();
  const item = document.createElement("li");
  item.className = green ? "green" : "red";
  item.textContent = `${new Date().toLocaleTimeString()} ${green ? "GREEN" : "RED"} ` +
    `${result.checkpoint || ""} ${result.unit_id || ""} ${result.reason_code || ""}`;
  $("history").prepend(item);
  if (checkpoint() === "bedside") {
    // The second person scans against the first check's order; a completed check or a red
    // verdict (the server starts the check over) sends the next scan back to the wristband,
    // so nothing from this patient's bed carries over to the next one.
    const firstCheck = green && !result.bedside_complete;
    state.bedsideOrder = firstCheck ? result.order_id : null;
    state.wristband = null;
    $("band-status").textContent = "—";
    $("progress").textContent = firstCheck
      ? "First check recorded. A second person must now sign in and scan the bag."
      : green
        ? "Bedside verification complete: two independent checks recorded. You may infuse."
        : "Start again: scan the patient's wristband, then the bag.";
  }
  return true;
}

// While a verdict shows, its Acknowledge button has the focus, and a scanner types the next
// read and then Enter: that Enter would press the button, so a red screen would vanish unread
// and the read be lost. Keys typed over a verdict are kept from the page; Enter after them
// says the read was not used, and only Enter on its own (or a click) acknowledges.
function keyOverVerdict(e) {
  if ($("verdict").hidden) return;
  if (e.key === "Enter") {
    if (!state.typedOverVerdict) return;
    e.preventDefault();
    e.stopPropagation();
    state.typedOverVerdict = "";
    refuseOverVerdict();
  } else if (e.key.length === 1) {
    e.preventDefault();
    state.typedOverVerdict += e.key;
  }
}

function dismiss() {
  state.typedOverVerdict = "";
  state.redShowing = false;
  $("verdict").hidden = true;
  $("scan").value = "";
  focusScan();
}

document.addEventListener("DOMContentLoaded", () => {
  $("signin-button").addEventListener("click", signIn);
  $("user").addEventListener("keydown", (e) => { if (e.key === "Enter") signIn(); });
  $("password").addEventListener("keydown", (e) => { if (e.key === "Enter") signIn(); });
  $("signout").addEventListener("click", signOut);
  $("checkpoint").addEventListener("change", onCheckpoint);
  $("verdict-ok").addEventListener("click", dismiss);
  document.addEventListener("keydown", keyOverVerdict, true);
  $("scan").addEventListener("keydown", (e) => {
    if (e.key === "Enter") { e.preventDefault(); const text = $("scan").value; $("scan").value = ""; submitText(text); }
  });
  $("photo").addEventListener("change", (e) => { if (e.target.files[0]) submitPhoto(e.target.files[0]); e.target.value = ""; });
  document.addEventListener("click", (e) => { if (e.target.tagName !== "INPUT" && e.target.tagName !== "SELECT") focusScan(); });
  $("user").focus();
});
