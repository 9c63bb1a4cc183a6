// The web terminal: xterm.js on the gateway's WebSocket (GET /api/v2/workspaceagents/{id}/pty).
// Wire format (appliance/sdk/terminal.py): we send text frames {"data": keys} and {"height", "width"};
// the server sends binary frames of output. The reconnect id lives in sessionStorage, so a reload or a
// dropped connection re-attaches to the same shell (the agent replays its scrollback); a shell that
// exited gets a fresh id. Served by the appliance: the CSP allows it and nothing here is inline.
"use strict";

const BACKOFF_FIRST_MS = 500;
const BACKOFF_MAX_MS = 10000;
const CLOSE_EXITED = 1000;

// xterm.js styles its rows by inserting <style> elements, which a strict CSP (style-src 'self')
// refuses to apply. Constructed style sheets are CSSOM, not inline markup: mirror each <style>
// xterm writes into one, and keep them current as it rewrites them (on resize and theme changes).
function mirrorStyles(container) {
  const copy = () => {
    document.adoptedStyleSheets = Array.from(container.querySelectorAll("style"), (element) => {
      const sheet = new CSSStyleSheet();
      sheet.replaceSync(element.textContent || "");
      return sheet;
    });
  };
  new MutationObserver(copy).observe(container, { childList: true, subtree: true, characterData: true });
  copy();
}

function newReconnectId() {
  // crypto.randomUUID needs a secure context; the console may be served over plain HTTP on a LAN.
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[6] = (bytes[6] & 0x0f) | 0x40;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

function reconnectId(key, fresh) {
  let id = fresh ? null : sessionStorage.getItem(key);
  if (!id) {
    id = newReconnectId();
    sessionStorage.setItem(key, id);
  }
  return id;
}

function start(container) {
  const status = document.getElementById("terminal-status");
  const say = (text, isError) => {
    status.textContent = text;
    status.classList.toggle("error", Boolean(isError));
  };
  const term = new Terminal({ cursorBlink: true, scrollback: 5000, convertEol: false });
  const fit = new FitAddon.FitAddon();
  term.loadAddon(fit);
  mirrorStyles(container);
  term.open(container);
  fit.fit();
  term.focus();

  let socket = null;
  let delay = BACKOFF_FIRST_MS;
  let exited = false;
  const send = (message) => {
    if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(message));
  };

  const connect = () => {
    const params = new URLSearchParams({
      reconnect: reconnectId(container.dataset.storageKey, exited),
      width: String(term.cols), height: String(term.rows),
    });
    if (container.dataset.command) params.set("command", container.dataset.command);
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    exited = false;
    socket = new WebSocket(`${scheme}//${location.host}${container.dataset.socketPath}?${params}`);
    socket.binaryType = "arraybuffer";
    socket.onopen = () => {
      term.reset(); // the agent replays the scrollback: start from a clean screen so nothing shows twice
      delay = BACKOFF_FIRST_MS;
      say("Connected.");
    };
    socket.onmessage = (event) => term.write(new Uint8Array(event.data));
    socket.onclose = (event) => {
      socket = null;
      if (event.code === CLOSE_EXITED) {
        exited = true;
        say(`${event.reason || "The shell exited."} Press a key to start a new one.`);
        return;
      }
      const why = event.reason || "The connection dropped.";
      say(`${why} Reconnecting in ${Math.round(delay / 100) / 10} s…`, true);
      setTimeout(connect, delay);
      delay = Math.min(delay * 2, BACKOFF_MAX_MS);
    };
  };

  term.onData((data) => {
    if (exited && !socket) connect();
    else send({ data });
  });
  term.onResize(({ cols, rows }) => send({ height: rows, width: cols }));
  new ResizeObserver(() => fit.fit()).observe(container);
  connect();
}

document.addEventListener("DOMContentLoaded", () => {
  const container = document.getElementById("terminal");
  if (container) start(container);
});
