"""Django settings for the example: sqlite in ``DJANGO_DB`` (default: a file in a fresh temp dir)."""

from __future__ import annotations

import os
import secrets
import tempfile
from pathlib import Path

DEBUG = False
# Django signs its own session cookie with this; the gate keeps its own keys (MFA_SECRET_KEY…).
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY") or secrets.token_urlsafe(48)
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver", "[::1]"]
INSTALLED_APPS = ["django.contrib.auth", "django.contrib.contenttypes", "django.contrib.sessions"]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
ROOT_URLCONF = "examples.django_site.urls"
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("DJANGO_DB") or str(Path(tempfile.mkdtemp(prefix="django-site-")) / "db.sqlite3"),
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
SESSION_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_HTTPONLY = True
LOGIN_URL = "/login/"
