"""Passkeys in the frameworks' examples (FastAPI, the Starlette demo, Django under WSGI and under ASGI), through
real HTTP into the real apps, with the software authenticator: add one, log out, log in, pass the gate with it,
``scope["mfa"]`` / ``environ["mfa"]`` saying ``method == "webauthn"``."""

from __future__ import annotations

from typing import Any

from tests.soft_authenticator import SoftAuthenticator
from tests.test_frameworks import Site, _log_in, _log_out, _token, site  # noqa: F401

# The examples answer as http://testserver; passkeys need a domain in a secure context, so the passkey steps
# say Host: localhost (what the browser at http://localhost would send), and the authenticator signs for it.
LOCAL = {"host": "localhost", "accept": "application/json"}


async def _post(at: Site, path: str, page: str, **fields: Any) -> Any:
    token = _token((await at.browser.get(page, headers={"host": "localhost"})).text)
    return await at.browser.post(path, {**token, **fields}, headers=LOCAL)


async def test_add_a_passkey_and_pass_the_gate_with_it(site: Site) -> None:  # noqa: F811
    b, auth = site.browser, SoftAuthenticator()
    await _log_in(site)
    r = await _post(site, "/mfa/passkeys/register/options", "/mfa/passkeys", name="laptop")
    assert r.status_code == 200, r.text[:500]
    options = r.json()["publicKey"]
    r = await _post(site, "/mfa/passkeys/register", "/mfa/passkeys", credential=auth.create(options))
    assert r.status_code == 200 and r.json()["redirect"] == "/mfa/backup-codes", r.text[:500]
    await _log_out(site)

    await _log_in(site)
    r = await b.get("/")
    assert r.status_code == 303 and r.headers["location"] == "/mfa/verify?next=/"
    assert "Use a passkey" in (await b.get("/mfa/verify?next=/")).text
    r = await _post(site, "/mfa/passkeys/authenticate/options", "/mfa/verify")
    assert r.status_code == 200, r.text[:500]
    r = await _post(site, "/mfa/passkeys/authenticate", "/mfa/verify", credential=auth.get(r.json()["publicKey"]),
                    next="/")
    assert r.status_code == 200 and r.json()["redirect"] == "/", r.text[:500]
    assert site.home_says(await b.get("/"), "2fa")
    gate = await b.get("/mfa/passkeys")
    # Dates in the page's language (Babel): "last used December 6, 2026 at 8:41:00 PM UTC", never "never" here.
    assert 'data-passkey-count="1"' in gate.text and "UTC" in gate.text and "last used never" not in gate.text
