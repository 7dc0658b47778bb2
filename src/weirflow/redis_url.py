"""Checks of a Redis URL that redis-py does not make: ``redis://host:port/x`` (a database that
is not a number) is silently database 0 there (``parse_url`` drops a path it cannot read),
which would point a store or a registry at the wrong data without a word."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit


def redis_url_problem(url: str) -> str | None:
    """What is wrong with the database part of ``url`` (``redis://``/``rediss://``: the path,
    ``/N`` or nothing; ``unix://`` takes it as ``?db=N``), or ``None``."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return None  # the path is the socket's; redis-py itself refuses a ?db= that is not a number
    db = unquote(parts.path).strip("/")
    if db and not db.isdigit():
        return f"the database {db!r} is not a number (redis://host:port/db, db 0-15 by default)"
    return None


def registry_url_problem(url: str) -> str | None:
    """What is wrong with ``url`` as a node registry's (a ``redis://``, ``rediss://`` or
    ``unix://`` URL, its database as ``redis_url_problem`` checks it), or ``None``."""
    if urlsplit(url).scheme not in ("redis", "rediss", "unix"):
        return "must be a redis://host:port/db URL"
    return redis_url_problem(url)
