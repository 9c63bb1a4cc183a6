// The Upgrade page: follows an uploaded bundle's verification (data-verify-stream) and the upgrade's
// progress (data-progress-stream), both server-sent events from the gateway. Served by the appliance:
// the CSP allows it; nothing here is inline.
"use strict";

function followVerification(card) {
  const source = new EventSource(new URL(card.dataset.verifyStream, window.location.href));
  const bar = document.getElementById("verify-progress");
  source.addEventListener("progress", (event) => {
    const state = JSON.parse(event.data);
    bar.max = Math.max(state.total, 1);
    bar.value = state.done;
  });
  source.addEventListener("verified", () => {
    source.close();
    window.location.reload(); // the page renders the stored report and the plan
  });
  source.addEventListener("rejected", (event) => {
    source.close();
    const refusal = JSON.parse(event.data);
    document.getElementById("verify-status").textContent = "This bundle was refused and deleted.";
    const error = document.getElementById("verify-error");
    error.textContent = refusal.message;
    error.hidden = false;
    const hint = document.getElementById("verify-hint");
    hint.textContent = refusal.hint;
    hint.hidden = !refusal.hint;
  });
  source.addEventListener("error", () => {
    if (source.readyState === EventSource.CLOSED) {
      document.getElementById("verify-status").textContent = "Lost the verification stream: reload the page.";
    }
  });
}

function stepState(step) {
  return step.state || step.status || step.outcome || "";
}

function showProgress(state) {
  const request = document.getElementById("upgrade-request");
  request.textContent = state.request
    ? `Upgrade with ${state.request.bundle} requested by ${state.request.actor}: waiting for the installer to start.`
    : "No upgrade waiting to start.";
  const journal = state.journal;
  const status = document.getElementById("upgrade-journal-status");
  status.textContent = journal ? `Installer: ${journal.kind || "upgrade"} ${journal.state || journal.outcome || ""}` : "";
  const list = document.getElementById("upgrade-steps");
  const items = (journal && Array.isArray(journal.steps) ? journal.steps : []).map((step) => {
    const item = document.createElement("li");
    item.dataset.step = step.name || "";
    const badge = document.createElement("span");
    badge.className = "badge";
    badge.textContent = stepState(step);
    item.append(`${step.name || ""} `, badge);
    return item;
  });
  list.replaceChildren(...items);
  const apply = document.getElementById("apply");
  if (apply) apply.disabled = Boolean(state.request);
}

function followProgress(card) {
  const source = new EventSource(new URL(card.dataset.progressStream, window.location.href));
  source.addEventListener("progress", (event) => showProgress(JSON.parse(event.data)));
}

document.addEventListener("DOMContentLoaded", () => {
  const verification = document.querySelector("[data-verify-stream]");
  if (verification) followVerification(verification);
  const progress = document.querySelector("[data-progress-stream]");
  if (progress) followProgress(progress);
});
