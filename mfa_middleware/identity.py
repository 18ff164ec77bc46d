"""Ready identity hooks: who the host app says is logged in (an account id), or None.

The gate never logs anyone in; it reads the host app's own login so its 2FA state can be bound to it.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any


def starlette_session(key: str = "user") -> Callable[[Mapping[str, Any]], str | None]:
    """Starlette/FastAPI ``request.session[key]`` (the gate must sit inside ``SessionMiddleware``)."""

    def identity(scope: Mapping[str, Any]) -> str | None:
        try:
            value = scope["session"][key]
        except (KeyError, TypeError):  # no session middleware, no login, or not a mapping
            return None
        if value.__class__ is str:  # the common case, on every request: skip the conversion
            return value or None
        return str(value) if value else None

    return identity


MAX_REMEMBERED_HEADER = 1024  # a browser's Cookie header for a gated app is a few hundred characters


def flask_session(app: Any, key: str = "user", cache_size: int = 10_000) -> Callable[[Mapping[str, Any]], str | None]:
    """Flask's signed session cookie, read with the app's own serializer and secret key.

    A browser sends the same cookie again and again; cookies whose signature checked out are remembered by
    their exact text (with their signing time, so the session lifetime is still enforced on every request).
    """
    verified: dict[str, tuple[str | None, float]] = {}
    found: dict[str, str | None] = {}  # Cookie header -> the session cookie Flask would read from it

    def identity(environ: Mapping[str, Any]) -> str | None:
        header = environ.get("HTTP_COOKIE", "")
        if not header:
            return None
        value = found.get(header)
        if value is None:
            value = _flask_cookie(header, app.config.get("SESSION_COOKIE_NAME", "session"))
            if len(header) <= MAX_REMEMBERED_HEADER:  # a client inventing huge headers cannot fill memory
                if len(found) >= cache_size:
                    found.clear()
                found[header] = value
        if not value:
            return None
        max_age = app.permanent_session_lifetime.total_seconds()
        hit = verified.get(value)
        if hit is None:
            hit = _flask_load(app, value, key, max_age)
            if hit is None:
                return None
            if len(verified) >= cache_size:
                verified.clear()
            verified[value] = hit
        user, signed_at = hit
        return user if time.time() - signed_at <= max_age else None

    return identity


def _flask_cookie(header: str, name: str) -> str:
    """The cookie Flask reads: werkzeug's parser, and with the name repeated the *first* one, as
    ``request.cookies.get`` answers. Another parser (the stdlib's keeps the last) would let a request carry
    the victim's session first and the attacker's verified one after it: the app would serve the victim
    while the gate checked the attacker's second factor."""
    # The parser flask.Request.cookies runs, on the same text (werkzeug.http.parse_cookie would first re-decode
    # the latin-1 WSGI text as UTF-8, and raise on bytes that are not).
    from werkzeug.sansio.http import parse_cookie

    return parse_cookie(header).get(name) or ""


def _flask_load(app: Any, value: str, key: str, max_age: float) -> tuple[str | None, float] | None:
    serializer = app.session_interface.get_signing_serializer(app)
    if serializer is None:
        return None
    try:
        data, signed_at = serializer.loads(value, max_age=int(max_age), return_timestamp=True)
    except Exception:  # bad signature, expired, malformed: nobody is logged in
        return None
    user = data.get(key) if isinstance(data, dict) else None
    return (str(user) if user else None), signed_at.timestamp()


def django_session() -> Callable[[Mapping[str, Any]], Any]:
    """Django's logged-in user (``django.contrib.auth``), as its user pk, for either handler.

    Reads the session cookie and asks Django's own ``auth.get_user`` (session engine, auth backend, the
    session hash that logs out other sessions on a password change). Under WSGI it answers directly; given
    an ASGI scope it returns an awaitable that runs the lookup in Django's sync thread, since the session
    backend and the user lookup may touch the database (``MFAMiddleware`` awaits it).
    """

    def identity(environ_or_scope: Mapping[str, Any]) -> Any:
        if "type" in environ_or_scope:  # an ASGI scope
            return _django_async(environ_or_scope)
        return _django_user_id(environ_or_scope.get("HTTP_COOKIE", ""))

    return identity


def django_session_async() -> Callable[[Mapping[str, Any]], Awaitable[str | None]]:
    """``django_session`` for Django's ASGI handler, typed as the coroutine it is there."""
    return _django_async


async def _django_async(scope: Mapping[str, Any]) -> str | None:
    from asgiref.sync import sync_to_async

    # Several Cookie headers (HTTP/2 splits them) joined as Django's ASGI handler joins them.
    header = "; ".join(v.decode("latin-1").rstrip("; ") for k, v in scope.get("headers", []) if k.lower() == b"cookie")
    # thread_sensitive: the same thread Django's ASGI handler runs sync views in, so DB connections are shared.
    return await sync_to_async(_django_user_id, thread_sensitive=True)(header)


def _django_user_id(cookie_header: str) -> str | None:
    from django.conf import settings
    from django.contrib.auth import get_user
    from django.http.cookie import parse_cookie
    from django.utils.module_loading import import_string

    # Django's own parser, so the gate and the app read the same session cookie (the last one of a repeated
    # name, as request.COOKIES does).
    key = parse_cookie(cookie_header).get(settings.SESSION_COOKIE_NAME)
    if not key:
        return None
    store_class = import_string(settings.SESSION_ENGINE + ".SessionStore")

    class _Request:  # all get_user reads from a request
        session = store_class(session_key=key)

    user = get_user(_Request())
    return str(user.pk) if user.is_authenticated else None


def django_password() -> Callable[[str, str], bool]:
    """A ``password_checker`` for the gate's password re-entry (enable, disable…) against Django's users.

    The gate calls it off the event loop, so the ORM is safe to use here.
    """

    def check(account_id: str, password: str) -> bool:
        from django.contrib.auth import get_user_model

        user = get_user_model()._default_manager.filter(pk=account_id).first()
        return bool(user is not None and user.is_active and user.check_password(password))

    return check


def django_username() -> Callable[[str], str]:
    """An ``account_label``: the username the QR code and the codes sheet show instead of the user pk."""

    def label(account_id: str) -> str:
        from django.contrib.auth import get_user_model

        user = get_user_model()._default_manager.filter(pk=account_id).first()
        return user.get_username() if user is not None else account_id

    return label
