"""The languages of the gate's pages (and the owner page): which one a request gets, and its catalog.

A catalog is ``locales/<code>/LC_MESSAGES/messages.po`` (gettext, kept with Babel; ``make i18n``). The wheel
carries each one compiled to ``.mo`` (``hatch_build.py``); a checkout reads the ``.po`` and compiles it in
memory on first use, so a fresh clone needs no build step. Every shipped directory is a language on offer.

The language is chosen per request and handed to the render as a ``Lang`` (its own ``gettext``/``ngettext``
and date format): nothing global is switched, so threads and event loops may serve different languages at once.
Order: the host app's ``locale`` hook, else the browser's ``Accept-Language`` among the shipped languages,
else English.
"""

from __future__ import annotations

import gettext as _gettext
import io
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from babel import Locale, UnknownLocaleError
from babel.core import negotiate_locale
from babel.dates import format_datetime
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

log = logging.getLogger("mfa_middleware")
LOCALES = Path(__file__).parent / "locales"
DOMAIN = "messages"
DEFAULT = "en"
LocaleHook = Callable[[Any], "str | None"]  # given the ASGI scope or the WSGI environ
_MAX_ACCEPT = 512  # an Accept-Language longer than this is read only this far: it is parsed on every page
_DIGITS = str.maketrans("٠١٢٣٤٥٦٧٨٩۰۱۲۳۴۵۶۷۸۹", "01234567890123456789")


def N_(message: str) -> str:  # gettext's name for "mark for extraction, translate later"
    return message


def ascii_digits(text: str) -> str:
    """Arabic-Indic (U+0660…) and Persian (U+06F0…) digits as ASCII ones, for codes typed on such keyboards."""
    return text.translate(_DIGITS)


@dataclass(frozen=True, eq=False)
class Lang:
    """One language as the pages use it: ``<html lang=code dir=direction>``, translations, dates."""

    code: str
    direction: str
    translations: _gettext.NullTranslations = field(repr=False)

    def gettext(self, message: str) -> str:
        return self.translations.gettext(message)

    def ngettext(self, singular: str, plural: str, n: int) -> str:
        return self.translations.ngettext(singular, plural, n)

    def datetime(self, ts: float | None, never: str = "") -> str:
        """A Unix time in this language's long date and time, in UTC (the zone is spelled out)."""
        if not ts:
            return never
        when = datetime.fromtimestamp(ts, UTC)
        try:
            return format_datetime(when, "long", tzinfo=UTC, locale=self.code)
        except (UnknownLocaleError, ValueError):
            return format_datetime(when, "long", tzinfo=UTC, locale=DEFAULT)


_extra: dict[str, Lang] = {}


def register(code: str, translations: _gettext.NullTranslations, direction: str | None = None) -> None:
    """Offer one more language from translations of the host app's own (or a test's) making. Call at start-up."""
    _extra[code] = Lang(code, direction or _direction(code), translations)
    clear_caches()


def unregister(code: str) -> None:
    _extra.pop(code, None)
    clear_caches()


@lru_cache(maxsize=1)
def available() -> tuple[str, ...]:
    """The languages on offer: English first, then each shipped catalog, then any registered ones."""
    shipped = sorted(p.parent.parent.name for p in LOCALES.glob(f"*/LC_MESSAGES/{DOMAIN}.po"))
    return tuple(dict.fromkeys([DEFAULT, *shipped, *_extra]))


def lang(code: str) -> Lang:
    if code in _extra:
        return _extra[code]
    return _shipped(code)


@lru_cache(maxsize=32)
def _shipped(code: str) -> Lang:
    return Lang(code, _direction(code), _load(code))


def _direction(code: str) -> str:
    try:
        return "rtl" if Locale.parse(code, sep="-").text_direction == "rtl" else "ltr"
    except (UnknownLocaleError, ValueError, TypeError):
        return "ltr"


def _load(code: str) -> _gettext.NullTranslations:
    po = LOCALES / code / "LC_MESSAGES" / f"{DOMAIN}.po"
    mo = po.with_suffix(".mo")
    try:
        if mo.is_file() and (not po.is_file() or mo.stat().st_mtime >= po.stat().st_mtime):
            with mo.open("rb") as f:
                return _gettext.GNUTranslations(f)
        if po.is_file():  # a checkout: compile in memory (about a millisecond), once per process
            with po.open("rb") as f:
                catalog = read_po(f, locale=code.replace("-", "_"))
            buf = io.BytesIO()
            write_mo(buf, catalog)
            buf.seek(0)
            return _gettext.GNUTranslations(buf)
    except (OSError, ValueError) as exc:
        log.error("the %s catalog could not be read, English is used instead: %s", code, exc)
    return _gettext.NullTranslations()


def parse_accept_language(header: str) -> list[str]:
    """The languages of an ``Accept-Language`` header, most wanted first (``q=0`` and ``*`` left out)."""
    ranked: list[tuple[float, int, str]] = []
    for i, part in enumerate(header[:_MAX_ACCEPT].split(",")):
        tag, _, params = part.strip().partition(";")
        tag = tag.strip()
        q = 1.0
        params = params.strip()
        if params.startswith("q="):
            try:
                q = float(params[2:])
            except ValueError:
                q = 0.0
        if tag and tag != "*" and q > 0 and len(tag) <= 35:
            ranked.append((-q, i, tag))
    return [tag for _, _, tag in sorted(ranked)]


@lru_cache(maxsize=256)
def choose(hooked: str | None, accept_language: str) -> Lang:
    """The host app's choice when it is on offer (``de_DE`` and ``de-AT`` find ``de``), else the browser's
    first language on offer, else English."""
    offer = {code.lower(): code for code in available()}
    wanted = [hooked.strip().replace("_", "-")] if hooked else []
    for candidates in (wanted, parse_accept_language(accept_language) if accept_language else []):
        found = negotiate_locale(candidates, list(offer), sep="-", aliases={}) if candidates else None
        if found:
            return lang(offer[found.lower()])
    return lang(DEFAULT)


def clear_caches() -> None:
    """Forget loaded catalogs (after ``make i18n`` in a running process, or a test's ``register``)."""
    _shipped.cache_clear()
    choose.cache_clear()
    available.cache_clear()


def for_request(scope_or_environ: Any, hook: LocaleHook | None = None) -> Lang:
    """The language the gate would choose for this ASGI scope or WSGI environ: ``hook`` (else the gate's
    ``locale`` hook, when the request went through the gate), else Accept-Language, else English. For a host
    app's own pages beside the gate's (the owner page uses it)."""
    if hook is None:
        hook = getattr(scope_or_environ.get("mfa.gate"), "locale_hook", None)
    hooked = None
    if hook is not None:
        try:
            found = hook(scope_or_environ)
            hooked = found if isinstance(found, str) else None  # a coroutine hook cannot be awaited here
            close = getattr(found, "close", None)
            if callable(close):
                close()
        except Exception:  # a broken hook costs the user their language, not the page
            log.exception("the locale hook failed; Accept-Language decides")
    if "headers" in scope_or_environ and "type" in scope_or_environ:  # ASGI
        accept = ""
        for name, value in scope_or_environ["headers"]:
            if name.lower() == b"accept-language":
                accept = value.decode("latin-1")
    else:
        accept = str(scope_or_environ.get("HTTP_ACCEPT_LANGUAGE", ""))
    return choose(hooked or None, accept)
