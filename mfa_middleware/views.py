"""The gate's own pages under the prefix (``/mfa/verify``, ``/mfa/setup``…), as store operations.

Each view gets the gate and the request ``Context`` and returns a ``Decision``; none touches I/O.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Callable, Generator
from typing import Any
from urllib.parse import urlencode

from . import csrf, i18n, qr, totp
from .crypto import SeedDecryptError
from .gate import Context, Decision, Gate, Reply
from .paths import safe_next
from .policy import fresh
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
        lang = tr(gate, ctx)
        return page(gate, ctx, "mfa_message.html", 404, title=lang.gettext("Not found"),
                    message=lang.gettext("There is no such page."))
    if ctx.req.method == "POST":
        session = ctx.session
        if session is None or not csrf.valid(session.csrf, ctx.req.form.get(csrf.FIELD)):
            yield from gate.ensure_session(ctx)
            lang = tr(gate, ctx)
            if sub in JSON_PAGES or ctx.req.wants_json():
                return gate.json(400, {"error": "csrf", "message": lang.gettext("The page expired. Please reload it.")})
            return page(gate, ctx, "mfa_message.html", 400, title=lang.gettext("Please try again"),
                        message=lang.gettext("The form expired or did not come from this site. Please try again."),
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
    return gate.html(template, status, tr(gate, ctx), prefix=ctx.base, **context)


def tr(gate: Gate, ctx: Context) -> i18n.Lang:
    """This request's language (``Gate.lang``): its ``gettext`` for the messages views make."""
    return gate.lang(ctx.req)


def _next(ctx: Context) -> str:
    return safe_next(ctx.req.query.get("next"), ctx.req.root + "/")


# -- verify ----------------------------------------------------------------------------------------
def _max_age(ctx: Context) -> int | None:
    """A step-up prompt's ``max_age`` (sent by the gate with the redirect): how recent the proof must be."""
    text = ctx.req.query.get("max_age", "")
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 9 and int(text) > 0 else None


def settled(gate: Gate, ctx: Context) -> bool:
    """Nothing to prove here: 2FA off, or verified recently enough for the step-up that sent the user."""
    if not ctx.enabled:
        return True
    if not ctx.verified:
        return False
    max_age = _max_age(ctx)
    return max_age is None or fresh(gate.mfa_facts(ctx), max_age, gate.clock())


def _prompt_query(ctx: Context) -> str:
    max_age = _max_age(ctx)
    return urlencode({"next": _next(ctx), **({"max_age": max_age} if max_age else {})}, safe="/")


def verify_page(gate: Gate, ctx: Context, error: str = "", status: int = 200) -> Op[Decision]:
    if settled(gate, ctx):
        return gate.redirect(_next(ctx))
    session = yield from gate.ensure_session(ctx)
    return page(gate, ctx, "mfa_verify.html", status, csrf=session.csrf, next=_next(ctx), error=error,
                error_field="code",
                remember_days=gate.remember_days, query=_prompt_query(ctx), step_up=ctx.verified, totp=ctx.totp,
                passkeys=ctx.passkeys)


def locked_message(lang: i18n.Lang, retry: float) -> str:
    seconds = max(1, round(retry))
    return lang.ngettext("Too many attempts. Try again in %(num)d second.",
                         "Too many attempts. Try again in %(num)d seconds.", seconds) % {"num": seconds}


def _failure(lang: i18n.Lang, outcome_reason: str, retry: float, wrong: str) -> tuple[str, int]:
    """The message for a refused code: each a whole sentence of its own, the wait (if any) one more."""
    if outcome_reason == "locked":
        return locked_message(lang, retry), 429
    seconds = max(1, round(retry))
    wait = " " + lang.ngettext("Too many attempts: wait %(num)d second before the next try.",
                               "Too many attempts: wait %(num)d seconds before the next try.",
                               seconds) % {"num": seconds} if retry else ""
    if outcome_reason == "replayed":
        return lang.gettext("That code was already used. Wait for the next code and try again.") + wait, 401
    return wrong + wait, 401


def verify_submit(gate: Gate, ctx: Context) -> Op[Decision]:
    if settled(gate, ctx):
        return gate.redirect(_next(ctx))
    outcome = yield from gate.twofactor.verify_code(ctx.account, ctx.req.form.get("code", ""), ctx.req.client_ip)
    if not outcome.ok:
        lang = tr(gate, ctx)
        message, status = _failure(lang, outcome.reason, outcome.retry_after,
                                   lang.gettext("That code is not right. Check your app and try again."))
        return (yield from verify_page(gate, ctx, message, status))
    yield from gate.mark_verified(ctx, "totp")
    if ctx.req.form.get("remember") and gate.remember_days > 0:
        token_id = secrets.token_urlsafe(16)
        yield from gate.twofactor.trust_browser(ctx.account, token_id, ctx.epoch, gate.remember_days)
        ctx.cookies.append(gate.trust_cookie(ctx.account, token_id, ctx.req.https))
    return gate.redirect(_next(ctx))


def backup_page(gate: Gate, ctx: Context, error: str = "", status: int = 200) -> Op[Decision]:
    if settled(gate, ctx):
        return gate.redirect(_next(ctx))
    session = yield from gate.ensure_session(ctx)
    return page(gate, ctx, "mfa_verify_backup.html", status, csrf=session.csrf, next=_next(ctx), error=error,
                error_field="backup_code", query=_prompt_query(ctx), step_up=ctx.verified)


def backup_submit(gate: Gate, ctx: Context) -> Op[Decision]:
    if settled(gate, ctx):
        return gate.redirect(_next(ctx))
    code = ctx.req.form.get("backup_code", "")
    session = yield from gate.ensure_session(ctx)
    outcome = yield from gate.twofactor.use_backup_code(ctx.account, code, ctx.req.client_ip, session.sid)
    if not outcome.ok:
        lang = tr(gate, ctx)
        message, status = _failure(lang, outcome.reason, outcome.retry_after,
                                   lang.gettext("That backup code is not valid or was already used."))
        return (yield from backup_page(gate, ctx, message, status))
    yield from gate.mark_verified(ctx, "backup")
    return page(gate, ctx, "mfa_backup_used.html", remaining=outcome.remaining or 0, next=_next(ctx))


# -- who must use 2FA, and step-up without it -------------------------------------------------------
def required_notice(gate: Gate, ctx: Context) -> Op[Decision]:
    """Told once per session: the site requires 2FA of this user, and how many days of grace are left."""
    if ctx.enabled or (yield from gate.policy.for_identity(ctx.account)) != "required":
        return gate.redirect(_next(ctx))
    due = yield from gate.setup_due(ctx)
    session = yield from gate.ensure_session(ctx)
    if not session.noticed:
        ctx.session = yield from gate.sessions.update(session, noticed="1")
    days = max(0, math.ceil((due - gate.clock()) / 86400))
    return page(gate, ctx, "mfa_required.html", days=days, next=_next(ctx),
                setup=f"{ctx.base}/setup?{urlencode({'next': _next(ctx)}, safe='/')}")


def confirm_page(gate: Gate, ctx: Context, error: str = "", status: int = 200) -> Op[Decision]:
    """Step-up for an account without 2FA: the password again."""
    if ctx.enabled:
        return gate.redirect(f"{ctx.base}/verify?{_prompt_query(ctx)}")
    session = yield from gate.ensure_session(ctx)
    return page(gate, ctx, "mfa_confirm.html", status, csrf=session.csrf, query=_prompt_query(ctx), error=error,
                error_field="password")


def confirm_submit(gate: Gate, ctx: Context) -> Op[Decision]:
    if ctx.enabled:
        return gate.redirect(f"{ctx.base}/verify?{_prompt_query(ctx)}")
    reason = yield from gate.check_password(ctx, ctx.req.form.get("password", ""))
    if reason:
        return (yield from confirm_page(gate, ctx, *_password_error(tr(gate, ctx), reason)))
    session = yield from gate.ensure_session(ctx)
    ctx.session = yield from gate.sessions.update(session, reauth_at=float(int(gate.clock())))
    return gate.redirect(_next(ctx))


# -- security page and changes ---------------------------------------------------------------------
def security_page(gate: Gate, ctx: Context, notice: str = "", error: str = "", status: int = 200,
                  error_field: str = "") -> Op[Decision]:
    session = yield from gate.ensure_session(ctx)
    st = yield from gate.twofactor.status(ctx.account)
    required = (yield from gate.policy.for_identity(ctx.account)) == "required"
    # New codes sealed in this session but never displayed (the redirect to them was cut off, or the user
    # typed another address): say so, or they would only learn it when they need a code.
    return page(gate, ctx, "mfa_security.html", status, csrf=session.csrf, st=st, notice=notice, error=error,
                error_field=error_field, codes_waiting=bool(session.codes), required=required)


def setup_page(gate: Gate, ctx: Context, error: str = "", status: int = 200,
               error_field: str = "password") -> Op[Decision]:
    if ctx.totp:
        return gate.redirect(f"{ctx.base}/security")
    session = yield from gate.ensure_session(ctx)
    seed = yield from gate.twofactor.begin_enrollment(ctx.account, session.sid)
    uri = totp.provisioning_uri(seed, (yield from gate.label(ctx.account)), gate.twofactor.params)
    svg = qr.qr_svg(uri, title=tr(gate, ctx).gettext(qr.DEFAULT_TITLE))
    return page(gate, ctx, "mfa_setup.html", status, csrf=session.csrf, qr=svg, key=totp.group_key(seed),
                error=error, error_field=error_field)


def _password_error(lang: i18n.Lang, reason: str) -> tuple[str, int]:
    if reason == "locked":
        return lang.gettext("Too many attempts. Please wait a while and try again."), 429
    return lang.gettext("Your password is not right."), 401


def setup_submit(gate: Gate, ctx: Context) -> Op[Decision]:
    if ctx.totp:
        return gate.redirect(f"{ctx.base}/security")
    reason = yield from gate.check_password(ctx, ctx.req.form.get("password", ""))
    if reason:
        return (yield from setup_page(gate, ctx, *_password_error(tr(gate, ctx), reason)))
    assert ctx.session is not None  # the CSRF check required one
    codes = yield from gate.twofactor.confirm_enrollment(ctx.account, ctx.req.form.get("code", ""), ctx.session.sid)
    if codes is None:
        message = tr(gate, ctx).gettext("That code is not right. Enter the code your app shows now.")
        return (yield from setup_page(gate, ctx, message, 400, error_field="code"))
    st = yield from gate.twofactor.status(ctx.account)
    ctx.enabled, ctx.epoch = True, st.epoch
    yield from gate.mark_verified(ctx, "totp")
    if not codes:  # 2FA was already on with a passkey: the backup codes stay as they were
        return (yield from security_page(gate, ctx, notice=tr(gate, ctx).gettext("Your authenticator app is set up.")))
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
    heading = tr(gate, ctx).gettext("%(issuer)s backup codes for %(account)s") % {"issuer": gate.issuer,
                                                                                   "account": account}
    text = heading + "\n\n" + "\n".join(codes) + "\n"
    reply = page(gate, ctx, "mfa_backup_codes.html", codes=codes, text=text, account=account)
    return reply


def _require_password(gate: Gate, ctx: Context, field_id: str) -> Op[Decision | None]:
    reason = yield from gate.check_password(ctx, ctx.req.form.get("password", ""))
    if not reason:
        return None
    message, status = _password_error(tr(gate, ctx), reason)
    return (yield from security_page(gate, ctx, error=message, status=status, error_field=field_id))


def disable_submit(gate: Gate, ctx: Context) -> Op[Decision]:
    if (yield from gate.policy.for_identity(ctx.account)) == "required":
        message = tr(gate, ctx).gettext("This site requires two-factor authentication for your account, so it "
                                        "cannot be turned off.")
        return (yield from security_page(gate, ctx, error=message, status=403))
    refused = yield from _require_password(gate, ctx, "disable-password")
    if refused is not None:
        return refused
    epoch = yield from gate.twofactor.disable(ctx.account)
    yield from _keep_this_session(gate, ctx, epoch)
    ctx.enabled = False
    return (yield from security_page(gate, ctx, notice=tr(gate, ctx).gettext("Two-factor authentication is now off.")))


def regenerate_submit(gate: Gate, ctx: Context) -> Op[Decision]:
    if not ctx.enabled:
        return gate.redirect(f"{ctx.base}/security")
    refused = yield from _require_password(gate, ctx, "regenerate-password")
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
    return (yield from security_page(gate, ctx, notice=tr(gate, ctx).gettext("All other sessions were signed out.")))


def _keep_this_session(gate: Gate, ctx: Context, epoch: int) -> Op[None]:
    """The epoch bump ends every other session; this one moves on (with a new id) to the new epoch."""
    ctx.epoch = epoch
    session = yield from gate.ensure_session(ctx)
    ctx.session = yield from gate.sessions.rotate(session, epoch=epoch)
    ctx.cookies.append(gate.session_cookie(ctx.session, ctx.req.https))


def question_page(gate: Gate, ctx: Context, error: str = "", status: int = 200,
                  error_field: str = "") -> Op[Decision]:
    session = yield from gate.ensure_session(ctx)
    st = yield from gate.twofactor.status(ctx.account)
    # After a refusal the form keeps what was typed (but never the password).
    typed = ctx.req.form if error else {}
    return page(gate, ctx, "mfa_security_question.html", status, csrf=session.csrf,
                question=typed.get("question", st.security_question or ""), answer=typed.get("answer", ""),
                error=error, error_field=error_field)


def question_submit(gate: Gate, ctx: Context) -> Op[Decision]:
    form = ctx.req.form
    question, answer = form.get("question", "").strip(), form.get("answer", "")
    lang = tr(gate, ctx)
    if not question or not answer.strip() or len(question) > 200 or len(answer) > 200:
        field_id = "question" if not question or len(question) > 200 else "answer"
        message = lang.gettext("Enter a question and an answer (200 characters at most).")
        return (yield from question_page(gate, ctx, message, 400, field_id))
    reason = yield from gate.check_password(ctx, form.get("password", ""))
    if reason:
        return (yield from question_page(gate, ctx, *_password_error(lang, reason), "password"))
    yield from gate.twofactor.set_security_question(ctx.account, question, answer)
    return (yield from security_page(gate, ctx, notice=lang.gettext("Your security question was saved.")))


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
    ("GET", "/required"): required_notice,
    ("GET", "/confirm"): confirm_page,
    ("POST", "/confirm"): confirm_submit,
    ("GET", "/security-question"): question_page,
    ("POST", "/security-question"): question_submit,
}

# Passkeys (issue 22) live in their own module, which adds its pages to VIEWS.
from . import views_passkeys  # noqa: E402, F401
