// The integrations page's only script: copy buttons, and the live status and tail, polled from /api/activity
// every two seconds so the counters move without a reload. Values are set with textContent, never as HTML.
"use strict";

function copyButtons() {
  document.querySelectorAll("button[data-copy]").forEach(function (button) {
    button.addEventListener("click", function () {
      var code = button.previousElementSibling;
      var text = code ? code.textContent : "";
      if (navigator.clipboard) {
        navigator.clipboard.writeText(text).then(function () { button.textContent = "Copied"; }, function () {});
      }
    });
  });
}

function cell(row, text) {
  var td = document.createElement("td");
  td.textContent = text == null ? "" : String(text);
  row.appendChild(td);
  return td;
}

function payloadCell(row, payload) {
  var td = document.createElement("td");
  if (payload) {
    var details = document.createElement("details");
    var summary = document.createElement("summary");
    summary.textContent = "payload";
    var pre = document.createElement("pre");
    pre.textContent = payload;
    details.appendChild(summary);
    details.appendChild(pre);
    td.appendChild(details);
  } else {
    var span = document.createElement("span");
    span.className = "hint";
    span.textContent = "not kept";
    td.appendChild(span);
  }
  row.appendChild(td);
}

function render(section, data) {
  var stats = {
    events_last_hour: data.events_last_hour,
    events_last_day: data.events_last_day,
    rejected_last_day: data.rejected_last_day,
    refused_last_day: data.refused_last_day,
    last_event_at: data.last_event_at || "never",
  };
  Object.keys(stats).forEach(function (key) {
    var el = section.querySelector("[data-stat='" + key + "']");
    if (el) { el.textContent = String(stats[key]); }
  });
  var grace = section.querySelector("[data-field='grace-until']");
  if (grace) { grace.textContent = data.grace_until || "-"; }
  var rejects = section.querySelector("table.rejects tbody");
  if (rejects) {
    rejects.replaceChildren();
    data.rejects.forEach(function (r) {
      var row = document.createElement("tr");
      cell(row, r.reason);
      cell(row, r.count);
      payloadCell(row, r.sample);
      rejects.appendChild(row);
    });
  }
  var tail = section.querySelector("table.tail tbody");
  if (tail) {
    var open = {};
    tail.querySelectorAll("tr").forEach(function (row) {
      var d = row.querySelector("details");
      if (d && d.open) { open[row.dataset.seq] = true; }
    });
    tail.replaceChildren();
    data.tail.forEach(function (t) {
      var row = document.createElement("tr");
      row.className = "kind-" + t.kind;
      row.dataset.seq = String(t.seq);
      cell(row, t.received_at);
      cell(row, t.kind);
      cell(row, t.summary);
      cell(row, t.reason || t.message_id || "");
      payloadCell(row, t.payload);
      var d = row.querySelector("details");
      if (d && open[String(t.seq)]) { d.open = true; }
      tail.appendChild(row);
    });
  }
}

function poll() {
  fetch("/api/activity", { credentials: "same-origin", cache: "no-store" })
    .then(function (response) { return response.ok ? response.json() : null; })
    .then(function (doc) {
      if (!doc) { return; }
      document.querySelectorAll("section.connection").forEach(function (section) {
        var data = doc.connections[section.dataset.connectionId];
        if (data) { render(section, data); }
      });
      document.body.dataset.polled = String(Date.now());
    })
    .catch(function () {})
    .finally(function () { window.setTimeout(poll, 2000); });
}

document.addEventListener("DOMContentLoaded", function () {
  copyButtons();
  if (document.querySelector("section.connection")) { poll(); }
});
