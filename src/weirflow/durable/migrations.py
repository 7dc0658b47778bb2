"""Numbered SQL migration files (``migrations/<backend>/0001_name.sql``), package data.

Each backend applies the files above its recorded version, in order, each in the
transaction that records it in ``wf_schema_version``.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from importlib import resources

from ..errors import StoreError

_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")

VERSION_TABLE = "wf_schema_version"


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def migrations(backend: str) -> list[Migration]:
    """The migrations of ``backend`` (``sqlite`` or ``postgres``), by version."""
    folder = resources.files("weirflow.durable").joinpath("migrations", backend)
    found = []
    for entry in folder.iterdir():
        m = _NAME.match(entry.name)
        if m is not None:
            found.append(Migration(int(m.group(1)), entry.name, entry.read_text(encoding="utf-8")))
    found.sort(key=lambda mg: mg.version)
    versions = [mg.version for mg in found]
    if versions != list(range(1, len(found) + 1)):
        raise StoreError(f"{backend} migrations are not numbered 0001, 0002, ...: {versions}")
    return found


def sqlite_statements(sql: str) -> list[str]:
    """Split a script into statements (so they run inside our own transaction)."""
    statements: list[str] = []
    current = ""
    for line in sql.splitlines(keepends=True):
        if not current and (not line.strip() or line.lstrip().startswith("--")):
            continue
        current += line
        if sqlite3.complete_statement(current):
            statements.append(current.strip())
            current = ""
    if current.strip():
        raise StoreError(f"incomplete SQL statement in a migration: {current.strip()[:80]!r}")
    return statements
