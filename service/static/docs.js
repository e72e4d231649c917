// Starts Swagger UI on /docs. A file of its own, not an inline script, so the page's
// Content-Security-Policy can allow scripts from this origin only.
window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: "/openapi.yaml",
    dom_id: "#swagger-ui",
    deepLinking: true,
    // No badge fetched from validator.swagger.io: the page loads nothing from elsewhere.
    validatorUrl: null,
  });
});
