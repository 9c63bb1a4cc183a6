// The console's only script, served by the appliance itself (CSP forbids inline code).
"use strict";
document.addEventListener("submit", (event) => {
  const message = event.target.dataset.confirm;
  if (message && !window.confirm(message)) {
    event.preventDefault();
  }
});
document.addEventListener("click", (event) => {
  const id = event.target.dataset.copy;
  if (!id) return;
  const text = document.getElementById(id).textContent;
  navigator.clipboard.writeText(text).then(() => { event.target.textContent = "Copied"; });
});
