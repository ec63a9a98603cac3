// Starts Swagger UI on this service's own OpenAPI document. A file, not an inline script: the
// page's Content-Security-Policy allows scripts from the service only.
(function () {
  "use strict";
  var container = document.getElementById("api-reference");
  window.ui = SwaggerUIBundle({
    // Relative to /api/v1/docs: the document this service serves at /api/v1/openapi.json.
    url: container.getAttribute("data-spec"),
    domNode: container,
    deepLinking: true,
    // The Authorize button takes a bearer token; "Try it out" sends it. Kept in this tab only.
    persistAuthorization: false,
    // Swagger UI would otherwise send the document to validator.swagger.io for a badge.
    validatorUrl: null,
    // No ?url= or ?configUrl=: the page shows this service's document and nothing else.
    queryConfigEnabled: false,
    tryItOutEnabled: false,
    displayRequestDuration: true,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout"
  });
})();
