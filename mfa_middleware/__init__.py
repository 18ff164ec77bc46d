"""A drop-in second-factor gate (TOTP + backup codes) for ASGI and WSGI apps."""

from __future__ import annotations

from .asgi import MFAMiddleware
from .gate import Gate
from .identity import django_session, flask_session, starlette_session
from .passwords import FAST, OWASP, Argon2Profile
from .stepup import require_recent
from .twofactor import Status, ThrottlePolicy, TwoFactor
from .wsgi import MFAWsgiMiddleware

__version__ = "0.1.0"

__all__ = [
    "FAST", "OWASP", "Argon2Profile", "Gate", "MFAMiddleware", "MFAWsgiMiddleware", "Status",
    "ThrottlePolicy", "TwoFactor", "django_session", "flask_session", "require_recent", "starlette_session",
]
