"""Plots of the benchmark results: ``python -m bench.plot`` reads ``bench/results/*.json``, writes PNGs there.

Throughput plot: one pair of bars (req/s, p99) per variant of every results file with a ``throughput``
mapping (variant -> {rps, p99_ms, ...}), so a new benchmark's series (e.g. the gate's bare / gated /
SessionMiddleware) appears by writing such a file. Latency vs hosts: every file with a ``latency`` mapping
(variant -> {hosts, p50_ms, p99_ms}).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.harness import RESULTS


def _load() -> dict[str, dict[str, Any]]:
    return {p.stem: json.loads(p.read_text()) for p in sorted(RESULTS.glob("*.json"))}


def throughput(results: dict[str, dict[str, Any]], out: Path) -> Path | None:
    import matplotlib.pyplot as plt

    rows = [(f"{name}: {variant}", r) for name, data in results.items()
            for variant, r in data.get("throughput", {}).items()]
    if not rows:
        return None
    labels = [label for label, _ in rows]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 0.5 * len(rows) + 2), sharey=True)
    ax1.barh(labels, [r["rps"] for _, r in rows], color="tab:blue")
    ax1.set_xlabel("requests/s (higher is better)")
    ax2.barh(labels, [r["p99_ms"] for _, r in rows], color="tab:orange")
    ax2.set_xlabel("p99 latency, ms (lower is better)")
    ax1.invert_yaxis()
    fig.suptitle("bare vs. feature, same uvicorn settings, wrk on the other core")
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def latency_vs_hosts(results: dict[str, dict[str, Any]], out: Path) -> Path | None:
    import matplotlib.pyplot as plt

    points = sorted((r["hosts"], r["p50_ms"], r["p99_ms"]) for data in results.values()
                    for r in data.get("latency", {}).values())
    if not points:
        return None
    hosts = [p[0] for p in points]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.plot(hosts, [p[1] for p in points], "o-", label="p50")
    ax.plot(hosts, [p[2] for p in points], "s-", label="p99")
    ax.set_xscale("log")
    ax.set_xlabel("hosts in the store")
    ax.set_ylabel("update latency, ms")
    ax.set_ylim(bottom=0)
    ax.set_title("/nic/update good, random hosts, 16 connections")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def main() -> list[Path]:
    try:
        import matplotlib

        matplotlib.use("Agg")
    except ImportError:
        print("matplotlib is not installed (pip install -e '.[bench]'): no plots")
        return []
    results = _load()
    made = [throughput(results, RESULTS / "throughput.png"),
            latency_vs_hosts(results, RESULTS / "latency_vs_hosts.png")]
    return [p for p in made if p is not None]


if __name__ == "__main__":
    for path in main():
        print(path)
