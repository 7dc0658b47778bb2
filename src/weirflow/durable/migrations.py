"""Numbered SQL migration files (``migrations/<backend>/0001_name.sql``), package data.

Each backend applies, in order, every file whose version ``wf_schema_version`` does
not record yet, each in the transaction that records it. Versions need not be
contiguous (a backend may skip a number another backend uses), and a file numbered
below one already applied is still applied (branches that added migrations in
parallel land in any order), so migrations must not depend on one another's order
beyond their numbers.
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
    if len(set(versions)) != len(versions) or (versions and versions[0] != 1):
        raise StoreError(f"{backend} migrations must start at 0001 and have distinct numbers: {versions}")
    return found


def pending(backend: str, applied: set[int]) -> list[Migration]:
    """The migrations of ``backend`` not in ``applied``, by version."""
    return [mg for mg in migrations(backend) if mg.version not in applied]


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
