// Keeps each agent panel of the workspace page current: status, lifecycle, troubleshooting hint, metadata
// and new startup log lines, by polling the API's JSON every few seconds (GET needs no CSRF token).
// Served by the appliance: the console's CSP allows it, and it writes text only, never HTML.
"use strict";

const POLL_MS = 3000;

function formatWhen(value) {
  if (!value) return "—";
  return new Date(value).toISOString().slice(0, 19).replace("T", " ") + " UTC";
}

function setBadge(node, value) {
  if (!node || node.textContent === value) return;
  node.textContent = value;
  node.className = node.className.split(" ").slice(0, node.classList.contains("lifecycle") ? 2 : 1)
    .concat(value).join(" ");
}

function showAgent(panel, agent) {
  const field = (name) => panel.querySelector(`[data-agent-field="${name}"]`);
  setBadge(field("status"), agent.status);
  setBadge(field("lifecycle_state"), agent.lifecycle_state);
  const hint = field("troubleshooting_hint");
  hint.textContent = agent.troubleshooting_hint;
  hint.hidden = !agent.troubleshooting_hint;
  field("last_connected_at").textContent = formatWhen(agent.last_connected_at);
  field("version").textContent = agent.version || "—";
  for (const item of agent.metadata) {
    const cell = panel.querySelector(`[data-metadata-key="${CSS.escape(item.description.key)}"]`);
    if (!cell) continue;
    cell.textContent = item.error || item.value || "—";
    cell.classList.toggle("error-text", Boolean(item.error));
  }
}

function appendLogs(box, lines) {
  const stick = box.scrollHeight - box.scrollTop - box.clientHeight < 24;
  for (const line of lines) {
    const span = document.createElement("span");
    span.className = `line ${line.level}`;
    span.textContent = line.output;
    box.append(span, "\n");
    box.dataset.after = String(line.id);
  }
  if (stick && lines.length) box.scrollTop = box.scrollHeight;
}

async function getJson(url) {
  const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
  if (!response.ok) throw new Error(`${url}: ${response.status}`);
  return response.json();
}

async function refresh(panel) {
  const base = panel.dataset.agentUrl;
  const box = panel.querySelector("[data-agent-logs]");
  const [agent, logs] = await Promise.all([
    getJson(base),
    getJson(`${base}/logs?after=${encodeURIComponent(box.dataset.after || "0")}`),
  ]);
  showAgent(panel, agent);
  appendLogs(box, logs.logs);
}

function follow(panel) {
  const tick = () => {
    refresh(panel).catch(() => {}).finally(() => window.setTimeout(tick, POLL_MS));
  };
  window.setTimeout(tick, POLL_MS);
}

document.querySelectorAll("[data-agent-url]").forEach(follow);
