"""QR codes as inline SVG, so the setup page needs no image endpoint, CDN or JavaScript."""

from __future__ import annotations

import html
import io

import segno

from .i18n import N_

TARGET_PIXELS = 200
QUIET_ZONE = 4  # modules; the QR specification's minimum, which phone cameras rely on
DEFAULT_TITLE = N_("QR code to add this account to your authenticator app")


def qr_svg(uri: str, *, title: str = DEFAULT_TITLE) -> str:
    """An ``<svg>`` element (no XML declaration) showing ``uri`` as a QR code of about 200 px.

    Black on white whatever the page's theme, because many scanners fail on inverted codes. ``title`` is
    the accessible name (a ``<title>`` plus ``aria-label``) for screen-reader users.
    """
    # Level M survives smudges and screen glare while keeping otpauth URIs at a scannable module size.
    code = segno.make(uri, error="m", micro=False)
    width, _ = code.symbol_size(scale=1, border=QUIET_ZONE)
    scale = max(1, round(TARGET_PIXELS / width))  # whole pixels per module keep the edges crisp
    out = io.BytesIO()
    code.save(
        out,
        kind="svg",
        scale=scale,
        border=QUIET_ZONE,
        dark="#000",
        light="#fff",
        xmldecl=False,
        svgns=True,
        title=title,
        nl=False,
    )
    svg = out.getvalue().decode("utf-8")
    label = html.escape(title, quote=True)
    # A viewBox lets the stylesheet shrink it on narrow screens (width/height alone would clip or leave a strip).
    side = width * scale
    return svg.replace("<svg ", f'<svg role="img" aria-label="{label}" viewBox="0 0 {side} {side}" ', 1)
