// Progressive enhancement only: the page works without it.
// Ask before the buttons that cannot be undone.
document.addEventListener("click", function (e) {
  var b = e.target.closest("button.danger");
  if (b && !window.confirm(b.textContent.trim() + "?")) e.preventDefault();
});
