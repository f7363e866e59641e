// Talking to the gateway: JSON calls and the server-sent event stream.
//
// The stream is read with fetch() rather than EventSource so that the same headers go with
// it as with every other call: in development mode the page acts as whoever the URL says
// (?role=hospital&tenant=st-mary&actor=coord.lee becomes X-V2V-* headers); with real login
// the session cookie goes with both, and these headers are ignored by the gateway.
"use strict";

const params = new URLSearchParams(location.search);

export const identity = {
  role: params.get("role"),
  tenant: params.get("tenant"),
  actor: params.get("actor"),
};

function headers(extra = {}) {
  const result = { Accept: "application/json", ...extra };
  if (identity.role) result["X-V2V-Role"] = identity.role;
  if (identity.tenant) result["X-V2V-Tenant"] = identity.tenant;
  if (identity.actor) result["X-V2V-Actor"] = identity.actor;
  return result;
}

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

async function call(method, path, body) {
  const init = { method, headers: headers(), credentials: "same-origin" };
  if (body !== undefined) {
    init.headers = headers({ "Content-Type": "application/json" });
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  const payload = await response.json().catch(() => ({}));
  if (!response.ok) throw new ApiError(response.status, payload);
  return payload;
}

export const getJSON = (path) => call("GET", path);
export const postJSON = (path, body) => call("POST", path, body ?? {});

// Parse one SSE frame ("event: x\ndata: {...}") into {event, data}; comments return null.
function parseFrame(frame) {
  let event = "message";
  const data = [];
  for (const line of frame.split("\n")) {
    if (line.startsWith(":") || line === "") continue;
    const colon = line.indexOf(":");
    const field = colon === -1 ? line : line.slice(0, colon);
    const value = colon === -1 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (field === "event") event = value;
    else if (field === "data") data.push(value);
  }
  if (!data.length) return null;
  try { return { event, data: JSON.parse(data.join("\n")) }; } catch { return null; }
}

// Follow the event stream for as long as the page lives, reconnecting with backoff.
// onStatus receives "open", "connecting" or "error"; after any reconnect onResync runs,
// because changes made while disconnected were not streamed.
export function follow(path, { onEvent, onStatus, onResync }) {
  let attempt = 0;
  let connectedBefore = false;
  async function connect() {
    onStatus("connecting");
    try {
      const response = await fetch(path, {
        headers: headers({ Accept: "text/event-stream" }), credentials: "same-origin",
        cache: "no-store",
      });
      if (!response.ok || !response.body) throw new Error(`HTTP ${response.status}`);
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let end;
        while ((end = buffer.indexOf("\n\n")) !== -1) {
          const frame = parseFrame(buffer.slice(0, end));
          buffer = buffer.slice(end + 2);
          if (!frame) continue;
          if (frame.event === "hello") {
            attempt = 0;
            onStatus("open");
            if (connectedBefore) onResync();
            connectedBefore = true;
          } else {
            onEvent(frame.event, frame.data);
          }
        }
      }
    } catch (error) {
      onStatus("error");
    }
    attempt += 1;
    setTimeout(connect, Math.min(30000, 500 * 2 ** Math.min(attempt, 6)));
  }
  connect();
}
