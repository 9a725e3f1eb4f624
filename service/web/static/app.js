/* Canh Gác — small progressive enhancements; every page works without this file. */
(function () {
  "use strict";
  document.documentElement.classList.add("js");

  function pad(n) { return (n < 10 ? "0" : "") + n; }

  // Same format as the server's clock_text: HH:MM:SS, with whole days in front.
  function clockText(seconds, dayLabel) {
    var total = Math.floor(Math.abs(seconds));
    var days = Math.floor(total / 86400);
    var rest = total % 86400;
    var text = pad(Math.floor(rest / 3600)) + ":" + pad(Math.floor(rest % 3600 / 60)) + ":" + pad(rest % 60);
    if (days) { text = dayLabel.replace("{d}", String(days)) + " " + text; }
    return text;
  }

  function startClocks() {
    var board = document.querySelector("[data-server-now]");
    if (!board) { return; }
    // Use the server's clock: a phone set to the wrong time must not shift deadlines.
    var skew = Date.parse(board.getAttribute("data-server-now")) - Date.now();
    var dayLabel = board.getAttribute("data-day-label") || "{d} d";
    var clocks = board.querySelectorAll(".clock[data-since], .clock[data-until]");
    function tick() {
      var now = Date.now() + skew;
      for (var i = 0; i < clocks.length; i++) {
        var el = clocks[i];
        var since = el.getAttribute("data-since");
        if (since) {
          var elapsed = (now - Date.parse(since)) / 1000;
          el.textContent = clockText(elapsed, dayLabel);
          var sla = el.getAttribute("data-sla-seconds");
          if (sla && elapsed > Number(sla)) { el.classList.add("overdue"); }
        } else {
          var remaining = (Date.parse(el.getAttribute("data-until")) - now) / 1000;
          var overdue = remaining < 0;
          el.textContent = (overdue ? el.getAttribute("data-overdue-label") + " " : "") + clockText(remaining, dayLabel);
          el.classList.toggle("overdue", overdue);
        }
      }
    }
    tick();
    window.setInterval(tick, 1000);
  }

  function wireButtons() {
    document.addEventListener("click", function (event) {
      var button = event.target.closest("button[data-copy], button[data-print]");
      if (!button) { return; }
      if (button.hasAttribute("data-print")) { window.print(); return; }
      var source = document.getElementById(button.getAttribute("data-copy"));
      if (!source) { return; }
      var text = source.textContent.trim();
      var done = function () { button.setAttribute("data-copied", "1"); button.classList.add("copied"); };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(text).then(done, function () { selectText(source); });
      } else {
        selectText(source);
      }
    });
  }

  function selectText(el) {
    var range = document.createRange();
    range.selectNodeContents(el);
    var sel = window.getSelection();
    sel.removeAllRanges();
    sel.addRange(range);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", function () { startClocks(); wireButtons(); });
  } else {
    startClocks();
    wireButtons();
  }
})();
