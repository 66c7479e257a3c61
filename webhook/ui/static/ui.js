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

// A choice made before htmx started (scripts are deferred: a page can be used a moment before
// they run) would otherwise load nothing. htmx sets itself up first on DOMContentLoaded (its
// script comes first); then every choice or text already changed is replayed once.
document.addEventListener("DOMContentLoaded", function () {
  if (!window.htmx) return;
  document.querySelectorAll("[hx-get] select, select[hx-get]").forEach(function (select) {
    var changed = Array.prototype.some.call(select.options, function (option) {
      return option.selected !== option.defaultSelected;
    });
    if (changed) window.htmx.trigger(select, "change");
  });
  document.querySelectorAll("input[hx-get]").forEach(function (input) {
    if (input.value !== input.defaultValue) window.htmx.trigger(input, "input");
  });
});
