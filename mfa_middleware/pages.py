"""Renders the gate's pages from Jinja2 templates; a host app overrides any template by putting one of
the same name (``mfa_verify.html``…) in its own directory, searched first.

Templates mark their text with ``{% trans %}`` / ``_()`` (``jinja2.ext.i18n``, new-style: variables are
escaped and filled in after translation). The translations come with each render (``lang``), never from a
global switch, so one process serves many languages at once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from . import i18n


class Pages:
    def __init__(self, template_dirs: Sequence[str | Path] = ()) -> None:
        loaders: list[jinja2.BaseLoader] = [jinja2.FileSystemLoader([str(d) for d in template_dirs])]
        loaders.append(jinja2.PackageLoader("mfa_middleware", "templates"))
        self.env = jinja2.Environment(loader=jinja2.ChoiceLoader(loaders), autoescape=True,
                                      extensions=["jinja2.ext.i18n"])
        self.env.policies["ext.i18n.trimmed"] = True  # the same in ``babel.cfg``: msgids without line breaks
        self.env.newstyle_gettext = True  # type: ignore[attr-defined]
        self.env.globals["invalid"] = invalid

    def render(self, name: str, lang: i18n.Lang | None = None, **context: Any) -> str:
        lang = lang or i18n.lang(i18n.DEFAULT)
        gettext, ngettext = _callables(lang)
        return self.env.get_template(name).render(lang=lang, gettext=gettext, ngettext=ngettext, **context)


@jinja2.pass_context
def invalid(context: jinja2.runtime.Context, field_id: str) -> Markup:
    """The attributes of a field the page's error is about (``error_field``): marked invalid, described by
    the error, and focused, so a screen reader hears the error where the user must act."""
    if context.get("error") and context.get("error_field") == field_id:
        return Markup(' aria-invalid="true" aria-describedby="error" autofocus')
    return Markup("")


@lru_cache(maxsize=64)
def _callables(lang: i18n.Lang) -> tuple[Callable[..., str], Callable[..., str]]:
    """``gettext`` and ``ngettext`` for templates, bound to one language (as ``install_gettext_callables``
    makes them, but per render): the translation is trusted, the variables are escaped."""

    @jinja2.pass_context
    def gettext(context: jinja2.runtime.Context, message: str, **variables: Any) -> str:
        text = lang.gettext(message)
        if context.eval_ctx.autoescape:
            text = Markup(text)  # noqa: S704  (the catalog is trusted markup; variables are escaped by %)
        return text % variables

    @jinja2.pass_context
    def ngettext(context: jinja2.runtime.Context, singular: str, plural: str, num: int, **variables: Any) -> str:
        variables.setdefault("num", num)
        text = lang.ngettext(singular, plural, num)
        if context.eval_ctx.autoescape:
            text = Markup(text)  # noqa: S704  (the catalog is trusted markup; variables are escaped by %)
        return text % variables

    return gettext, ngettext
