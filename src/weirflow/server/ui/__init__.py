"""The web UI served at ``/ui`` (and Swagger UI at ``/docs``): a thin client of the HTTP API.

``mount.install_ui(app)`` mounts the vendored static files at ``/ui/static`` and the page,
login and session routes. The browser code is plain ES modules (no build step); the
graph layout (dagre) and Swagger UI are vendored from npm at pinned versions by
``scripts/vendor-ui``. See ``docs/ui.md``.
"""
