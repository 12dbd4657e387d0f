// Supervisor dashboard: apply server-sent snapshots without reloading the page.
// Values are written with textContent only, so nothing from the server is parsed as HTML.
(function () {
  "use strict";
  var status = document.getElementById("live-status");
  if (!status || !window.EventSource) { return; }
  var labels = {};
  var template = document.getElementById("state-labels");
  if (template) {
    template.content.querySelectorAll("[data-state]").forEach(function (node) {
      labels[node.getAttribute("data-state")] = node.textContent;
    });
  }

  function lookup(data, path) {
    return path.split(".").reduce(function (value, key) {
      return value == null ? undefined : value[key];
    }, data);
  }

  function cell(text, className) {
    var td = document.createElement("td");
    td.textContent = text;
    if (className) { td.className = className; }
    return td;
  }

  function applyCampaigns(campaigns) {
    campaigns.forEach(function (c) {
      var row = document.querySelector('tr[data-campaign="' + Number(c.id) + '"]');
      if (!row) { return; }
      var lang = document.documentElement.lang;
      row.querySelector('[data-field="status"]').textContent = lang === "ja" ? c.status_ja : c.status;
      ["targets", "open", "done"].forEach(function (field) {
        row.querySelector('[data-field="' + field + '"]').textContent = String(c[field]);
      });
    });
  }

  function applyOperators(operators) {
    var body = document.querySelector("#operators tbody");
    if (!body) { return; }
    var rows = operators.map(function (o) {
      var tr = document.createElement("tr");
      tr.appendChild(cell(o.name));
      var state = cell(labels[o.state] || o.state);
      state.setAttribute("data-state", o.state);
      tr.appendChild(state);
      tr.appendChild(cell(o.since));
      return tr;
    });
    body.replaceChildren.apply(body, rows);
  }

  function apply(data) {
    document.querySelectorAll("[data-live]").forEach(function (node) {
      var value = lookup(data, node.getAttribute("data-live"));
      node.textContent = value == null ? "0" : String(value);
    });
    document.getElementById("live-at").textContent = data.at;
    applyCampaigns(data.campaigns || []);
    applyOperators(data.operators || []);
  }

  var source = new EventSource(status.getAttribute("data-live-url"));
  source.addEventListener("snapshot", function (event) {
    apply(JSON.parse(event.data));
    status.textContent = "● LIVE";
    status.className = "ok";
  });
  source.onerror = function () {
    status.textContent = "…";
    status.className = "hint";
  };
})();
