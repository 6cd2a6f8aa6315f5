// Swagger UI over this API's own OpenAPI document, started from a file rather than an inline
// script so the page's Content-Security-Policy needs no 'unsafe-inline'.
window.ui = SwaggerUIBundle({
  url: new URL("openapi.json", document.baseURI).href,
  dom_id: "#swagger-ui",
  deepLinking: true,
  // No validator badge: it would send the document to a public validator.
  validatorUrl: null,
});
