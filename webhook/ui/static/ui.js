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

// A choice made while htmx was not yet listening (before its deferred script ran, or on new
// content before htmx processed it) would load nothing. htmx announces each piece of content it
// has set up (the whole body first) with htmx:load; every choice or text in it that already
// differs from what the server rendered is then replayed once.
document.addEventListener("htmx:load", function (event) {
  var root = event.target;
  if (!window.htmx || !root.querySelectorAll) return;
  var selects = Array.prototype.slice.call(root.querySelectorAll("select"));
  if (root.matches && root.matches("select")) selects.push(root);
  selects.forEach(function (select) {
    if (!select.closest("[hx-get]")) return;
    // Without a `selected` attribute a select starts on its first option.
    var initial = Array.prototype.findIndex.call(select.options, function (option) {
      return option.defaultSelected;
    });
    if (select.selectedIndex !== Math.max(initial, 0)) window.htmx.trigger(select, "change");
  });
  root.querySelectorAll("input[hx-get]").forEach(function (input) {
    if (input.value !== input.defaultValue) window.htmx.trigger(input, "input");
  });
});
