// The gate's pages carry no inline script (their Content-Security-Policy forbids it): behaviour is wired here.
document.addEventListener("click", function (event) {
  var target = event.target instanceof Element ? event.target.closest("[data-print]") : null;
  if (target) {
    event.preventDefault();
    window.print();
  }
});
// An error not tied to one field (the field's own error moves focus there by autofocus): focus the message, so
// keyboard and screen-reader users start from it rather than from the top of the page.
(function () {
  var error = document.getElementById("error");
  if (error && !document.querySelector("[aria-invalid=true]")) error.focus();
})();
