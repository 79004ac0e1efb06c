// Live updates: on each server-sent event, fetch this page again and swap its parts.
(function () {
  "use strict";
  if (!window.EventSource) return;
  var timer = null;
  function openDetails() {
    var open = {};
    document.querySelectorAll("details[open] > summary").forEach(function (s) {
      open[s.textContent] = true;
    });
    return open;
  }
  function swap(doc) {
    var open = openDetails();
    ["summary", "main"].forEach(function (id) {
      var now = document.getElementById(id), next = doc.getElementById(id);
      if (now && next) now.replaceWith(next);
    });
    var errs = document.getElementById("last-errors"), nextErrs = doc.getElementById("last-errors");
    if (errs && !nextErrs) errs.remove();
    if (!errs && nextErrs) document.getElementById("summary").after(nextErrs);
    if (errs && nextErrs) errs.replaceWith(nextErrs);
    document.querySelectorAll("details > summary").forEach(function (s) {
      if (open[s.textContent]) s.parentElement.open = true;
    });
    document.body.dataset.updated = String(Date.now());
  }
  function refresh() {
    timer = null;
    fetch(location.pathname + location.search, {credentials: "same-origin"})
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (text) {
        if (text) swap(new DOMParser().parseFromString(text, "text/html"));
      })
      .catch(function () {});
  }
  var source = new EventSource("/live");
  source.onmessage = function () {
    if (!timer) timer = setTimeout(refresh, 100);
  };
  source.onopen = function () { document.body.dataset.live = "on"; };
})();
