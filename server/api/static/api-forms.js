// Forms that post JSON to the Homeward API in place (no page reload).
//
// <form data-api="/api/..." [data-method="PUT"] [data-done="Saved"] [data-confirm="..."]
//       [data-after="reload"] [data-params='{...}']>
// Fields become a JSON object by name ("note.situation" nests): empty fields are left out; data-type="number"
// sends a number, a checkbox a boolean, a multiple select a list, datetime-local an ISO
// time (the browser's zone). The status area is the nearest [data-form-scope], .panel or
// section's .form-status.
// A field named "limit:<path>" writes its number into a copy of data-params at <path>
// (dot-separated keys and list indexes), sent as "overrides" (the rule setting API).
// On success the form fires "api:done" (detail: the JSON answer) and says data-done in
// the nearest .form-status; on failure it says what the API said.
// Every request sends the page's CSRF token (<meta name="csrf-token">) as X-CSRF-Token:
// the API refuses a change made with the session cookie without it (docs/security.md).
"use strict";

(function () {
  function setPath(obj, path, value) {
    const keys = path.split(".");
    let node = obj;
    for (let i = 0; i < keys.length - 1; i++) node = node[keys[i]];
    node[keys[keys.length - 1]] = value;
  }

  // "note.situation" -> {note: {situation: ...}}: a dotted name is a nested field.
  function put(obj, name, value) {
    const keys = name.split(".");
    let node = obj;
    for (let i = 0; i < keys.length - 1; i++) {
      if (typeof node[keys[i]] !== "object" || node[keys[i]] === null) node[keys[i]] = {};
      node = node[keys[i]];
    }
    node[keys[keys.length - 1]] = value;
  }

  function body(form) {
    const out = {};
    let params = null;
    if (form.dataset.params) params = JSON.parse(form.dataset.params);
    for (const el of form.elements) {
      if (!el.name || el.disabled || el.type === "submit" || el.type === "button") continue;
      if (el.name.startsWith("limit:")) {
        if (el.value !== "") setPath(params, el.name.slice(6), Number(el.value));
        continue;
      }
      if (el.type === "checkbox") { put(out, el.name, el.checked); continue; }
      if (el.type === "select-multiple") {
        const chosen = Array.from(el.selectedOptions, (o) => o.value);
        if (chosen.length) put(out, el.name, chosen);
        continue;
      }
      if (el.value === "") continue;
      if (el.dataset.type === "number" || el.type === "number") put(out, el.name, Number(el.value));
      else if (el.type === "datetime-local") put(out, el.name, new Date(el.value).toISOString());
      else put(out, el.name, el.value);
    }
    if (params !== null) out.overrides = params;
    return out;
  }

  function statusOf(form) {
    const holder = form.closest("[data-alert-id], [data-form-scope], .panel, section") || form.parentElement;
    return holder.querySelector(".form-status");
  }

  async function describe(res) {
    try {
      const data = await res.json();
      if (typeof data.detail === "string") return data.detail;
      if (Array.isArray(data.detail)) return data.detail.map((d) => d.msg).join("; ");
    } catch (e) { /* not JSON */ }
    return "the server answered " + res.status;
  }

  function csrfToken() {
    const meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : "";
  }

  async function submit(form, event) {
    event.preventDefault();
    if (form.dataset.confirm && !window.confirm(form.dataset.confirm)) return;
    const status = statusOf(form);
    const buttons = form.querySelectorAll("button");
    buttons.forEach((b) => { b.disabled = true; });
    if (status) status.textContent = "Sending…";
    try {
      const res = await fetch(form.dataset.api, {
        method: form.dataset.method || "POST",
        credentials: "same-origin",
        headers: {"Content-Type": "application/json", "Accept": "application/json",
                  "X-CSRF-Token": csrfToken()},
        body: JSON.stringify(body(form)),
      });
      if (!res.ok) {
        if (status) status.textContent = "Not done: " + (await describe(res));
        return;
      }
      const data = await res.json().catch(() => null);
      if (status) status.textContent = form.dataset.done || "Done";
      form.reset();
      form.dispatchEvent(new CustomEvent("api:done", {bubbles: true, detail: data}));
      if (form.dataset.after === "reload") window.location.reload();
    } catch (err) {
      if (status) status.textContent = "Not done: the server could not be reached";
    } finally {
      buttons.forEach((b) => { b.disabled = false; });
    }
  }

  document.addEventListener("submit", (event) => {
    const form = event.target;
    if (form instanceof HTMLFormElement && form.dataset.api) submit(form, event);
  });
})();
