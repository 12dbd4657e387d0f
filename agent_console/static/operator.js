// Operator keyboard shortcuts: Alt+1..9 pick a result code, Ctrl+Enter saves the form,
// Alt+N takes the next target and Alt+I confirms identity (those two via accesskey as well).
(function () {
  "use strict";
  var form = document.getElementById("call-form");
  var select = document.getElementById("result_code");
  var notes = document.getElementById("notes");

  document.addEventListener("keydown", function (event) {
    if (event.altKey && /^[1-9]$/.test(event.key) && select) {
      var option = select.options[Number(event.key)];
      if (option) { select.value = option.value; select.focus(); event.preventDefault(); }
    } else if ((event.ctrlKey || event.metaKey) && event.key === "Enter" && form) {
      event.preventDefault();
      form.requestSubmit();
    } else if (event.altKey && (event.key === "n" || event.key === "N")) {
      var next = document.getElementById("next-target");
      if (next) { event.preventDefault(); next.click(); }
    } else if (event.altKey && (event.key === "i" || event.key === "I")) {
      var check = document.getElementById("identity-check");
      if (check) { event.preventDefault(); check.checked = true; document.getElementById("identity-submit").click(); }
    }
  });

  if (notes) {
    var counter = document.createElement("span");
    counter.className = "hint";
    notes.insertAdjacentElement("afterend", counter);
    var update = function () {
      counter.textContent = notes.value.length + " / " + notes.getAttribute("maxlength");
    };
    notes.addEventListener("input", update);
    update();
  }
})();
