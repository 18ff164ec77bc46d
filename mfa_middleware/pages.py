"""Renders the gate's pages from Jinja2 templates; a host app overrides any template by putting one of
the same name (``mfa_verify.html``…) in its own directory, searched first."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jinja2


class Pages:
    def __init__(self, template_dirs: Sequence[str | Path] = ()) -> None:
        loaders: list[jinja2.BaseLoader] = [jinja2.FileSystemLoader([str(d) for d in template_dirs])]
        loaders.append(jinja2.PackageLoader("mfa_middleware", "templates"))
        self.env = jinja2.Environment(loader=jinja2.ChoiceLoader(loaders), autoescape=True)

    def render(self, name: str, **context: Any) -> str:
        return self.env.get_template(name).render(**context)
