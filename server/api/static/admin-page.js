// The admin page: a form with data-show="<field>" shows that field of the API's answer
// (an invitation link, a new API token) once, in the nearest .secret, with a Copy button;
// data-show="bundle" shows the whole answer as the hub's provisioning bundle (JSON).
"use strict";

(function () {
  function holderOf(form) {
    return form.closest("[data-form-scope], .panel, section") || form.parentElement;
  }

  document.addEventListener("api:done", (event) => {
    const form = event.target;
    if (!(form instanceof HTMLFormElement) || !form.dataset.show || !event.detail) return;
    const secret = holderOf(form).querySelector(".secret");
    if (!secret) return;
    const field = form.dataset.show;
    const value = field === "bundle" ? JSON.stringify(event.detail, null, 2)
      : event.detail[field];
    if (!value) return;
    secret.querySelector(".secret-value").textContent = value;
    secret.querySelector(".copied").textContent = "";
    secret.hidden = false;
  });

  document.addEventListener("click", async (event) => {
    const button = event.target;
    if (!(button instanceof HTMLButtonElement) || !button.classList.contains("copy")) return;
    const secret = button.closest(".secret");
    const said = secret.querySelector(".copied");
    try {
      await navigator.clipboard.writeText(secret.querySelector(".secret-value").textContent);
      said.textContent = "Copied";
    } catch (err) {
      said.textContent = "Could not copy: select the text and copy it";
    }
  });
})();
