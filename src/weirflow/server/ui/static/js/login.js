// The login form: POST the key once; the server answers with a session cookie.
const form = document.getElementById("login");
const error = document.getElementById("error");
form.addEventListener("submit", async (e) => {
  e.preventDefault();
  error.textContent = "";
  const key = document.getElementById("key").value;
  const r = await fetch("/ui/login", {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ key }),
  });
  if (!r.ok) {
    let detail = `HTTP ${r.status}`;
    try { detail = (await r.json()).detail || detail; } catch (_) { /* not JSON */ }
    error.textContent = typeof detail === "string" ? detail : JSON.stringify(detail);
    return;
  }
  location.assign(nextPage(new URLSearchParams(location.search).get("next")));
});

// Only a page of this server: never another site an attacker put in the link (browsers
// read "//x" and "/\\x" as other hosts, so the URL is resolved and its origin compared).
function nextPage(next) {
  if (!next) return "/ui";
  try {
    const url = new URL(next, location.origin);
    return url.origin === location.origin ? url.pathname + url.search : "/ui";
  } catch (_) { return "/ui"; }
}
