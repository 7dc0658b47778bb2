// Swagger UI over /openapi.json. The browser's session cookie authenticates its calls;
// calls that change something also need the session's CSRF token, added here.
"use strict";
(async function () {
  let csrf = null;
  try {
    const r = await fetch("/ui/session", { credentials: "same-origin" });
    if (r.ok) csrf = (await r.json()).csrf;
  } catch (e) { /* the docs still show; Try it out of a POST will answer 403 */ }
  window.SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    requestInterceptor: function (req) {
      if (csrf && req.method && req.method.toUpperCase() !== "GET") req.headers["X-CSRF-Token"] = csrf;
      return req;
    },
  });
})();
