"""Views of the example: Django's own login (``authenticate`` + ``login``), logout, a login-only home page."""

from __future__ import annotations

import html
from typing import Any

from django.contrib.auth import authenticate, login, logout
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.middleware.csrf import get_token
from django.urls import path
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_http_methods, require_POST

from examples.demo import PAGE, login_body


def _page(title: str, body: str, status: int = 200) -> HttpResponse:
    return HttpResponse(PAGE.format(title=html.escape(title), body=body), status=status)


def _next(request: HttpRequest) -> str:
    target = request.GET.get("next", "/")
    return target if url_has_allowed_host_and_scheme(target, allowed_hosts=None) else "/"


def _mfa(request: HttpRequest) -> dict[str, Any]:
    """What the gate found (``scope["mfa"]`` under ASGI, ``environ["mfa"]`` under WSGI)."""
    scope = getattr(request, "scope", None)
    facts = scope.get("mfa") if scope is not None else request.META.get("mfa")
    return facts or {}


@require_http_methods(["GET", "POST"])
def login_view(request: HttpRequest) -> HttpResponse:
    error, status = "", 200
    if request.method == "POST":
        user = authenticate(request, username=request.POST.get("username", ""),
                            password=request.POST.get("password", ""))
        if user is not None:
            login(request, user)  # Django rotates its session key here
            return HttpResponseRedirect(_next(request), status=303)
        error, status = "Wrong username or password.", 401
    body = login_body("/login/?next=" + _next(request), "csrfmiddlewaretoken", get_token(request), error)
    return _page("Log in", body, status)


@require_POST
def logout_view(request: HttpRequest) -> HttpResponse:
    logout(request)  # the session ends, so the gate's identity hook sees nobody and drops its state too
    return HttpResponseRedirect("/login/", status=303)


@login_required
def home(request: HttpRequest) -> HttpResponse:
    verified = bool(_mfa(request).get("verified"))
    return _page("Home", f"""<h1>Hello, {html.escape(request.user.get_username())}</h1>
<nav><a href="/mfa/security">Security</a></nav>
<form method="post" action="/logout/"><input type="hidden" name="csrfmiddlewaretoken" value="{get_token(request)}">
<button>Log out</button></form>
<p data-signed-in-with="{"2fa" if verified else "password"}">You are signed in
{"with two-factor authentication" if verified else "with your password"}.</p>""")


@login_required
def admin_view(request: HttpRequest) -> HttpResponse:
    """The admin area: staff only; the gate requires staff to use 2FA and asks for it again after a while."""
    if not request.user.is_staff:
        return _page("Not allowed", "<h1>Not allowed</h1><p>Only staff may see this page.</p>", 403)
    return _page("Admin area", """<h1>Admin area</h1>
<p data-admin-area>You confirmed it's you a moment ago.</p><nav><a href="/">Home</a></nav>""")


urlpatterns = [
    path("", home),
    path("admin/", admin_view),
    path("login/", login_view),
    path("logout/", logout_view),
]
