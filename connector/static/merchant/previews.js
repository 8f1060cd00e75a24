/* The preview page: a test sent through the API says where it went. */
(function () {
  "use strict";
  document.addEventListener("triggerpost:saved", function (event) {
    var form = event.target;
    if (!(form instanceof HTMLFormElement) || !form.hasAttribute("data-test-send")) return;
    var status = form.querySelector('[role="status"]');
    if (status && event.detail && event.detail.message) status.textContent = event.detail.message;
  });
})();
