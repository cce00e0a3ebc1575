// A small graphql-transport-ws client for one subscription whose items carry a `cursor` (Event.cursor): it
// authenticates in connection_init, answers the server's pings, and after a dropped connection reconnects with
// backoff and resubscribes with `after: <last cursor>`, so nothing is missed and nothing repeats.

import { ApiError, announceRefusedKey, apiKey, errorFromGraphQL, friendlyMessage } from "./api.js";

const PROTOCOL = "graphql-transport-ws";
const SUBSCRIPTION_ID = "1";
const FIRST_RETRY_MS = 500;
const MAX_RETRY_MS = 5000;
// Close codes after which retrying cannot help: the key was refused (4403), or the messages were malformed (4400).
const FATAL_CLOSE_CODES = new Set([4400, 4401, 4403]);

function socketUrl() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}/graphql`;
}

/**
 * Start `query` (a subscription with an `$after: String` variable) and call `onEvent` with each item of `field` (one event, or a list of them).
 * `onStatus` gets "connecting", "live", "reconnecting" or "stopped"; `onReconnect` runs after each resumed
 * connection (refresh anything not carried by events); `onFatal` gets an ApiError when retrying cannot help.
 * Returns `stop()`.
 */
export function subscribe({ query, variables, field, after, onEvent, onStatus, onReconnect, onFatal }) {
  let socket = null;
  let stopped = false;
  let attempts = 0;
  let retryTimer = null;
  let connectedBefore = false;
  let cursor = after;

  const send = (ws, message) => ws.readyState === WebSocket.OPEN && ws.send(JSON.stringify(message));

  function connect() {
    retryTimer = null;
    onStatus?.(connectedBefore ? "reconnecting" : "connecting");
    const ws = new WebSocket(socketUrl(), PROTOCOL);
    socket = ws;
    ws.addEventListener("open", () => {
      send(ws, { type: "connection_init", payload: { authorization: `Bearer ${apiKey.get()}` } });
    });
    ws.addEventListener("message", (message) => receive(ws, message));
    ws.addEventListener("close", (event) => closed(ws, event));
  }

  function receive(ws, message) {
    if (ws !== socket) return; // a connection already given up (stopped, or replaced by a newer one)
    let data;
    try {
      data = JSON.parse(message.data);
    } catch {
      return;
    }
    switch (data.type) {
      case "connection_ack":
        attempts = 0;
        send(ws, {
          id: SUBSCRIPTION_ID,
          type: "subscribe",
          payload: { query, variables: { ...variables, after: cursor } },
        });
        onStatus?.("live");
        if (connectedBefore) onReconnect?.();
        connectedBefore = true;
        break;
      case "ping":
        send(ws, { type: "pong" });
        break;
      case "next":
        if (data.payload?.errors?.length) fail(errorFromGraphQL(data.payload.errors[0]));
        else if (data.payload?.data?.[field]) {
          // A batched field (directoryEventBatches) brings a list of events in order; a plain one, one event.
          const value = data.payload.data[field];
          for (const item of Array.isArray(value) ? value : [value]) {
            cursor = item.cursor;
            onEvent(item);
          }
        }
        break;
      case "error":
        fail(errorFromGraphQL(Array.isArray(data.payload) ? data.payload[0] : data.payload));
        break;
      case "complete":
        ws.close(1000); // the server ended the stream (it is shutting down): reconnect and resume
        break;
    }
  }

  function closed(ws, event) {
    if (socket !== ws) return;
    socket = null;
    if (stopped) return;
    if (FATAL_CLOSE_CODES.has(event.code)) {
      const code = event.code === 4403 ? "UNAUTHENTICATED" : "ERROR";
      if (code === "UNAUTHENTICATED") announceRefusedKey();
      fail(new ApiError(friendlyMessage(code, event.reason || `connection closed (${event.code})`), code));
      return;
    }
    onStatus?.("reconnecting");
    const delay = Math.min(MAX_RETRY_MS, FIRST_RETRY_MS * 2 ** attempts) * (0.75 + Math.random() / 2);
    attempts += 1;
    retryTimer = setTimeout(connect, delay);
  }

  function fail(error) {
    stop();
    onFatal?.(error);
  }

  // Back online, or the tab shown again (background tabs run timers late): retry now rather than after the backoff.
  function reconnectNow() {
    if (document.hidden) return;
    if (retryTimer !== null && !stopped) {
      clearTimeout(retryTimer);
      connect();
    }
  }

  function stop() {
    if (stopped) return;
    stopped = true;
    clearTimeout(retryTimer);
    window.removeEventListener("online", reconnectNow);
    document.removeEventListener("visibilitychange", reconnectNow);
    const ws = socket;
    socket = null;
    if (ws) {
      send(ws, { id: SUBSCRIPTION_ID, type: "complete" });
      ws.close(1000);
    }
    onStatus?.("stopped");
  }

  window.addEventListener("online", reconnectNow);
  document.addEventListener("visibilitychange", reconnectNow);
  connect();
  return stop;
}
