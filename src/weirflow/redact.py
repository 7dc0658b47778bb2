"""Secrets out of what is shown: the password of a URL (``postgresql://wf:pw@host/db``).

Every log, error message, metric label and API answer that names a store shows
``redact_url(url)``; ``redact_text`` scrubs a message that may quote the URL or its
password (a driver's error, say).
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, unquote, urlsplit

MASK = "***"
_PASSWORD_PARAM = re.compile(r"(?i)(password=)[^&\s]*")


def secrets_of(url: str) -> list[str]:
    """The passwords ``url`` carries (in its userinfo or a ``password=`` option), as written
    and decoded."""
    try:
        parts = urlsplit(url)
        found = [parts.password] if parts.password else []
        found += [v for k, v in parse_qsl(parts.query) if k.lower() == "password" and v]
    except ValueError:  # (a malformed URL: scrub what looks like userinfo below)
        found = []
    userinfo = url.partition("://")[2].rpartition("@")[0]
    if ":" in userinfo:
        found.append(userinfo.partition(":")[2])
    return sorted({s for f in found for s in (f, unquote(f)) if s}, key=len, reverse=True)


def redact_url(url: str) -> str:
    """``url`` with its password replaced by ``***`` (the user, host and database kept)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return redact_text(url, url)
    userinfo, at, location = rest.rpartition("@")
    if at and ":" in userinfo:
        rest = f"{userinfo.partition(':')[0]}:{MASK}@{location}"
    return _PASSWORD_PARAM.sub(rf"\1{MASK}", f"{scheme}://{rest}")


def redact_text(text: str, url: str) -> str:
    """``text`` with every password of ``url`` replaced by ``***``."""
    for secret in secrets_of(url):
        text = text.replace(secret, MASK)
    return text
