// Keeps the relay page's counters current by polling GET /api/v2/relay every few seconds.
// Served by the appliance: the console's CSP allows it, and it writes text only, never HTML.
"use strict";

const RELAY_POLL_MS = 5000;

async function refreshRelay(table) {
  const response = await fetch(table.dataset.relayUrl, { credentials: "same-origin",
                                                         headers: { Accept: "application/json" } });
  if (!response.ok) return;
  const body = await response.json();
  for (const relay of body.relays) {
    for (const [name, value] of Object.entries(relay.counters)) {
      const cell = table.querySelector(`[data-relay="${CSS.escape(relay.relay_name)}"][data-counter="${CSS.escape(name)}"]`);
      if (cell) cell.textContent = String(value);
    }
    const updated = table.querySelector(`[data-relay="${CSS.escape(relay.relay_name)}"][data-counter="updated_at"]`);
    if (updated) updated.textContent = relay.updated_at.slice(0, 19).replace("T", " ") + " UTC";
  }
}

document.querySelectorAll("[data-relay-url]").forEach((table) => {
  const tick = () => {
    refreshRelay(table).catch(() => {}).finally(() => window.setTimeout(tick, RELAY_POLL_MS));
  };
  window.setTimeout(tick, RELAY_POLL_MS);
});
