// The API documentation page (/docs): Swagger UI started from a file, not an inline
// script, so the page holds to the app's Content-Security-Policy (docs/security.md).
"use strict";
(function () {
  const holder = document.getElementById("swagger-ui");
  if (!holder || typeof window.SwaggerUIBundle !== "function") return;
  window.SwaggerUIBundle({
    url: holder.dataset.openapi,
    dom_id: "#swagger-ui",
    layout: "BaseLayout",
    deepLinking: true,
    showExtensions: true,
    showCommonExtensions: true,
    presets: [window.SwaggerUIBundle.presets.apis,
              window.SwaggerUIBundle.SwaggerUIStandalonePreset],
  });
})();
