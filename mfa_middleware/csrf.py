"""CSRF tokens: a per-session synchronizer token, kept in the server-side gate session record.

A token lives in the record (never only in a cookie), so a forged form from another site cannot know it,
and it dies with the session; comparison is constant-time.
"""

from __future__ import annotations

import secrets

from .crypto import constant_time_equals

FIELD = "csrf_token"


def new_token() -> str:
    return secrets.token_urlsafe(32)


def valid(expected: str | None, submitted: str | None) -> bool:
    return bool(expected) and bool(submitted) and constant_time_equals(str(expected), str(submitted))
