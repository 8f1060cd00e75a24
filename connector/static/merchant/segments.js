/* triggerpost segment builder: the builder's buttons and a live count, without leaving the page.
 *
 * Without this file every button posts the form and the page comes back with the
 * change (a condition added or removed, the customers counted, the segment saved).
 * With it, the same posts go through triggerpost.post (the Shopify session token
 * inside the admin) and only the conditions are drawn again; the count follows
 * the conditions as they are typed, and a condition's hint, suggestions and
 * "last … days" box follow the condition chosen. On the segments page, a delete
 * goes through the API (merchant.js) and its card goes.
 */
(function () {
  "use strict";

  // a segment deleted on the segments page through the API (merchant.js sends it):
  // its card goes, or the page comes again when a built-in takes its place
  document.addEventListener("triggerpost:saved", function (event) {
    var done = event.target;
    var how = done.getAttribute && done.getAttribute("data-segment-delete");
    if (!how) return;
    if (how === "reload") { window.location.reload(); return; }
    var card = done.closest("section.segment");
    var note = document.createElement("p");
    note.className = "flash done";
    note.setAttribute("role", "status");
    card.replaceWith(note);
    // filled after it is in the page, so that it is announced
    setTimeout(function () { note.textContent = done.getAttribute("data-saved"); }, 50);
  });

  // the counts the segments page left for later (it counts for a second at most):
  // one at a time, in the page's order
  var pending = Array.prototype.slice.call(document.querySelectorAll("[data-count-url]"));
  if (pending.length && window.fetch && window.triggerpost) {
    var language = document.documentElement.lang || undefined;
    pending.forEach(function (slot) { slot.textContent = slot.getAttribute("data-counting"); });
    var next = function () {
      var slot = pending.shift();
      if (!slot) return;
      window.triggerpost.api("GET", slot.getAttribute("data-count-url")).then(function (answer) {
        slot.textContent = answer.ok
          ? slot.getAttribute("data-words").replace("{count}", Number(answer.data.count).toLocaleString(language))
          : slot.getAttribute("data-failed");
        slot.removeAttribute("data-count-url");
        next();
      }, function () { slot.textContent = slot.getAttribute("data-failed"); next(); });
    };
    next();
  }

  var form = document.querySelector("form[data-builder]");
  if (!form || !window.fetch || !window.triggerpost) return;
  // (not form.action: the buttons named "action" hide it)
  var url = form.getAttribute("action");
  var builder = document.getElementById("segment-builder");
  var counted = form.querySelector("[data-counted]");
  var banner = document.querySelector("[data-builder-message]");
  var nameError = form.querySelector('[data-error-for="name"]');
  var nameInput = form.querySelector('input[name="name"]');
  var asked = 0;
  var timer = null;

  function message(text) {
    banner.textContent = text || "";
    banner.hidden = !text;
  }

  function follow(select) {
    var row = select.closest(".rule");
    var option = select.options[select.selectedIndex];
    var value = row.querySelector('input[name$=".value"]');
    var hint = row.querySelector("[data-hint-slot]");
    var within = row.querySelector("[data-within]");
    var list = option ? option.getAttribute("data-list") : "";
    if (list) value.setAttribute("list", list); else value.removeAttribute("list");
    if (option && option.getAttribute("data-hint")) hint.textContent = option.getAttribute("data-hint");
    var bought = option && option.hasAttribute("data-bought");
    var kept = within.querySelector("input").value.trim() !== "";
    within.hidden = !bought && !kept;
  }

  function draw(data) {
    if (typeof data.html === "string") {
      builder.innerHTML = data.html;
      var focus = builder.querySelector("[data-focus]");
      if (focus) focus.focus();
    }
    message(data.message);
    if (nameError) nameError.textContent = data.name_error || "";
    if (nameInput) {
      if (data.name_error) nameInput.setAttribute("aria-invalid", "true");
      else nameInput.removeAttribute("aria-invalid");
    }
  }

  // one count at a time from a page (a big shop's count takes seconds): typing while
  // one runs asks once more when it is back, with the conditions as they are then
  var counting = false;
  var again = false;

  function count() {
    if (counting) { again = true; return; }
    counting = true;
    var mine = ++asked;
    function done() {
      counting = false;
      if (again) { again = false; count(); }
    }
    window.triggerpost.post(url, form, { action: "count" }).then(function (answer) {
      if (mine === asked) counted.textContent = answer.ok ? answer.data.counted : "";
      done();
    }, function () {
      if (mine === asked) counted.textContent = "";
      done();
    });
  }

  form.addEventListener("change", function (event) {
    if (event.target.matches("select[data-what]")) follow(event.target);
  });

  form.addEventListener("input", function (event) {
    if (event.target === nameInput) return;
    clearTimeout(timer);
    timer = setTimeout(count, 500);
  });
  form.addEventListener("change", function (event) {
    if (event.target === nameInput || event.target.tagName !== "SELECT") return;
    clearTimeout(timer);
    timer = setTimeout(count, 150);
  });

  form.addEventListener("submit", function (event) {
    var button = event.submitter;
    var action = button && button.name === "action" ? button.value : "save";
    event.preventDefault();
    clearTimeout(timer);
    asked++; // a live count on its way is older than this
    form.setAttribute("aria-busy", "true");
    window.triggerpost.post(url, form, { action: action }).then(function (answer) {
      form.removeAttribute("aria-busy");
      if (answer.ok && answer.data.location) {
        window.location.assign(answer.data.location);
        return;
      }
      if (action === "count" && answer.ok) {
        message("");
        counted.textContent = answer.data.counted;
        return;
      }
      draw(answer.data);
      if (!answer.ok) counted.textContent = "";
      if (!answer.ok && !answer.data.html) message(answer.data.message || ("Error " + answer.status));
    }, function () {
      form.removeAttribute("aria-busy");
      message(document.body.getAttribute("data-offline"));
    });
  });
})();
