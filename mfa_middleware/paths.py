"""Which path a request is for, as the app behind the gate routes it, and which paths skip the gate.

The gate must decide on the very path the app will route, or a client could send it one path and the app
another: WSGI apps route on ``PATH_INFO`` (``SCRIPT_NAME`` is where the app is mounted, and proxy set-ups
such as werkzeug's ``ProxyFix(x_prefix=1)`` fill it from a client header), and ASGI apps on ``path`` less
``root_path`` (Starlette's ``get_route_path``, Django's ``path_info``). The mount point is only used to
build the URLs the browser is sent to.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote

# What ``safe_next`` leaves as it is: RFC 3986's reserved and unreserved characters, and ``%`` so that an
# already-encoded target is not encoded twice. Everything else (spaces, non-ASCII) is percent-encoded.
_URL_SAFE = "/?#[]@!$&'()*+,;=:-._~%"


def asgi_route_path(scope: Mapping[str, Any]) -> str:
    """The path Starlette routes: ``path`` without the ``root_path`` it was mounted under."""
    path: str = scope["path"]
    root: str = scope.get("root_path") or ""
    if not root or not path.startswith(root):
        return path
    if len(path) == len(root):
        return "/"
    return path[len(root):] if path[len(root)] == "/" else path


def asgi_root(scope: Mapping[str, Any]) -> str:
    return mount_point(scope.get("root_path") or "")


def wsgi_route_path(environ: Mapping[str, Any]) -> str:
    return _utf8(str(environ.get("PATH_INFO") or "/"))


def wsgi_root(environ: Mapping[str, Any]) -> str:
    return mount_point(_utf8(str(environ.get("SCRIPT_NAME") or "")))


def _utf8(text: str) -> str:
    """WSGI gives paths as latin-1 text of the raw bytes: read those bytes as UTF-8, as the apps do."""
    try:
        return text.encode("latin-1").decode("utf-8", "replace")
    except UnicodeEncodeError:  # a server that decoded them already
        return text


def mount_point(root: str) -> str:
    """Where the app is mounted, fit to put in front of a redirect's path: '' unless it is a plain
    same-site path (a client can set it through a proxy header, so it must never name another site)."""
    root = root.rstrip("/")
    if not root.startswith("/") or root.startswith("//") or any(c in root for c in "\\?#") \
            or any(ord(c) < 0x21 or ord(c) == 0x7F for c in root):
        return ""
    return quote(root, safe=_URL_SAFE)


def _plain(path: str) -> bool:
    """No dot segments, encodings, backslashes or control characters: what a prefix exemption accepts."""
    if "%" in path or "\\" in path or "//" in path or any(ord(c) < 0x20 or ord(c) == 0x7F for c in path):
        return False
    segments = path.split("/")
    return "." not in segments and ".." not in segments


class Exemptions:
    """Paths that skip the gate: exact paths, or ``"/prefix/*"`` for everything under a prefix.

    An exact path matches only itself (not its trailing-slash, case or encoded variants: the app routes
    those elsewhere or nowhere). Under a prefix, only plain paths match, so ``/static/../account`` is
    gated even if some layer would later resolve it.
    """

    def __init__(self, patterns: Iterable[str]) -> None:
        exact: set[str] = set()
        prefixes: list[str] = []
        for pattern in patterns:
            if not pattern.startswith("/"):
                raise ValueError(f"exempt path {pattern!r} must start with '/'")
            if pattern.endswith("/*"):
                prefixes.append(pattern[:-1])
            elif "*" in pattern:
                raise ValueError(f"exempt path {pattern!r}: only a trailing '/*' is a wildcard")
            else:
                exact.add(pattern)
        self.exact = frozenset(exact)
        self.prefixes = tuple(prefixes)
        # Paths the gate's lanes must not answer from a memo (they are decided by a rule of their own).
        self.roots = (*self.exact, *self.prefixes)

    def __call__(self, path: str) -> bool:
        if path in self.exact:
            return True
        return bool(self.prefixes) and path.startswith(self.prefixes) and _plain(path)


def safe_next(target: str | None, default: str = "/") -> str:
    """A redirect target on this site, percent-encoded, or ``default``.

    Only a path: no scheme or host, no protocol-relative ``//``, no backslash (browsers read it as a
    slash), no control character (browsers drop tabs and newlines, which could join ``/`` and ``/``).
    Everything outside ASCII is percent-encoded so the Location header is plain ASCII; a full-width
    solidus stays an encoded character in the path, never a second slash.
    """
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return default
    if any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in target):
        return default
    try:
        encoded = quote(target, safe=_URL_SAFE)
    except UnicodeEncodeError:  # a lone surrogate
        return default
    if not encoded.startswith("/") or encoded.startswith("//"):
        return default
    return encoded
