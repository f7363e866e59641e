// Runs gateway/api/static/station.js under Node with just enough of a browser for it: the
// page's elements (from station.html), focus, keyboard events with their default actions
// (a character typed into an input, Enter clicking a focused button) and a scripted fetch.
// An answer with "held": NAME waits until a {"release": NAME} step (at once if that step came
// first), so a scenario decides when each verdict arrives relative to the reads around it.
// Used by test_station_page.py where no Chromium is installed; prints what the screen shows.
"use strict";

const fs = require("fs");
const path = require("path");
const vm = require("vm");

const [pageDir, scenarioText] = process.argv.slice(2);
const scenario = JSON.parse(scenarioText);
const html = fs.readFileSync(path.join(pageDir, "station.html"), "utf8");
const script = fs.readFileSync(path.join(pageDir, "station.js"), "utf8");

class Element {
  constructor(tagName, id, attributes) {
    this.tagName = tagName.toUpperCase();
    this.id = id;
    this.hidden = /\shidden(\s|$|=)/.test(attributes);
    this.value = "";
    this.textContent = "";
    this.className = (attributes.match(/class="([^"]*)"/) || [, ""])[1];
    this.children = [];
    this.listeners = {};
    this.files = [];
  }
  addEventListener(type, listener) { (this.listeners[type] ||= []).push(listener); }
  focus() { document.activeElement = this; }
  prepend(child) { this.children.unshift(child); }
}

const elements = {};
for (const match of html.matchAll(/<(\w+)([^>]*?)\sid="([^"]+)"([^>]*)>/g)) {
  const [, tag, before, id, after] = match;
  elements[id] = new Element(tag, id, `${before} ${after}`);
}
for (const match of html.matchAll(/<select[^>]*id="([^"]+)"[^>]*>\s*<option value="([^"]*)"/g)) {
  elements[match[1]].value = match[2];
}

const documentListeners = { capture: {}, bubble: {} };
const document = {
  activeElement: null,
  getElementById: (id) => elements[id] || null,
  createElement: (tag) => new Element(tag, "", ""),
  addEventListener(type, listener, capture) {
    const phase = capture === true || (capture && capture.capture) ? "capture" : "bubble";
    (documentListeners[phase][type] ||= []).push(listener);
  },
};

function dispatch(target, type, fields) {
  const event = {
    type, target, ...fields, defaultPrevented: false, stopped: false,
    preventDefault() { this.defaultPrevented = true; },
    stopPropagation() { this.stopped = true; },
  };
  for (const listener of documentListeners.capture[type] || []) listener(event);
  if (!event.stopped) for (const listener of target.listeners[type] || []) listener(event);
  if (!event.stopped) for (const listener of documentListeners.bubble[type] || []) listener(event);
  return event;
}

function press(key) {
  const target = document.activeElement || elements.user;
  const event = dispatch(target, "keydown", { key });
  if (event.defaultPrevented) return;
  if (key.length === 1 && target.tagName === "INPUT") target.value += key;
  if (key === "Enter" && target.tagName === "BUTTON") dispatch(target, "click", {});
}

const requests = [];
const answers = [...(scenario.answers || [])];
const released = new Set();
const waiting = {};  // held answer name -> what lets it through
function fetch(url, init = {}) {
  const body = init.body instanceof FormData ? Object.fromEntries(init.body.entries())
    : init.body instanceof URLSearchParams ? Object.fromEntries(init.body.entries())
    : init.body ? JSON.parse(init.body) : null;
  requests.push({ url, body });
  const reply = (status, payload) => Promise.resolve({
    ok: status >= 200 && status < 300, status,
    json: () => (payload === undefined ? Promise.reject(new SyntaxError("not JSON"))
      : Promise.resolve(payload)),
  });
  if (url === "/auth/login") return reply(200, { username: body.username, role: body.role });
  if (url === "/auth/logout") return reply(204, {});
  const answer = answers.shift() || { network: true };
  if (answer.network) return Promise.reject(new TypeError("Failed to fetch"));
  if (answer.hang) {
    return new Promise((resolve, reject) => {
      if (init.signal) init.signal.addEventListener("abort", () => {
        const error = new Error("The operation was aborted."); error.name = "AbortError";
        reject(error);
      });
    });
  }
  if (answer.held !== undefined) {
    const answered = () => reply(answer.status || 200, answer.json);
    if (released.has(answer.held)) return answered();
    return new Promise((resolve) => { waiting[answer.held] = () => resolve(answered()); });
  }
  return reply(answer.status || 200, answer.json);
}

const problems = [];
process.on("unhandledRejection", (reason) => problems.push(String(reason)));
const context = {
  document, fetch, console, FormData, URLSearchParams, AbortController, Date, Blob,
  // Time is not what these scenarios are about: any wait the page asks for passes at once.
  setTimeout: (fn) => setTimeout(fn, 0), clearTimeout,
};
context.window = context;
vm.createContext(context);
vm.runInContext(script, context);

// Lets every promise, and every wait the page set, run out before the screen is read.
async function settle() {
  for (let round = 0; round < 3; round += 1) {
    for (let i = 0; i < 30; i += 1) await new Promise((resolve) => setImmediate(resolve));
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

function screen() {
  const verdict = elements.verdict;
  return {
    verdict_shown: !verdict.hidden,
    verdict_class: verdict.className,
    word: elements["verdict-word"].textContent,
    reason: elements["verdict-reason"].textContent,
    detail: elements["verdict-detail"].textContent,
    note: elements["verdict-note"] && !elements["verdict-note"].hidden
      ? elements["verdict-note"].textContent : "",
    progress: elements.progress.textContent,
    band_status: elements["band-status"].textContent,
    focused: document.activeElement && document.activeElement.id,
    checking: elements.checking ? !elements.checking.hidden : false,
    checking_note: elements["checking-note"] && !elements["checking-note"].hidden
      ? elements["checking-note"].textContent : "",
    history: elements.history.children.map((item) => item.textContent),
  };
}

(async () => {
  for (const listener of documentListeners.bubble.DOMContentLoaded || []) listener({});
  const snapshots = [];
  for (const step of scenario.steps) {
    if (step.signin) {
      elements.user.value = step.signin;
      elements.role.value = step.role || "nurse";
      dispatch(elements["signin-button"], "click", {});
    } else if (step.checkpoint) {
      elements.checkpoint.value = step.checkpoint;
      dispatch(elements.checkpoint, "change", {});
    } else if (step.wedge !== undefined) {
      for (const key of step.wedge) press(key);
      press("Enter");
    } else if (step.ack) {
      dispatch(elements["verdict-ok"], "click", {});
    } else if (step.signout) {
      dispatch(elements.signout, "click", {});
    } else if (step.release !== undefined) {
      released.add(step.release);
      if (waiting[step.release]) waiting[step.release]();
    } else if (step.photo) {
      // A picture chosen in the photo field (a file dialog may have opened before a verdict).
      elements.photo.files = [new Blob(["not really a picture"], { type: "image/png" })];
      dispatch(elements.photo, "change", {});
    } else if (step.arrives) {
      // A verdict reaching the page by any route at all: handed straight to its show().
      context.show(step.arrives);
    }
    await settle();
    snapshots.push(screen());
  }
  process.stdout.write(JSON.stringify({ snapshots, requests, problems }));
})();
