// Incident pages: the print button of the blank report form (no inline scripts under the CSP).
document.querySelectorAll("[data-print]").forEach(function (button) {
  button.addEventListener("click", function () { window.print(); });
});
