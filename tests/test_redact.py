"""A store URL is shown without its password, wherever the password is written."""

from __future__ import annotations

import pytest

from weirflow.redact import redact_text, redact_url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://wf:s3cr3t@db.example:5432/jobs", "postgresql://wf:***@db.example:5432/jobs"),
        ("postgresql://wf@db/jobs", "postgresql://wf@db/jobs"),
        ("postgresql://db/jobs?user=wf&password=s3cr3t", "postgresql://db/jobs?user=wf&password=***"),
        ("postgresql://wf:p%40ss@db/jobs", "postgresql://wf:***@db/jobs"),
        ("postgres://wf:a:b@c@db/jobs", "postgres://wf:***@db/jobs"),
        ("sqlite:///weirflow.db", "sqlite:///weirflow.db"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_redact_text_removes_the_password_as_written_and_decoded() -> None:
    url = "postgresql://wf:p%40ss@db/jobs"
    assert redact_text("auth failed for wf with p%40ss (p@ss)", url) == "auth failed for wf with *** (***)"
