"""The middlewares type-check where users put them: mypy --strict on an app's own code (py.typed ships)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

USER_CODE = '''
from fastapi import FastAPI
from flask import Flask
from starlette.applications import Starlette
from starlette.middleware import Middleware

from mfa_middleware import MFAMiddleware, MFAWsgiMiddleware, flask_session, starlette_session

starlette_app = Starlette(middleware=[
    Middleware(MFAMiddleware, identity=starlette_session("user"), secret_key="s" * 32, encryption_keys="e" * 32,
               idle_timeout=600, totp_digits=6),
])
fastapi_app = FastAPI()
fastapi_app.add_middleware(MFAMiddleware, identity=starlette_session("user"), policy="required")
flask_app = Flask(__name__)
gated = MFAWsgiMiddleware(flask_app.wsgi_app, identity=flask_session(flask_app, "user"), login_url="/signin")
'''

MISSPELT = '''
from starlette.applications import Starlette
from starlette.middleware import Middleware

from mfa_middleware import MFAMiddleware, starlette_session

app = Starlette(middleware=[Middleware(MFAMiddleware, identity=starlette_session("user"), idle_timout=600)])
'''


def mypy(tmp_path: Path, code: str) -> subprocess.CompletedProcess[str]:
    source = tmp_path / "user_app.py"
    source.write_text(code)
    return subprocess.run([sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--ignore-missing-imports",
                           str(source)], capture_output=True, text=True, timeout=300, cwd=tmp_path)


def test_middlewares_type_check_in_starlette_fastapi_and_flask_apps(tmp_path: Path) -> None:
    result = mypy(tmp_path, USER_CODE)
    assert result.returncode == 0, result.stdout


def test_a_misspelt_gate_option_is_a_type_error(tmp_path: Path) -> None:
    result = mypy(tmp_path, MISSPELT)
    assert result.returncode == 1
    assert "idle_timout" in result.stdout
