"""The setup page's QR code is a well-formed, accessible inline SVG."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from mfa_middleware.qr import qr_svg
from mfa_middleware.totp import TotpParams, new_seed, provisioning_uri

NS = "{http://www.w3.org/2000/svg}"


def _uri() -> str:
    return provisioning_uri(new_seed(), "alice@example.com", TotpParams(issuer="Example & Co"))


def test_svg_is_well_formed_and_inline() -> None:
    svg = qr_svg(_uri())
    assert svg.startswith("<svg")
    assert "<?xml" not in svg
    root = ET.fromstring(svg)  # noqa: S314 - our own output, not untrusted input
    assert root.tag == f"{NS}svg"
    assert 150 <= int(root.attrib["width"]) <= 260
    assert root.attrib["width"] == root.attrib["height"]


def test_svg_is_labelled() -> None:
    svg = qr_svg(_uri(), title='Scan "me" <now>')
    root = ET.fromstring(svg)  # noqa: S314 - our own output, not untrusted input
    assert root.attrib["role"] == "img"
    assert root.attrib["aria-label"] == 'Scan "me" <now>'
    title = root.find(f"{NS}title")
    assert title is not None and title.text == 'Scan "me" <now>'


def test_black_on_white() -> None:
    svg = qr_svg(_uri())
    assert 'stroke="#000"' in svg
    assert 'fill="#fff"' in svg
