"""Hatch build hook: compile each message catalog (``.po``) into the ``.mo`` that gettext reads, inside the
wheel. The ``.po`` files stay the only source in git; an editable install or a fresh clone needs no build step,
since ``mfa_middleware.i18n`` compiles a ``.po`` in memory when its ``.mo`` is missing or older."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

LOCALES = Path("mfa_middleware") / "locales"


class CatalogsHook(BuildHookInterface):  # type: ignore[type-arg]
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel" or version == "editable":
            return
        from babel.messages.mofile import write_mo
        from babel.messages.pofile import read_po

        out = Path(tempfile.mkdtemp(prefix="mfa-catalogs-"))
        for po in sorted((Path(self.root) / LOCALES).glob("*/LC_MESSAGES/*.po")):
            rel = po.relative_to(self.root).with_suffix(".mo")
            with po.open("rb") as src:
                catalog = read_po(src, locale=po.parts[-3])
            target = out / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            with target.open("wb") as dst:
                write_mo(dst, catalog)
            build_data["force_include"][str(target)] = str(rel)
