"""The documents' code runs: every fenced block in README.md and docs/*.md, so a quick start cannot rot.

How a block is treated follows its info string (the words after the opening fence):

- ```` ```python ````: run as a script in a fresh interpreter from the repo root. It must exit 0, so a
  snippet that builds an app should also make a request against it (a test client) and assert the answer.
- ```` ```sh ```` / ```` ```bash ````: run as one ``bash -euo pipefail`` script. ```` ```console ````: each
  ``$ `` line (with ``\\`` continuations) is a command; the lines under it, up to the next ``$``, must each
  appear in its output (stdout and stderr), and the command must exit 0.
- ```` ```LANG file=NAME ````: a configuration file, not a command: written as ``NAME`` (mode 0600) into
  the document's working directory at that point, so that later commands (``ddclient -file ddclient.conf``)
  use exactly what the reader sees.
- ```` ```LANG no-run ````: shown, never run. Only for commands this suite cannot or must not run (see
  ``NO_RUN``: the suite itself, long benchmarks, servers that run until stopped, installing packages);
  ``test_no_run_is_only_used_where_it_must_be`` holds every such block to that list.
- Configuration languages (``CONFIG_LANGUAGES``: ini, text, yaml…) are not run. Any other info string fails
  ``test_every_block_has_a_known_kind``: a command cannot hide in a ```` ```shell ```` block or a bare fence.

The shell blocks of one document run in order, in one temporary working directory, against throwaway
servers started for that document: a redis-server and the demo site (``python -m examples.demo``, seeded
account ``demo`` / ``demo-password`` with host ``demo.example.test``). ``127.0.0.1:8000`` (where ``make run``
listens) and ``127.0.0.1:6379`` (Redis's default) in a block are rewritten to those servers' free ports.
Every block sees ``MFA_SECRET_KEY``, ``MFA_ENCRYPTION_KEY``, ``APP_SECRET_KEY`` (a host app's own session
key), ``REDIS_URL``, ``DJANGO_SETTINGS_MODULE`` (the example project's settings, its database in memory),
and the venv's ``bin`` first on ``PATH`` (``mfa-admin``, ``ddns-admin``).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.servers import RedisServer, free_port, stop_process, wait_for_port

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RUN_PYTHON = {"python"}
RUN_SHELL = {"sh", "bash"}
RUN_CONSOLE = {"console"}
CONFIG_LANGUAGES = {"text", "ini", "yaml", "toml", "json", "conf", "nginx", "dns", "lua", "http"}
# Commands a ``no-run`` block may hold, and why they are not run here.
NO_RUN = {
    "make test": "runs this suite: it would run itself",
    "make fuzz": "the long fuzzing run (minutes); make test runs a slice of it",
    "make bench": "takes many minutes and needs the machine to itself",
    "make run": "a server that runs until stopped (tests/test_demo_process.py starts the demo)",
    "make install": "builds the venv this suite runs in",
    "python -m examples.": "a demo server that runs until stopped (tests/test_gate_demos.py, test_demo_process.py)",
    "python -m bench": "benchmarks: minutes, and the machine to itself",
    "uvicorn": "a server that runs until stopped (tests/test_peers_update_clients.py serves the endpoint so)",
    "gunicorn": "a server that runs until stopped",
    "waitress-serve": "a server that runs until stopped",
    "apt-get": "changes the machine",
    "sudo": "changes the machine",
}
TIMEOUT = 60
SECRETS = {
    "MFA_SECRET_KEY": "docs-test-secret-key-0123456789",
    "MFA_ENCRYPTION_KEY": "docs-test-encryption-key-012345",
    "APP_SECRET_KEY": "docs-test-app-session-key-01234",
}


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # of the opening fence, 1-based
    language: str
    options: tuple[str, ...]
    text: str

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"

    @property
    def file_name(self) -> str | None:
        return next((o.partition("=")[2] for o in self.options if o.startswith("file=")), None)

    @property
    def runs(self) -> bool:
        return "no-run" not in self.options and self.file_name is None and \
            self.language in RUN_PYTHON | RUN_SHELL | RUN_CONSOLE


FENCE = re.compile(r"^(?P<indent> *)(?P<fence>```+|~~~+)(?P<info>.*)$")


def blocks(path: Path) -> list[Block]:
    found: list[Block] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence, info = len(m["indent"]), m["fence"], m["info"].split()
        body, j = [], i + 1
        while j < len(lines) and not lines[j].strip().startswith(fence):
            body.append(lines[j][indent:] if lines[j][:indent].strip() == "" else lines[j])
            j += 1
        found.append(Block(path, i + 1, info[0] if info else "", tuple(info[1:]), "\n".join(body) + "\n"))
        i = j + 1
    return found


ALL = [b for doc in DOCUMENTS for b in blocks(doc)]


def commands(block: Block) -> list[tuple[str, list[str]]]:
    """(command, expected output lines) per command of a shell or console block."""
    lines = block.text.splitlines()
    out: list[tuple[str, list[str]]] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if block.language in RUN_CONSOLE and not line.startswith("$ "):
            if out and line.strip() and line.strip() != "...":
                out[-1][1].append(line.strip())
            i += 1
            continue
        command = line[2:] if block.language in RUN_CONSOLE else line
        while command.rstrip().endswith("\\") and i + 1 < len(lines):
            i += 1
            command = command.rstrip()[:-1] + " " + lines[i].strip()
        if command.strip() and not command.lstrip().startswith("#"):
            out.append((command, []))
        i += 1
    return out


def program(command: str) -> str:
    """The command without leading ``VAR=value`` words, its program's directory or a trailing comment, for
    matching ``NO_RUN``."""
    words = command.split("#")[0].split()
    while words and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", words[0]):
        words = words[1:]
    if words:
        words[0] = words[0].rsplit("/", 1)[-1]  # .venv/bin/python is python
    return " ".join(words)


def test_the_collector_finds_the_quick_starts() -> None:
    readme = [b for b in ALL if b.path.name == "README.md"]
    assert sum(b.language == "python" and b.runs for b in readme) >= 3  # FastAPI/Starlette, Flask, Django
    assert any("curl" in b.text and b.runs for b in readme)
    assert {"ddclient.conf", "inadyn.conf"} <= {b.file_name for b in readme}


@pytest.mark.parametrize("block", ALL, ids=[b.where for b in ALL])
def test_every_block_has_a_known_kind(block: Block) -> None:
    known = RUN_PYTHON | RUN_SHELL | RUN_CONSOLE | CONFIG_LANGUAGES
    assert block.language in known, f"{block.where}: fence language {block.language!r} is neither run nor config"
    unknown = [o for o in block.options if o != "no-run" and not o.startswith("file=")]
    assert not unknown, f"{block.where}: unknown fence options {unknown}"


NO_RUN_BLOCKS = [b for b in ALL if "no-run" in b.options]


@pytest.mark.parametrize("block", NO_RUN_BLOCKS, ids=[b.where for b in NO_RUN_BLOCKS])
def test_no_run_is_only_used_where_it_must_be(block: Block) -> None:
    for command, _ in commands(block):
        assert program(command).startswith(tuple(NO_RUN)), \
            f"{block.where}: {command!r} is marked no-run but is none of {sorted(NO_RUN)}: let it run"


@pytest.fixture
def servers() -> Iterator[dict[str, str]]:
    """A fresh redis-server and demo per document, so no document depends on what another one did."""
    redis = RedisServer().start()
    port = free_port()
    env = {**os.environ, **SECRETS, "REDIS_URL": redis.url, "HOST": "127.0.0.1", "PORT": str(port),
           "DEMO_SEED": "1"}
    log = Path(redis.dir) / "demo.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "examples.demo"], cwd=ROOT, env=env, stdout=out, stderr=out)
    try:
        wait_for_port(port, timeout=30, proc=proc)
        yield {"redis": redis.url, "redis_port": str(redis.port), "demo": f"127.0.0.1:{port}"}
    finally:
        stop_process(proc)
        text = log.read_text()
        redis.cleanup()
        assert "Traceback" not in text, text


def environment(servers: dict[str, str]) -> dict[str, str]:
    venv_bin = str(Path(sys.executable).parent)
    return {**os.environ, **SECRETS, "REDIS_URL": servers["redis"], "PATH": venv_bin + os.pathsep + os.environ["PATH"],
            "DJANGO_SETTINGS_MODULE": "examples.django_site.settings", "DJANGO_DB": ":memory:",
            "PYTHONPATH": str(ROOT)}


def localised(text: str, servers: dict[str, str]) -> str:
    text = text.replace("127.0.0.1:6379", "127.0.0.1:" + servers["redis_port"])
    return text.replace("127.0.0.1:8000", servers["demo"])


PYTHON = [b for b in ALL if b.language in RUN_PYTHON and b.runs]


@pytest.fixture(scope="module")
def redis_only() -> Iterator[dict[str, str]]:
    redis = RedisServer().start()
    yield {"redis": redis.url}
    redis.cleanup()


@pytest.mark.parametrize("block", PYTHON, ids=[b.where for b in PYTHON])
def test_python_block_runs(block: Block, redis_only: dict[str, str]) -> None:
    r = subprocess.run([sys.executable, "-"], input=block.text, cwd=ROOT, env=environment(redis_only),
                       capture_output=True, text=True, timeout=TIMEOUT)
    assert r.returncode == 0, f"{block.where} failed:\n{r.stdout}\n{r.stderr}"


SHELL_DOCS = sorted({b.path for b in ALL if (b.runs and b.language not in RUN_PYTHON) or b.file_name})


@pytest.mark.parametrize("path", SHELL_DOCS, ids=[str(p.relative_to(ROOT)) for p in SHELL_DOCS])
def test_shell_blocks_run_in_order(path: Path, servers: dict[str, str]) -> None:
    env = environment(servers)
    with tempfile.TemporaryDirectory(prefix="docs-") as cwd:
        for block in blocks(path):
            if block.file_name:
                target = Path(cwd) / block.file_name
                target.write_text(localised(block.text, servers))
                target.chmod(0o600)
                continue
            if not block.runs or block.language in RUN_PYTHON:
                continue
            if block.language in RUN_SHELL:
                script = "set -euo pipefail\n" + localised(block.text, servers)
                r = subprocess.run(["bash", "-c", script], cwd=cwd, env=env, capture_output=True, text=True,
                                   timeout=TIMEOUT)
                assert r.returncode == 0, f"{block.where} failed:\n{r.stdout}\n{r.stderr}"
                continue
            for command, expected in commands(block):
                r = subprocess.run(["bash", "-o", "pipefail", "-c", localised(command, servers)], cwd=cwd,
                                   env=env, capture_output=True, text=True, timeout=TIMEOUT)
                output = r.stdout + r.stderr
                assert r.returncode == 0, f"{block.where}: {command!r} exited {r.returncode}:\n{output}"
                for line in expected:
                    assert localised(line, servers) in output, \
                        f"{block.where}: {command!r} did not print {line!r}:\n{output}"


def test_shell_words_parse() -> None:
    """Every runnable command is valid shell, so a typo fails here with its place, not deep in bash."""
    for block in ALL:
        if block.runs and block.language in RUN_SHELL | RUN_CONSOLE:
            for command, _ in commands(block):
                shlex.split(command, comments=True)


def test_the_tests_docs_name_exist() -> None:
    """``test_x.py::test_y`` in a document (``::test_y`` continues the last file named) names a real test."""
    missing = []
    for path in DOCUMENTS:
        current = None
        for m in re.finditer(r"(test_\w+\.py)?::\s*(test_\w+)", path.read_text(encoding="utf-8")):
            current = m[1] or current
            assert current, f"{path.name}: ::{m[2]} without a file before it"
            source = (ROOT / "tests" / current).read_text(encoding="utf-8")
            if not re.search(rf"^(async )?def {m[2]}\(", source, re.M):
                missing.append(f"{path.name}: {current}::{m[2]}")
    assert not missing, missing
