/* triggerpost flow editor: the dry run through the API, without leaving the page.
 *
 * Without this file the "Dry run" button posts the options form to the page's
 * dry-run route and the result comes back with the page. With it, the form's
 * values go as proposed options to POST /api/v1/flows/<name>/dry-run and the
 * result is drawn into the dry-run panel; saving stays merchant.js's.
 */
(function () {
  "use strict";

  function el(tag, text, attrs) {
    var node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    Object.keys(attrs || {}).forEach(function (key) { node.setAttribute(key, attrs[key]); });
    return node;
  }

  function words(panel, name, fallback) {
    return panel.getAttribute("data-" + name) || fallback;
  }

  function draw(panel, slot, result) {
    slot.textContent = "";
    var total = el("p", null, { "class": "dry-run-total" });
    total.appendChild(el("strong", result.sent_total_words));
    slot.appendChild(total);
    var table = el("table");
    table.appendChild(el("caption", words(panel, "caption", "Emails per step")));
    var head = el("tr");
    [words(panel, "step", "Step"), words(panel, "sent", "Sent"), words(panel, "after", "Due after the period")]
      .forEach(function (text) { head.appendChild(el("th", text, { scope: "col" })); });
    var thead = el("thead"); thead.appendChild(head); table.appendChild(thead);
    var body = el("tbody");
    result.steps.forEach(function (step) {
      var row = el("tr", null, { "data-step": step.step });
      row.appendChild(el("th", step.label, { scope: "row" }));
      row.appendChild(el("td", step.sent));
      row.appendChild(el("td", step.after));
      body.appendChild(row);
    });
    table.appendChild(body);
    slot.appendChild(table);
    [["deferred", "held", "Held back for a while"], ["not_sent", "not-sent", "Not sent"]].forEach(function (part) {
      var items = result[part[0]];
      if (!items.length) return;
      slot.appendChild(el("h3", words(panel, part[1], part[2])));
      var list = el("ul", null, { "class": "reasons" });
      items.forEach(function (item) {
        var text = (item.state_words ? item.state_words + ": " : "") + item.words + ": " + item.count;
        list.appendChild(el("li", text, { "data-reason": item.reason }));
      });
      slot.appendChild(list);
    });
  }

  document.addEventListener("submit", function (event) {
    var form = event.target;
    var button = event.submitter;
    if (!(form instanceof HTMLFormElement) || !button || !button.hasAttribute("data-dry-run")) return;
    if (!window.fetch || !window.triggerpost) return; // the plain form post does it
    event.preventDefault();
    event.stopImmediatePropagation();
    var panel = document.getElementById("dry-run");
    var slot = panel.querySelector("[data-dry-run-result]");
    var status = form.querySelector('[role="status"]');
    var options = (window.triggerpost.collect(form).options) || {};
    form.querySelectorAll("[data-error-for]").forEach(function (s) { s.textContent = ""; });
    slot.textContent = words(panel, "running", "Running…");
    panel.setAttribute("aria-busy", "true");
    button.disabled = true;
    window.triggerpost.api("POST", form.getAttribute("data-dry-run-url"), { options: options })
      .then(function (answer) {
        panel.removeAttribute("aria-busy");
        button.disabled = false;
        if (!answer.ok) {
          slot.textContent = answer.data.message || words(panel, "failed", "The dry run could not be made.");
          (answer.data.fields || []).forEach(function (item) {
            var target = form.querySelector('[data-error-for="' + CSS.escape(item.field) + '"]');
            if (target) target.textContent = item.message;
          });
          return;
        }
        draw(panel, slot, answer.data);
        if (status) status.textContent = "";
        panel.scrollIntoView({ block: "start" });
      }, function () {
        panel.removeAttribute("aria-busy");
        button.disabled = false;
        slot.textContent = words(panel, "failed", "The dry run could not be made.");
      });
  }, true);
})();
