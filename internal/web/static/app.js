// Escrow web console: progressive enhancement only. Every page works
// without it; it adds live "time left", copy buttons and the browser's
// time zone for booked windows.
"use strict";
(function () {
  function human(ms) {
    if (ms <= 0) return "ended";
    var s = Math.floor(ms / 1000);
    if (s < 60) return s + " s left";
    var m = Math.floor(s / 60);
    if (m < 60) return m + " min left";
    var h = Math.floor(m / 60);
    if (h < 48) return h + " h" + (m % 60 ? " " + (m % 60) + " min" : "") + " left";
    return Math.floor(h / 24) + " days left";
  }
  function tick() {
    var now = Date.now();
    document.querySelectorAll("[data-deadline]").forEach(function (el) {
      var t = Date.parse(el.getAttribute("data-deadline"));
      if (!isNaN(t)) el.textContent = human(t - now);
    });
  }
  document.addEventListener("DOMContentLoaded", function () {
    tick();
    setInterval(tick, 1000);
    document.querySelectorAll("[data-tz]").forEach(function (el) {
      el.value = String(new Date().getTimezoneOffset());
    });
    document.querySelectorAll("button[data-copy]").forEach(function (b) {
      b.addEventListener("click", function () {
        var el = document.getElementById(b.getAttribute("data-copy"));
        if (!el || !navigator.clipboard) return;
        navigator.clipboard.writeText(el.textContent).then(function () {
          b.textContent = "Copied";
          setTimeout(function () { b.textContent = "Copy"; }, 2000);
        });
      });
    });
  });
})();
