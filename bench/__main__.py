"""``python -m bench`` (``make bench``): every benchmark in turn, then one line per target.

Each benchmark module exposes ``run() -> list[str]`` (it prints its own table, starts and stops what it
needs, and writes ``bench/results/NAME.json``); ``plot.py`` then draws ``bench/results/*.png``.
``python -m bench update_endpoint`` runs only the named ones.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import time
import traceback
from pathlib import Path

from bench import plot
from bench.harness import machine

FIRST = ["update_endpoint", "scale"]  # then every other module of bench/ that defines run(), by name
HELPERS = {"harness", "apps", "gate_apps", "load_hosts", "plot"}


def benchmarks() -> list[str]:
    names = [m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)])
             if not m.name.startswith("_") and m.name not in HELPERS]
    found = [n for n in names if hasattr(importlib.import_module(f"bench.{n}"), "run")]
    return [n for n in FIRST if n in found] + sorted(n for n in found if n not in FIRST)


def main(argv: list[str]) -> int:
    known = benchmarks()
    unknown = [name for name in argv if name not in known]
    if unknown:
        print(f"usage: python -m bench [{' '.join(known)}]\nunknown: {' '.join(unknown)}", file=sys.stderr)
        return 2
    wanted = argv or known
    info = machine()
    print(f"machine: {info['nproc']} cores, {info['cpu']}, Python {info['python']}; {info['server']}")
    lines: list[str] = []
    for name in wanted:
        started = time.perf_counter()
        try:
            module = importlib.import_module(f"bench.{name}")
            lines.extend(module.run())
        except Exception:  # one broken benchmark must not hide the others' results
            traceback.print_exc()
            lines.append(f"target {name} ratio=nan goal=nan FAIL")
        print(f"-- {name}: {time.perf_counter() - started:.0f}s\n")
    for path in plot.main():
        print(f"plot: {path}")
    print()
    for line in lines:
        print(line)
    return 0 if all(line.endswith("PASS") for line in lines) else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
