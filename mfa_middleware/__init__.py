"""A drop-in second-factor gate (TOTP + backup codes) for ASGI and WSGI apps."""

from __future__ import annotations

__version__ = "0.1.0"
