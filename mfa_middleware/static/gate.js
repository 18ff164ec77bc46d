// The gate's pages carry no inline script (their Content-Security-Policy forbids it): behaviour is wired here.
document.addEventListener("click", function (event) {
  var target = event.target instanceof Element ? event.target.closest("[data-print]") : null;
  if (target) {
    event.preventDefault();
    window.print();
  }
});
