// Live progress of one batch page: polls the console's JSON view of GetBatch until the batch is final.
// Only text and values change (never HTML), so nothing read from the server is interpreted as markup.
(function () {
  "use strict";
  var section = document.querySelector("[data-progress-url]");
  if (!section || section.getAttribute("data-final") === "true") return;
  var url = section.getAttribute("data-progress-url");
  function show(view) {
    var fields = section.querySelectorAll("[data-field]");
    for (var i = 0; i < fields.length; i++) {
      var name = fields[i].getAttribute("data-field");
      if (name in view) fields[i].textContent = String(view[name]);
    }
    var cells = document.querySelectorAll("[data-count]");
    for (var j = 0; j < cells.length; j++) {
      var status = cells[j].getAttribute("data-count");
      cells[j].textContent = String(view.counts[status] || 0);
    }
    var bars = section.querySelectorAll("[data-progress]");
    for (var k = 0; k < bars.length; k++) bars[k].value = view.percent;
  }
  function poll() {
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        if (!response.ok) throw new Error(String(response.status));
        return response.json();
      })
      .then(function (view) {
        show(view);
        if (view.final) section.setAttribute("data-final", "true");
        else window.setTimeout(poll, 1000);
      })
      .catch(function () { window.setTimeout(poll, 5000); });
  }
  window.setTimeout(poll, 1000);
})();
