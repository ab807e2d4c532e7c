// The alert page: after an action succeeds, show the alert as it now is (its history
// gains the new event).
"use strict";
document.addEventListener("api:done", () => window.location.reload());
