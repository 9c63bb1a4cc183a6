// Follows a running job's log over server-sent events, on pages with <pre data-log-stream="URL">.
// Each line goes under a header for its stage; when the job ends the page reloads to show the new
// status (or, for a finished delete, goes to data-done-url). Served by the appliance: CSP allows it.
"use strict";

const RETRY_MS = 2000;
const MAX_RETRIES = 15;

function appendText(box, className, text) {
  const span = document.createElement("span");
  span.className = className;
  span.textContent = text;
  box.append(span, "\n");
}

function isScrolledDown(box) {
  return box.scrollHeight - box.scrollTop - box.clientHeight < 24;
}

function follow(box) {
  let lastId = Number(box.dataset.after || 0);
  let stage = box.dataset.stage || "";
  let failures = 0;

  const open = () => {
    const url = new URL(box.dataset.logStream, window.location.href);
    url.searchParams.set("after", String(lastId));
    url.searchParams.set("follow", "true");
    const source = new EventSource(url);
    source.addEventListener("open", () => { failures = 0; });

    source.addEventListener("log", (event) => {
      const line = JSON.parse(event.data);
      if (line.id <= lastId) return; // a reconnection may repeat lines already shown
      lastId = line.id;
      const stick = isScrolledDown(box);
      if (line.stage !== stage) {
        stage = line.stage;
        appendText(box, "stage", stage);
      }
      appendText(box, `line ${line.level}`, line.output);
      if (stick) box.scrollTop = box.scrollHeight;
    });

    source.addEventListener("end", (event) => {
      source.close();
      const result = JSON.parse(event.data).status;
      box.dataset.ended = result;
      if (result === "succeeded" && box.dataset.doneUrl) {
        window.location.assign(box.dataset.doneUrl);
      } else {
        window.location.reload();
      }
    });

    // EventSource retries by itself with the URL it started with; reopen from the last line instead.
    source.addEventListener("error", () => {
      if (box.dataset.ended) return;
      source.close();
      failures += 1;
      if (failures > MAX_RETRIES) {
        appendText(box, "line error", "Lost the live log. Reload the page to see the rest.");
        return;
      }
      window.setTimeout(open, RETRY_MS);
    });
  };
  open();
}

document.querySelectorAll("[data-log-stream]").forEach(follow);
