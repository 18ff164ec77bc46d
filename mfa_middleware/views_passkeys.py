"""The passkey pages (``/mfa/passkeys`` and its WebAuthn JSON steps), as store operations like ``views``.

The browser side is ``static/passkeys.js``: it asks for options, runs the browser's prompt, and posts the
answer (form-encoded, with the page's CSRF token, so the gate's one CSRF check covers these steps too);
every step answers JSON, a refusal a 4xx ``{"error", "message"}``.
"""

from __future__ import annotations

import json
import secrets

from . import i18n, views  # its helpers are used at call time: either module may be imported first
from .gate import Context, Decision, Gate, Reply
from .i18n import N_
from .passkeys import MAX_NAME, Passkey, PasskeyError, clean_name
from .paths import safe_next
from .store import Op

MAX_RESPONSE = 32 * 1024  # a WebAuthn answer with attestation "none" is a few hundred bytes


def _error(gate: Gate, ctx: Context, exc: PasskeyError) -> Reply:
    extra = [("retry-after", str(max(1, round(exc.retry_after))))] if exc.status == 429 else []
    return gate.json(exc.status, {"error": exc.code, "message": message(views.tr(gate, ctx), exc)}, extra)


def message(lang: i18n.Lang, exc: PasskeyError) -> str:
    """A refusal's message in the page's language."""
    if exc.code == "locked":
        return views.locked_message(lang, exc.retry_after)
    text = lang.gettext(exc.template)
    return text % exc.params if exc.params else text


def _relying_party(gate: Gate, ctx: Context) -> tuple[str, tuple[str, ...]]:
    return gate.passkeys.rp.resolve(ctx.req.headers.get("host", ""), ctx.req.https)


def _response_field(ctx: Context) -> str:
    text = ctx.req.form.get("credential", "")
    if not text or len(text) > MAX_RESPONSE:
        raise PasskeyError("bad_request", N_("No passkey answer was sent."))
    try:
        if not isinstance(json.loads(text), dict):
            raise ValueError("not an object")
    except ValueError as exc:
        raise PasskeyError("bad_request", N_("The passkey answer is not JSON.")) from exc
    return text



def _next(ctx: Context) -> str:
    return safe_next(ctx.req.form.get("next") or ctx.req.query.get("next"), ctx.req.root + "/")


# -- the page --------------------------------------------------------------------------------------
def passkeys_page(gate: Gate, ctx: Context, notice: str = "", error: str = "", status: int = 200) -> Op[Decision]:
    session = yield from gate.ensure_session(ctx)
    keys: list[Passkey] = yield from gate.passkeys.list(ctx.account)
    lang = views.tr(gate, ctx)
    try:
        _relying_party(gate, ctx)
        unavailable = ""
    except PasskeyError as exc:
        unavailable = message(lang, exc)
    never = lang.gettext("never")
    rows = [{"id": p.id, "name": p.name or lang.gettext("Passkey"), "added": lang.datetime(p.added, never),
             "used": lang.datetime(p.last_used, never),
             "kind": lang.gettext("Synced passkey") if p.synced else lang.gettext("On one device")} for p in keys]
    return views.page(gate, ctx, "mfa_passkeys.html", status, csrf=session.csrf, passkeys=rows, notice=notice,
                error=error, unavailable=unavailable, max_name=MAX_NAME, enabled=ctx.enabled)


# -- adding one ------------------------------------------------------------------------------------
def register_options(gate: Gate, ctx: Context) -> Op[Decision]:
    assert ctx.session is not None  # the CSRF check required one
    name = clean_name(ctx.req.form.get("name", "")) or "Passkey"
    try:
        rp_id, _ = _relying_party(gate, ctx)
        label = yield from gate.label(ctx.account)
        options = yield from gate.passkeys.registration_options(ctx.account, ctx.session.sid, rp_id, label, name)
    except PasskeyError as exc:
        return _error(gate, ctx, exc)
    return gate.json(200, {"publicKey": options})


def register(gate: Gate, ctx: Context) -> Op[Decision]:
    assert ctx.session is not None
    try:
        rp_id, origins = _relying_party(gate, ctx)
        added = yield from gate.passkeys.register(ctx.account, ctx.session.sid, rp_id, origins, _response_field(ctx))
    except PasskeyError as exc:
        return _error(gate, ctx, exc)
    if not added.turned_on:
        return gate.json(200, {"ok": True, "id": added.passkey.id, "redirect": f"{ctx.base}/passkeys"})
    # This passkey turned 2FA on: this session passed it (it just used the passkey), moves to the new epoch
    # (which ends the account's other sessions, as enabling TOTP does), and is shown the new backup codes once.
    ctx.enabled, ctx.epoch = True, added.epoch
    yield from gate.mark_verified(ctx, "webauthn")
    yield from views._show_codes_next(gate, ctx, added.codes)
    return gate.json(200, {"ok": True, "id": added.passkey.id, "redirect": f"{ctx.base}/backup-codes"})


# -- passing the gate with one ---------------------------------------------------------------------
def _not_needed(gate: Gate, ctx: Context) -> Reply:
    """2FA off, or verified recently enough for the step-up that asked: nothing for a passkey to prove."""
    message = views.tr(gate, ctx).gettext("No passkey is needed.")
    return gate.json(409, {"error": "not_needed", "message": message, "redirect": _next(ctx)})


def authenticate_options(gate: Gate, ctx: Context) -> Op[Decision]:
    assert ctx.session is not None
    if views.settled(gate, ctx):
        return _not_needed(gate, ctx)
    try:
        rp_id, _ = _relying_party(gate, ctx)
        options = yield from gate.passkeys.authentication_options(ctx.account, ctx.session.sid, rp_id)
    except PasskeyError as exc:
        return _error(gate, ctx, exc)
    return gate.json(200, {"publicKey": options})


def authenticate(gate: Gate, ctx: Context) -> Op[Decision]:
    assert ctx.session is not None
    if views.settled(gate, ctx):
        return _not_needed(gate, ctx)
    try:
        rp_id, origins = _relying_party(gate, ctx)
        yield from gate.passkeys.authenticate(ctx.account, ctx.session.sid, rp_id, origins, _response_field(ctx),
                                              ctx.req.client_ip)
    except PasskeyError as exc:
        return _error(gate, ctx, exc)
    yield from gate.mark_verified(ctx, "webauthn")
    if ctx.req.form.get("remember") and gate.remember_days > 0:
        token_id = secrets.token_urlsafe(16)
        yield from gate.twofactor.trust_browser(ctx.account, token_id, ctx.epoch, gate.remember_days)
        ctx.cookies.append(gate.trust_cookie(ctx.account, token_id, ctx.req.https))
    return gate.json(200, {"ok": True, "redirect": _next(ctx)})


# -- rename and remove -----------------------------------------------------------------------------
def rename(gate: Gate, ctx: Context) -> Op[Decision]:
    form, lang = ctx.req.form, views.tr(gate, ctx)
    name = clean_name(form.get("new_name") or form.get("name", ""))  # the page sends new_name; name also works
    if not name:
        return (yield from passkeys_page(gate, ctx, error=lang.gettext("Enter a name for the passkey."),
                                             status=400))
    done = yield from gate.passkeys.rename(ctx.account, ctx.req.form.get("credential_id", ""), name)
    if not done:
        return (yield from passkeys_page(gate, ctx, error=lang.gettext("There is no such passkey."), status=404))
    notice = lang.gettext("The passkey is now called \u201c%(name)s\u201d.") % {"name": name}
    return (yield from passkeys_page(gate, ctx, notice=notice))


def remove(gate: Gate, ctx: Context) -> Op[Decision]:
    cid, lang = ctx.req.form.get("credential_id", ""), views.tr(gate, ctx)
    if not cid or len(cid) > 1400:
        return (yield from passkeys_page(gate, ctx, error=lang.gettext("There is no such passkey."), status=404))
    reason = yield from gate.check_password(ctx, ctx.req.form.get("password", ""))
    if reason:
        text, status = views._password_error(lang, reason)
        return (yield from passkeys_page(gate, ctx, error=text, status=status))
    if not ctx.totp and ctx.passkeys <= 1 and (yield from gate.policy.for_identity(ctx.account)) == "required":
        text = lang.gettext("This site requires two-factor authentication for your account: add another passkey "
                            "or an authenticator app first.")
        return (yield from passkeys_page(gate, ctx, error=text, status=403))
    state, epoch = yield from gate.passkeys.remove(ctx.account, cid)
    if state == 0:
        return (yield from passkeys_page(gate, ctx, error=lang.gettext("There is no such passkey."), status=404))
    if state == 2:  # the last factor went: 2FA is off, as after disabling it
        yield from views._keep_this_session(gate, ctx, epoch)
        ctx.enabled, ctx.passkeys = False, 0
        notice = lang.gettext("The passkey was removed. Two-factor authentication is now off.")
        return (yield from passkeys_page(gate, ctx, notice=notice))
    return (yield from passkeys_page(gate, ctx, notice=lang.gettext("The passkey was removed.")))


# Registered into the gate's one table of pages (``views.dispatch``); the two ways of passing the gate with a
# passkey are open before 2FA is passed, like the code prompts.
views.VIEWS.update({
    ("GET", "/passkeys"): passkeys_page,
    ("POST", "/passkeys/register/options"): register_options,
    ("POST", "/passkeys/register"): register,
    ("POST", "/passkeys/authenticate/options"): authenticate_options,
    ("POST", "/passkeys/authenticate"): authenticate,
    ("POST", "/passkeys/rename"): rename,
    ("POST", "/passkeys/remove"): remove,
})
views.BEFORE_VERIFY.update({"/passkeys/authenticate/options", "/passkeys/authenticate"})
views.JSON_PAGES.update({"/passkeys/register/options", "/passkeys/register", "/passkeys/authenticate/options",
                         "/passkeys/authenticate"})
