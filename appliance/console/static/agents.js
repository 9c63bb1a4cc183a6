// Keeps each agent panel of the workspace page current: status, lifecycle, troubleshooting hint, metadata,
// listening ports and new startup log lines, and each app's health, by polling the API's JSON every few
// seconds (GET needs no CSRF token).
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
  const kept = node.classList.contains("lifecycle") || node.classList.contains("health") ? 2 : 1;
  node.className = node.className.split(" ").slice(0, kept).concat(value).join(" ");
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

function portItem(port, cliRef) {
  const item = document.createElement("li");
  item.dataset.port = String(port.port);
  const number = document.createElement("code");
  number.className = "port";
  number.textContent = String(port.port);
  const name = document.createElement("span");
  name.className = "muted";
  name.textContent = port.process_name;
  const command = document.createElement("code");
  command.className = "command";
  command.textContent = `appliance port-forward ${cliRef} --tcp ${port.port}:${port.port}`;
  const copy = document.createElement("button");
  copy.type = "button";
  copy.className = "copy";
  copy.dataset.copy = command.textContent;
  copy.textContent = "Copy";
  item.append(number, " ", name, " ", command, " ", copy);
  return item;
}

function showPorts(panel, ports) {
  const list = panel.querySelector("[data-listening-ports]");
  const shown = Array.from(list.children).map((item) => item.dataset.port).join(",");
  if (shown !== ports.map((port) => String(port.port)).join(",")) {
    list.replaceChildren(...ports.map((port) => portItem(port, list.dataset.cliRef)));
  }
  panel.querySelector("[data-listening-ports-empty]").hidden = ports.length > 0;
}

async function refresh(panel) {
  const base = panel.dataset.agentUrl;
  const box = panel.querySelector("[data-agent-logs]");
  const [agent, logs, ports] = await Promise.all([
    getJson(base),
    getJson(`${base}/logs?after=${encodeURIComponent(box.dataset.after || "0")}`),
    getJson(`${base}/listening-ports`),
  ]);
  showAgent(panel, agent);
  appendLogs(box, logs.logs);
  showPorts(panel, ports.ports);
}

async function refreshAppHealth(url) {
  const workspace = await getJson(url);
  for (const resource of workspace.latest_build.resources) {
    for (const agent of resource.agents) {
      for (const app of agent.apps) {
        const selector = `[data-agent="${CSS.escape(agent.name)}"] [data-app="${CSS.escape(app.slug)}"] [data-app-health]`;
        setBadge(document.querySelector(selector), app.health);
      }
    }
  }
}

function every(work) {
  const tick = () => {
    work().catch(() => {}).finally(() => window.setTimeout(tick, POLL_MS));
  };
  window.setTimeout(tick, POLL_MS);
}

document.querySelectorAll("[data-agent-url]").forEach((panel) => every(() => refresh(panel)));
document.querySelectorAll("[data-workspace-url]").forEach((node) => every(() => refreshAppHealth(node.dataset.workspaceUrl)));

// Copy a port's forward command; a page served over plain http may not offer the clipboard: then select it.
document.addEventListener("click", (event) => {
  const button = event.target.closest("button[data-copy]");
  if (!button) return;
  const done = () => { button.textContent = "Copied"; };
  const select = () => window.getSelection().selectAllChildren(button.previousElementSibling);
  if (navigator.clipboard) navigator.clipboard.writeText(button.dataset.copy).then(done, select);
  else select();
});
