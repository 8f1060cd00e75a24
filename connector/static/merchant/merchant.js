/* triggerpost merchant app: forms sent to the JSON API, progressively.
 *
 * Every page works without this file: forms post to the page's own route.
 * With it, a form with data-api-method and data-api-url is sent as JSON to the
 * API instead: with the Shopify session token when the page runs inside the
 * Shopify admin (App Bridge's window.shopify), else with the page's CSRF token.
 * Field errors land in [data-error-for="<field path>"], the outcome in the
 * form's [role=status]. triggerpost.post sends a form to its page's own route
 * the same way (a page's script that asks for its parts again, as JSON).
 */
(function () {
  "use strict";

  var meta = document.querySelector('meta[name="csrf-token"]');
  var csrf = meta ? meta.getAttribute("content") : null;

  function headers() {
    var h = { "Content-Type": "application/json", "Accept": "application/json" };
    if (csrf) h["X-CSRF-Token"] = csrf;
    if (window.shopify && typeof window.shopify.idToken === "function") {
      return window.shopify.idToken().then(function (token) {
        h["Authorization"] = "Bearer " + token;
        return h;
      }, function () { return h; });
    }
    return Promise.resolve(h);
  }

  function api(method, url, body) {
    return headers().then(function (h) {
      return fetch(url, {
        method: method,
        headers: h,
        credentials: "same-origin",
        body: body === undefined ? undefined : JSON.stringify(body)
      });
    }).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (data) {
        return { ok: response.ok, status: response.status, data: data };
      });
    });
  }

  // a form's fields posted to a page's own route, as the browser would post them,
  // asking for the page's parts as JSON (partial: the page's script wants them)
  function post(url, form, extra) {
    var data = new URLSearchParams(new FormData(form));
    Object.keys(extra || {}).forEach(function (key) { data.set(key, extra[key]); });
    return headers().then(function (h) {
      h["Content-Type"] = "application/x-www-form-urlencoded";
      h["X-Triggerpost-Partial"] = "1";
      return fetch(url, { method: "POST", headers: h, credentials: "same-origin", body: data });
    }).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (data) {
        return { ok: response.ok, status: response.status, data: data };
      });
    });
  }

  function put(target, path, value) {
    var keys = path.split(".");
    var here = target;
    for (var i = 0; i < keys.length - 1; i++) {
      if (typeof here[keys[i]] !== "object" || here[keys[i]] === null) here[keys[i]] = {};
      here = here[keys[i]];
    }
    here[keys[keys.length - 1]] = value;
  }

  function typed(el) {
    var type = el.getAttribute("data-type");
    var raw = el.type === "checkbox" ? el.checked : el.value;
    if (type === "boolean") return el.type === "checkbox" ? el.checked : raw === "true";
    if (type === "integer" || type === "number") {
      var text = String(raw).trim();
      if (text === "") return el.hasAttribute("data-optional") ? null : text;
      return /^-?\d+(\.\d+)?$/.test(text) ? Number(text) : text; // the API names the mistake
    }
    if (type === "integers") {
      return String(raw).split(",").map(function (part) { return part.trim(); })
        .filter(function (part) { return part !== ""; })
        .map(function (part) { return /^-?\d+$/.test(part) ? Number(part) : part; });
    }
    if (type === "text" && el.hasAttribute("data-optional") && String(raw).trim() === "") return null;
    return raw;
  }

  function collect(form) {
    var body = {};
    Array.prototype.forEach.call(form.elements, function (el) {
      if (!el.name || el.name === "csrf_token" || el.disabled || el.hasAttribute("data-no-api")) return;
      if (el.type === "radio" && !el.checked) return;
      if (el.tagName === "BUTTON") return;
      put(body, el.name, typed(el));
    });
    return body;
  }

  function clear(form) {
    form.querySelectorAll("[data-error-for]").forEach(function (slot) { slot.textContent = ""; });
    form.querySelectorAll("[aria-invalid]").forEach(function (el) { el.removeAttribute("aria-invalid"); });
  }

  function show(form, answer) {
    var status = form.querySelector('[role="status"]');
    var unplaced = [];
    (answer.data.fields || []).forEach(function (item) {
      // a problem inside a field's value (a segment's "options.audience.all[0].value")
      // lands in that field's slot, with where inside it
      var name = item.field;
      var slot = form.querySelector('[data-error-for="' + CSS.escape(name) + '"]');
      while (!slot && name.lastIndexOf(".") > 0) {
        name = name.slice(0, name.lastIndexOf("."));
        slot = form.querySelector('[data-error-for="' + CSS.escape(name) + '"]');
      }
      var words = name === item.field ? item.message : item.field.slice(name.length + 1) + ": " + item.message;
      var input = form.querySelector('[name="' + CSS.escape(name) + '"]');
      if (input) input.setAttribute("aria-invalid", "true");
      if (!slot) unplaced.push(item.field + ": " + item.message);
      else slot.textContent = slot.textContent ? slot.textContent + " " + words : words;
    });
    if (status) {
      status.textContent = [answer.data.message || ("Error " + answer.status)].concat(unplaced).join(" ");
      status.classList.add("failed");
    }
  }

  function flip(form) {
    var button = form.querySelector('[role="switch"]');
    var wanted = form.querySelector('input[name="enabled"]');
    if (!button || !wanted) return;
    var on = wanted.value === "true";
    button.setAttribute("aria-checked", on ? "true" : "false");
    button.textContent = button.getAttribute(on ? "data-on" : "data-off");
    wanted.value = on ? "false" : "true";
  }

  function send(form) {
    clear(form);
    var status = form.querySelector('[role="status"]');
    if (status) { status.textContent = document.body.getAttribute("data-saving") || "…"; status.classList.remove("failed"); }
    form.setAttribute("aria-busy", "true");
    return api(form.getAttribute("data-api-method"), form.getAttribute("data-api-url"), collect(form))
      .then(function (answer) {
        form.removeAttribute("aria-busy");
        if (!answer.ok) { show(form, answer); return answer; }
        if (form.hasAttribute("data-switch")) flip(form);
        if (status) status.textContent = form.getAttribute("data-saved") || document.body.getAttribute("data-saved") || "Saved";
        form.dispatchEvent(new CustomEvent("triggerpost:saved", { detail: answer.data, bubbles: true }));
        return answer;
      }, function () {
        form.removeAttribute("aria-busy");
        if (status) { status.textContent = document.body.getAttribute("data-offline") || "Not sent"; status.classList.add("failed"); }
      });
  }

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!(form instanceof HTMLFormElement) || !form.hasAttribute("data-api-url")) return;
    if (!window.fetch) return; // the plain form post does it
    event.preventDefault();
    send(form);
  });

  window.triggerpost = { api: api, send: send, collect: collect, post: post };
})();
