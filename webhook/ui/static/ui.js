// The one script of the admin UI (CSP: script-src 'self', no inline handlers): the Copy button.
document.addEventListener("click", function (event) {
  var button = event.target.closest("[data-copy-target]");
  if (!button) return;
  var field = document.getElementById(button.getAttribute("data-copy-target"));
  var status = document.getElementById(button.getAttribute("aria-describedby"));
  if (!field) return;
  function done(message) { if (status) status.textContent = message; }
  field.select();
  if (navigator.clipboard && window.isSecureContext) {
    navigator.clipboard.writeText(field.value).then(
      function () { done("Copied to the clipboard."); },
      function () { done("Press Ctrl+C (or Cmd+C) to copy the selected secret."); }
    );
  } else {
    done(document.execCommand && document.execCommand("copy")
      ? "Copied to the clipboard."
      : "Press Ctrl+C (or Cmd+C) to copy the selected secret.");
  }
});
