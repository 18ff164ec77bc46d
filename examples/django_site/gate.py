"""What the WSGI and ASGI entry points share: the gate's settings for a Django site."""

from __future__ import annotations

import os
from typing import Any

from examples.demo import admin_step_up
from mfa_middleware.config import Settings
from mfa_middleware.identity import django_password, django_username
from mfa_middleware.passwords import OWASP, Argon2Profile


def setup_django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "examples.django_site.settings")
    import django

    django.setup()


def staff_required(identity: str) -> str:
    """The per-user policy: Django's staff must use 2FA, everyone else may. The gate calls this off the event
    loop (it queries the database) and at most once a second per user."""
    from django.contrib.auth import get_user_model

    user = get_user_model()._default_manager.filter(pk=identity).only("is_staff").first()
    return "required" if user is not None and user.is_staff else "optional"


def gate_options(settings: Settings, argon2_profile: Argon2Profile = OWASP) -> dict[str, Any]:
    """Constructor arguments for either middleware. Passwords live in Django's auth, so the gate's password
    re-entry (enable, disable, regenerate) asks Django, and the authenticator app shows the username."""
    return {
        "secret_key": settings.secret_key,
        "encryption_keys": settings.encryption_keys,
        "password_checker": django_password(),
        "account_label": django_username(),
        "argon2_profile": argon2_profile,
        "login_url": "/login/",
        "logout_url": "/logout/",
        "policy": staff_required,
        "step_up": admin_step_up(),
    }
