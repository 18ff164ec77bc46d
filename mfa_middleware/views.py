"""The gate's own pages under the prefix (``/mfa/verify``, ``/mfa/setup``…), as store operations.

Each view gets the gate and the request ``Context`` and returns a ``Decision``; none touches I/O.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Generator
from typing import Any

from . import csrf, qr, totp
from .crypto import SeedDecryptError
from .gate import Context, Decision, Gate, Reply
from .paths import safe_next
from .store import Op

View = Callable[[Gate, Context], Generator[Any, Any, Decision]]
CODES_SEP = "\n"
# Pages a signed-in user whose 2FA is on may use before passing it: the ways of passing it.
BEFORE_VERIFY: set[str] = {"/verify", "/verify/backup"}
# Pages fetched by script that answer JSON whatever the Accept header says (the passkey steps).
JSON_PAGES: set[str] = set()


def dispatch(gate: Gate, ctx: Context) -> Op[Decision]:
    sub = ctx.req.path[len(gate.prefix):].rstrip("/") or "/security"
    method = "GET" if ctx.req.method == "HEAD" else ctx.req.method
    view = VIEWS.get((method, sub))
    if view is None:
        allowed = {m for m, p in VIEWS if p == sub}
        if allowed:
            return Reply(405, [("allow", ", ".join(sorted(allowed)))], b"method not allowed")
        return page(gate, ctx, "mfa_message.html", 404, title="Not found", message="There is no such page.")
    if ctx.req.method == "POST":
        session = ctx.session
        if session is None or not csrf.valid(session.csrf, ctx.req.form.get(csrf.FIELD)):
            yield from gate.ensure_session(ctx)
            if sub in JSON_PAGES or ctx.req.wants_json():
                return gate.json(400, {"error": "csrf", "message": "The page expired. Please reload it."})
            return page(gate, ctx, "mfa_message.html", 400, title="Please try again",
                             message="The form expired or did not come from this site. Please try again.",
                             link=ctx.base + sub)
    if sub not in BEFORE_VERIFY and ctx.enabled and not ctx.verified:
        if sub in JSON_PAGES or ctx.req.wants_json():
            return gate.json(401, {"error": "mfa_required", "verify_url": f"{ctx.base}/verify"})
        return gate.redirect(f"{ctx.base}/verify?next={ctx.base}{sub}")
    if ctx.enabled and not ctx.verified and ctx.session is not None:
        # A backup code this session used while the session write after it failed (see USE_BACKUP): the
        # user is let in now instead of having lost the code. The verify views then just redirect.
        granted = yield from gate.twofactor.redeem_grant(ctx.account, ctx.session.sid, ctx.epoch)
        if granted:
            yield from gate.mark_verified(ctx, granted)
    return (yield from view(gate, ctx))


def page(gate: Gate, ctx: Context, template: str, status: int = 200, **context: Any) -> Reply:
    return gate.html(template, status, prefix=ctx.base, **context)


def _next(ctx: Context) -> str:
    return safe_next(ctx.req.query.get("next"), ctx.req.root + "/")


# -- verify ----------------------------------------------------------------------------------------
def verify_page(gate: Gate, ctx: Context, error: str = "", status: int = 200) -> Op[Decision]:
    if not ctx.enabled or ctx.verified:
        return gate.redirect(_next(ctx))
    session = yield from gate.ensure_session(ctx)
    return page(gate, ctx, "mfa_verify.html", status, csrf=session.csrf, next=_next(ctx), error=error,
                     remember_days=gate.remember_days, totp=ctx.totp, passkeys=ctx.passkeys)


def _failure(outcome_reason: str, retry: float) -> tuple[str, int]:
    if outcome_reason == "locked":
        return f"Too many attempts. Try again in {max(1, round(retry))} seconds.", 429
    wait = f" Too many attempts: wait {max(1, round(retry))} seconds before the next try." if retry else ""
    if outcome_reason == "replayed":
        return "That code was already used. Wait for the next code and try again." + wait, 401
    return "That code is not right. Check your app and try again." + wait, 401


def verify_submit(gate: Gate, ctx: Context) -> Op[Decision]:
    if not ctx.enabled or ctx.verified:
        return gate.redirect(_next(ctx))
    outcome = yield from gate.twofactor.verify_code(ctx.account, ctx.req.form.get("code", ""), ctx.req.client_ip)
    if not outcome.ok:
        message, status = _failure(outcome.reason, outcome.retry_after)
        return (yield from verify_page(gate, ctx, message, status))
    yield from gate.mark_verified(ctx, "totp")
    if ctx.req.form.get("remember") and gate.remember_days > 0:
        token_id = secrets.token_urlsafe(16)
        yield from gate.twofactor.trust_browser(ctx.account, token_id, ctx.epoch, gate.remember_days)
        ctx.cookies.append(gate.trust_cookie(ctx.account, token_id, ctx.req.https))
    return gate.redirect(_next(ctx))


def backup_page(gate: Gate, ctx: Context, error: str = "", status: int = 200) -> Op[Decision]:
    if not ctx.enabled or ctx.verified:
        return gate.redirect(_next(ctx))
    session = yield from gate.ensure_session(ctx)
    return page(gate, ctx, "mfa_verify_backup.html", status, csrf=session.csrf, next=_next(ctx), error=error)


def backup_submit(gate: Gate, ctx: Context) -> Op[Decision]:
    if not ctx.enabled or ctx.verified:
        return gate.redirect(_next(ctx))
    code = ctx.req.form.get("backup_code", "")
    session = yield from gate.ensure_session(ctx)
    outcome = yield from gate.twofactor.use_backup_code(ctx.account, code, ctx.req.client_ip, session.sid)
    if not outcome.ok:
        message, status = _failure(outcome.reason, outcome.retry_after)
        if outcome.reason == "wrong":
            message = "That backup code is not valid or was already used." + message.partition(".")[2]
        return (yield from backup_page(gate, ctx, message, status))
    yield from gate.mark_verified(ctx, "backup")
    return page(gate, ctx, "mfa_backup_used.html", remaining=outcome.remaining or 0, next=_next(ctx))


# -- security page and changes ---------------------------------------------------------------------
def security_page(gate: Gate, ctx: Context, notice: str = "", error: str = "", status: int = 200) -> Op[Decision]:
    session = yield from gate.ensure_session(ctx)
    st = yield from gate.twofactor.status(ctx.account)
    # New codes sealed in this session but never displayed (the redirect to them was cut off, or the user
    # typed another address): say so, or they would only learn it when they need a code.
    return page(gate, ctx, "mfa_security.html", status, csrf=session.csrf, st=st, notice=notice, error=error,
                     codes_waiting=bool(session.codes))


def setup_page(gate: Gate, ctx: Context, error: str = "", status: int = 200) -> Op[Decision]:
    if ctx.totp:
        return gate.redirect(f"{ctx.base}/security")
    session = yield from gate.ensure_session(ctx)
    seed = yield from gate.twofactor.begin_enrollment(ctx.account, session.sid)
    uri = totp.provisioning_uri(seed, (yield from gate.label(ctx.account)), gate.twofactor.params)
    return page(gate, ctx, "mfa_setup.html", status, csrf=session.csrf, qr=qr.qr_svg(uri), key=totp.group_key(seed),
                     error=error)


def _password_error(reason: str) -> tuple[str, int]:
    if reason == "locked":
        return "Too many attempts. Please wait a while and try again.", 429
    return "Your password is not right.", 401


def setup_submit(gate: Gate, ctx: Context) -> Op[Decision]:
    if ctx.totp:
        return gate.redirect(f"{ctx.base}/security")
    reason = yield from gate.check_password(ctx, ctx.req.form.get("password", ""))
    if reason:
        return (yield from setup_page(gate, ctx, *_password_error(reason)))
    assert ctx.session is not None  # the CSRF check required one
    codes = yield from gate.twofactor.confirm_enrollment(ctx.account, ctx.req.form.get("code", ""), ctx.session.sid)
    if codes is None:
        return (yield from setup_page(gate, ctx, "That code is not right. Enter the code your app shows now.", 400))
    st = yield from gate.twofactor.status(ctx.account)
    ctx.enabled, ctx.epoch = True, st.epoch
    yield from gate.mark_verified(ctx, "totp")
    if not codes:  # 2FA was already on with a passkey: the backup codes stay as they were
        return (yield from security_page(gate, ctx, notice="Your authenticator app is set up."))
    return (yield from _show_codes_next(gate, ctx, codes))


def _show_codes_next(gate: Gate, ctx: Context, codes: list[str]) -> Op[Decision]:
    assert ctx.session is not None
    sealed = gate.cipher.encrypt("codes:" + ctx.session.sid, CODES_SEP.join(codes))
    ctx.session = yield from gate.sessions.update(ctx.session, codes=sealed)
    return gate.redirect(f"{ctx.base}/backup-codes")


def backup_codes_page(gate: Gate, ctx: Context) -> Op[Decision]:
    session = yield from gate.ensure_session(ctx)
    codes: list[str] = []
    if session.codes:
        try:
            codes = gate.cipher.decrypt("codes:" + session.sid, session.codes).split(CODES_SEP)
        except SeedDecryptError:
            codes = []
        ctx.session = yield from gate.sessions.update(session, codes="")  # shown once
    account = (yield from gate.label(ctx.account)) if codes else ctx.account
    text = f"{gate.issuer} backup codes for {account}\n\n" + "\n".join(codes) + "\n"
    reply = page(gate, ctx, "mfa_backup_codes.html", codes=codes, text=text, account=account)
    return reply


def _require_password(gate: Gate, ctx: Context) -> Op[Decision | None]:
    reason = yield from gate.check_password(ctx, ctx.req.form.get("password", ""))
    if not reason:
        return None
    message, status = _password_error(reason)
    return (yield from security_page(gate, ctx, error=message, status=status))


def disable_submit(gate: Gate, ctx: Context) -> Op[Decision]:
    refused = yield from _require_password(gate, ctx)
    if refused is not None:
        return refused
    epoch = yield from gate.twofactor.disable(ctx.account)
    yield from _keep_this_session(gate, ctx, epoch)
    ctx.enabled = False
    return (yield from security_page(gate, ctx, notice="Two-factor authentication is now off."))


def regenerate_submit(gate: Gate, ctx: Context) -> Op[Decision]:
    if not ctx.enabled:
        return gate.redirect(f"{ctx.base}/security")
    refused = yield from _require_password(gate, ctx)
    if refused is not None:
        return refused
    result = yield from gate.twofactor.regenerate(ctx.account)
    if result is None:
        return gate.redirect(f"{ctx.base}/security")
    codes, epoch = result
    yield from _keep_this_session(gate, ctx, epoch)
    return (yield from _show_codes_next(gate, ctx, codes))


def signout_everywhere(gate: Gate, ctx: Context) -> Op[Decision]:
    epoch = yield from gate.twofactor.sign_out_everywhere(ctx.account)
    yield from _keep_this_session(gate, ctx, epoch)
    return (yield from security_page(gate, ctx, notice="All other sessions were signed out."))


def _keep_this_session(gate: Gate, ctx: Context, epoch: int) -> Op[None]:
    """The epoch bump ends every other session; this one moves on (with a new id) to the new epoch."""
    ctx.epoch = epoch
    session = yield from gate.ensure_session(ctx)
    ctx.session = yield from gate.sessions.rotate(session, epoch=epoch)
    ctx.cookies.append(gate.session_cookie(ctx.session, ctx.req.https))


def question_page(gate: Gate, ctx: Context, error: str = "", status: int = 200) -> Op[Decision]:
    session = yield from gate.ensure_session(ctx)
    st = yield from gate.twofactor.status(ctx.account)
    return page(gate, ctx, "mfa_security_question.html", status, csrf=session.csrf,
                     question=st.security_question or "", error=error)


def question_submit(gate: Gate, ctx: Context) -> Op[Decision]:
    form = ctx.req.form
    question, answer = form.get("question", "").strip(), form.get("answer", "")
    if not question or not answer.strip() or len(question) > 200 or len(answer) > 200:
        return (yield from question_page(gate, ctx, "Enter a question and an answer (200 characters at most).", 400))
    reason = yield from gate.check_password(ctx, form.get("password", ""))
    if reason:
        return (yield from question_page(gate, ctx, *_password_error(reason)))
    yield from gate.twofactor.set_security_question(ctx.account, question, answer)
    return (yield from security_page(gate, ctx, notice="Your security question was saved."))


VIEWS: dict[tuple[str, str], View] = {
    ("GET", "/verify"): verify_page,
    ("POST", "/verify"): verify_submit,
    ("GET", "/verify/backup"): backup_page,
    ("POST", "/verify/backup"): backup_submit,
    ("GET", "/security"): security_page,
    ("GET", "/setup"): setup_page,
    ("POST", "/setup"): setup_submit,
    ("GET", "/backup-codes"): backup_codes_page,
    ("POST", "/disable"): disable_submit,
    ("POST", "/regenerate"): regenerate_submit,
    ("POST", "/signout-everywhere"): signout_everywhere,
    ("GET", "/security-question"): question_page,
    ("POST", "/security-question"): question_submit,
}

# Passkeys (issue 22) live in their own module, which adds its pages to VIEWS.
from . import views_passkeys  # noqa: E402, F401
