// crashd dashboard: countdowns to ticket due times, copy-as-Markdown, filters that apply
// themselves. Plain JS, no libraries; every page works without it (the server renders the
// first countdown text, and every filter form has its button).
"use strict";

function span(seconds) {
  // Two largest units, as server/dashboard/pages.py duration(): "3d 4h", "5h 12m", "42m", "30s".
  var left = Math.floor(Math.abs(seconds));
  var d = Math.floor(left / 86400), h = Math.floor(left % 86400 / 3600), m = Math.floor(left % 3600 / 60);
  if (d) return d + "d " + h + "h";
  if (h) return h + "h " + m + "m";
  return m ? m + "m" : left + "s";
}

function tickCountdowns() {
  var now = Date.now();
  document.querySelectorAll(".countdown[data-due]").forEach(function (el) {
    var due = Date.parse(el.getAttribute("data-due"));
    if (isNaN(due)) return;
    var seconds = (due - now) / 1000;
    var overdue = seconds < 0;
    el.textContent = overdue ? "overdue " + span(seconds) : span(seconds) + " left";
    el.classList.toggle("overdue", overdue);
    var row = el.closest("tr");
    if (row) row.classList.toggle("overdue", overdue);
  });
}

function copyText(text, done) {
  // navigator.clipboard needs a secure context (https or localhost); else a hidden textarea.
  if (navigator.clipboard && window.isSecureContext) {
    navigator.clipboard.writeText(text).then(function () { done(true); }, function () { done(fallbackCopy(text)); });
  } else {
    done(fallbackCopy(text));
  }
}

function fallbackCopy(text) {
  var area = document.createElement("textarea");
  area.value = text;
  area.setAttribute("readonly", "");
  area.style.position = "fixed";
  area.style.opacity = "0";
  document.body.appendChild(area);
  area.select();
  var ok = false;
  try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
  document.body.removeChild(area);
  return ok;
}

function setUpCopyButtons() {
  document.querySelectorAll("button[data-copy]").forEach(function (button) {
    button.addEventListener("click", function () {
      var source = document.getElementById(button.getAttribute("data-copy"));
      var status = document.getElementById("copy-status");
      copyText(source.value, function (ok) {
        if (!ok) source.select();  // the user can still press Ctrl+C
        if (status) status.textContent = ok ? "Copied." : "Selected: press Ctrl+C to copy.";
      });
    });
  });
}

function setUpAutoSubmit() {
  // <select data-autosubmit>: choosing applies the filter (the page's CSP allows no inline handlers).
  document.querySelectorAll("select[data-autosubmit]").forEach(function (select) {
    select.addEventListener("change", function () { select.form.submit(); });
  });
}

document.addEventListener("DOMContentLoaded", function () {
  setUpAutoSubmit();
  tickCountdowns();
  setInterval(tickCountdowns, 1000);
  setUpCopyButtons();
});
