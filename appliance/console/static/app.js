// The console's shared behaviour (confirmations, copy buttons), served by the appliance itself (CSP forbids inline code).
"use strict";

document.addEventListener("submit", (event) => {
  const message = event.target.dataset.confirm;
  if (message && !window.confirm(message)) {
    event.preventDefault();
  }
});

function selectContents(node) {
  const range = document.createRange();
  range.selectNodeContents(node);
  const selection = window.getSelection();
  selection.removeAllRanges();
  selection.addRange(range);
}

// navigator.clipboard exists only on HTTPS or localhost; elsewhere select the text for Ctrl+C.
document.addEventListener("click", (event) => {
  const button = event.target;
  const id = button.dataset.copy;
  if (!id) return;
  const node = document.getElementById(id);
  const fallback = () => {
    selectContents(node);
    button.textContent = "Selected: press Ctrl+C";
  };
  if (navigator.clipboard && window.isSecureContext) {
    navigator.clipboard.writeText(node.textContent).then(() => { button.textContent = "Copied"; }, fallback);
  } else {
    fallback();
  }
});
