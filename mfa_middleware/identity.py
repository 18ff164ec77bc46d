"""Ready identity hooks: who the host app says is logged in (an account id), or None.

The gate never logs anyone in; it reads the host app's own login so its 2FA state can be bound to it.
"""

from __future__ import annotations

from collections.abc import Callable
from http.cookies import SimpleCookie
from typing import Any


def starlette_session(key: str = "user") -> Callable[[dict[str, Any]], str | None]:
    """Starlette/FastAPI ``request.session[key]`` (the gate must sit inside ``SessionMiddleware``)."""

    def identity(scope: dict[str, Any]) -> str | None:
        session = scope.get("session") or {}
        value = session.get(key)
        return str(value) if value else None

    return identity


def flask_session(app: Any, key: str = "user") -> Callable[[dict[str, Any]], str | None]:
    """Flask's signed session cookie, read with the app's own serializer and secret key."""

    def identity(environ: dict[str, Any]) -> str | None:
        serializer = app.session_interface.get_signing_serializer(app)
        name = app.config.get("SESSION_COOKIE_NAME", "session")
        value = _cookie(environ.get("HTTP_COOKIE", ""), name)
        if serializer is None or not value:
            return None
        try:
            data = serializer.loads(value, max_age=int(app.permanent_session_lifetime.total_seconds()))
        except Exception:  # bad signature, expired, malformed: nobody is logged in
            return None
        user = data.get(key) if isinstance(data, dict) else None
        return str(user) if user else None

    return identity


def django_session() -> Callable[[dict[str, Any]], str | None]:
    """Django's session (``_auth_user_id``) from the session cookie, for the WSGI handler.

    For the ASGI handler wrap it: ``asgiref.sync.sync_to_async(django_session_from_headers)``-style, since
    the session backend may touch the database.
    """

    def identity(environ_or_scope: dict[str, Any]) -> str | None:
        from django.conf import settings  # type: ignore[import-untyped,unused-ignore]
        from django.utils.module_loading import import_string  # type: ignore[import-untyped,unused-ignore]

        header = environ_or_scope.get("HTTP_COOKIE")
        if header is None:
            raw = dict(environ_or_scope.get("headers", [])).get(b"cookie", b"")
            header = raw.decode("latin-1")
        key = _cookie(header, settings.SESSION_COOKIE_NAME)
        if not key:
            return None
        store_class = import_string(settings.SESSION_ENGINE + ".SessionStore")
        session: Any = store_class(session_key=key)
        user = session.get("_auth_user_id")
        return str(user) if user else None

    return identity


def _cookie(header: str, name: str) -> str | None:
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(header)
    except Exception:
        return None
    morsel = jar.get(name)
    return morsel.value if morsel else None
