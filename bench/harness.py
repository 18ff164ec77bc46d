"""Start servers, drive them with wrk on the other core, and report ratios.

Every measurement is a *pair* (bare vs. feature) run interleaved in one process tree on
this machine, so machine noise cancels in the ratio. The server under test is pinned to
core 0; wrk and redis-server share core 1 where the machine has two cores, so the Python
process has a core of its own (as it would with Redis on another host).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tests.servers import RedisServer, free_port, wait_for_port

CORES = os.cpu_count() or 1
SERVER_CORE, LOAD_CORE = 0, (1 if CORES >= 2 else 0)
RESULTS = Path(__file__).resolve().parent / "results"
SECONDS = float(os.environ.get("BENCH_SECONDS", "3"))  # per wrk run
# wrk connection counts each variant is tried at; its best is kept for the rounds (see ``AtBest``).
LEVELS = tuple(int(c) for c in os.environ.get("BENCH_CONNECTIONS", "32,64,128").split(","))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "15"))  # interleaved rounds; the median is kept
SATURATED = 0.90  # a server's CPU time over wall time at which ``AtBest`` counts its core as saturated
DUET_ROUNDS = int(os.environ.get("BENCH_DUET_ROUNDS", "10"))  # rounds of a pair driven at once (``duet``)


def _pin(core: int) -> list[str]:
    return ["taskset", "-c", str(core)] if CORES >= 2 and shutil.which("taskset") else []


def pin_pid(pid: int, core: int) -> None:
    if CORES >= 2 and shutil.which("taskset"):
        subprocess.run(["taskset", "-pc", str(core), str(pid)], check=True, stdout=subprocess.DEVNULL)


@dataclass(frozen=True)
class Result:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int  # non-2xx/3xx responses
    requests: int = 0
    wrong: int = 0  # 2xx answers that were not the expected protocol answer (the wrk script counts them)
    samples: tuple[float, ...] = field(default=())  # req/s of each round
    cpu_us: float = 0.0  # the server's CPU time (user + system, all its processes) per request
    busy: float = 0.0  # the server's CPU time / wall time: 1.0 is its core saturated
    connections: int = 0  # wrk's concurrent connections
    load_us: float = 0.0  # the load generator's (wrk's) CPU time per request: it shares a core with Redis


@contextmanager
def redis_server(*extra: str) -> Iterator[RedisServer]:
    """A throwaway redis-server (tests/servers.py), pinned to the load core."""
    server = RedisServer(*extra).start()
    try:
        if server.proc is not None:
            pin_pid(server.proc.pid, LOAD_CORE)
        yield server
    finally:
        server.cleanup()


@contextmanager
def uvicorn_app(factory: str, env: dict[str, str] | None = None, *, interface: str = "asgi3") -> Iterator[str]:
    """Serve ``module:factory`` with uvicorn (one worker, no access log) on a free port, pinned to core 0."""
    port = free_port()
    cmd = [*_pin(SERVER_CORE), sys.executable, "-m", "uvicorn", "--factory", factory, "--host", "127.0.0.1",
           "--port", str(port), "--log-level", "warning", "--no-access-log", "--interface", interface]
    with _process(cmd, port, env):
        yield f"http://127.0.0.1:{port}"


# Base URL -> pid of the server process serving it, so ``wrk`` can read the server's CPU time.
_SERVERS: dict[str, int] = {}
_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def server_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by ``pid`` and every process below it (gunicorn's workers)."""
    children: dict[int, list[int]] = {}
    times: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
        times[int(entry)] = (int(fields[11]) + int(fields[12])) / _TICKS
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        total += times.get(current, 0.0)
        todo.extend(children.get(current, ()))
    return total


@contextmanager
def _process(cmd: Sequence[str], port: int, env: dict[str, str] | None) -> Iterator[None]:
    proc = subprocess.Popen(cmd, env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL)
    _SERVERS[f"http://127.0.0.1:{port}"] = proc.pid  # taskset execs the server: same pid
    try:
        wait_for_port(port, timeout=30, proc=proc)
        yield
    finally:
        _SERVERS.pop(f"http://127.0.0.1:{port}", None)
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text.strip())
    if not m:
        raise ValueError(f"cannot read wrk latency {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def _find(pattern: str, text: str) -> str:
    m = re.search(pattern, text)
    if m is None:
        raise RuntimeError(f"wrk output lacks {pattern!r}:\n{text}")
    return m.group(1)


def wrk(url: str, *, seconds: float = SECONDS, connections: int = 32, headers: Sequence[str] = (),
        script: str | Path | None = None, args: Sequence[str] = ()) -> Result:
    """One wrk run (one thread, on the load core). ``args`` go to the script's ``init``."""
    cmd = [*_pin(LOAD_CORE), "wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency"]
    for h in headers:
        cmd += ["-H", h]
    if script:
        cmd += ["-s", str(script)]
    cmd.append(url)
    if args:
        cmd += ["--", *args]
    server = next((pid for base, pid in _SERVERS.items() if url.startswith(base + "/") or url == base), None)
    cpu_before, started = (server_cpu(server) if server else 0.0), time.perf_counter()
    out, load = _run_wrk(cmd, timeout=seconds + 60)
    cpu = (server_cpu(server) - cpu_before) if server else 0.0
    wall = time.perf_counter() - started
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    wrong = re.search(r"wrong answers:\s+(\d+)", out)
    requests = int(_find(r"(\d+) requests in", out))
    return Result(
        rps=float(_find(r"Requests/sec:\s+([\d.]+)", out)),
        p50_ms=_ms(_find(r"(?m)^\s+50%\s+(\S+)", out)),  # the distribution lines, not "90.50%" elsewhere
        p99_ms=_ms(_find(r"(?m)^\s+99%\s+(\S+)", out)),
        errors=int(m.group(1)) if m else 0,
        requests=requests,
        wrong=int(wrong.group(1)) if wrong else 0,
        cpu_us=cpu / requests * 1e6 if requests else 0.0,
        busy=cpu / wall if wall else 0.0,
        connections=connections,
        load_us=load / requests * 1e6 if requests else 0.0,
    )


def _run_wrk(cmd: Sequence[str], timeout: float) -> tuple[str, float]:
    """wrk's output (stderr merged: its script's complaints) and the CPU seconds it used, read from its own
    exit (``os.wait4``), so that runs in parallel threads (``duet``) do not count each other's."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    assert proc.stdout is not None
    try:
        with proc.stdout:
            out = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
    finally:
        timer.cancel()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise subprocess.CalledProcessError(proc.returncode, list(cmd), out)
    return out, usage.ru_utime + usage.ru_stime


class AtBest:
    """A measurement run at its variant's best concurrency: the first call (``interleaved``'s warm-up) tries
    every level of ``levels`` ``passes`` times, in turn, and keeps the level with the most req/s on average;
    later calls run at that level only.

    Throughput is compared at each variant's best concurrency, as TechEmpower's benchmarks do: a server
    that waits on Redis for every request needs more requests in flight to keep its core busy than one
    that answers from memory, and comparing both at one arbitrary concurrency would measure that choice.
    Choosing once, instead of taking the best of every level in every round, gives each round one sample
    per variant three times as often: the machine's speed moves within seconds, so more, closer samples
    beat the best of three spread over nine seconds. Two passes, because one sample per level lets noise
    choose a level at which a server waiting on Redis leaves its core idle.

    Only levels at which the server's core was saturated (busy ≥ ``SATURATED`` on average) compete, when any
    was: the comparison is at saturation, and noise alone could otherwise pick a level at which the update
    endpoint waits on Redis. A server that answers from memory is saturated at every level, so its choice
    is unchanged.

    ``like``: another ``AtBest`` whose choice this one takes instead of choosing (once that one has chosen),
    for a pair of servers that differ by one layer and wait on nothing (the gate pairs): both then run
    under the same load. Chosen apart, noise could pick a higher concurrency for one of them, where a server
    that answers from memory costs more CPU per request (bench/README.md).
    """

    def __init__(self, run: Callable[[int], Result], levels: Sequence[int] = LEVELS, passes: int = 2, *,
                 like: AtBest | None = None) -> None:
        self.run, self.levels, self.passes, self.like = run, levels, passes, like
        self.connections: int | None = None

    def __call__(self) -> Result:
        if self.connections is None and self.like is not None and self.like.connections is not None:
            self.connections = self.like.connections  # measured at its baseline's choice (see ``like``)
        if self.connections is None:
            tried: dict[int, list[Result]] = {c: [] for c in self.levels}
            for _ in range(self.passes):
                for c in self.levels:
                    tried[c].append(self.run(c))
            saturated = [c for c in self.levels if statistics.fmean(r.busy for r in tried[c]) >= SATURATED]
            self.connections = max(saturated or self.levels, key=lambda c: statistics.fmean(r.rps for r in tried[c]))
            return max(tried[self.connections], key=lambda r: r.rps)
        return self.run(self.connections)


def interleaved(runs: Mapping[str, Callable[[], Result]], rounds: int = ROUNDS, *, warmup: bool = True,
                between: Callable[[], None] | None = None) -> dict[str, Result]:
    """Run each measurement ``rounds`` times in turn and keep the median; each round starts one variant
    later (A B C, B C A, C A B, …) so that no variant always runs first or after the same neighbour.

    ``warmup`` runs each once before the timed rounds (imports, connection pools, caches; an ``AtBest``
    picks its concurrency there); ``between`` runs after every measurement (e.g. resetting counters that
    would otherwise turn a long benchmark into abuse).
    """
    names = list(runs)
    if warmup:
        for run in runs.values():
            run()
            if between:
                between()
    samples: dict[str, list[Result]] = {name: [] for name in runs}
    for n in range(rounds):
        shift = n % len(names) if names else 0
        for name in names[shift:] + names[:shift]:
            samples[name].append(runs[name]())
            if between:
                between()
            time.sleep(0.2)
    return {name: _median(rs) for name, rs in samples.items()}


@dataclass(frozen=True)
class Duet:
    """``duet``'s outcome: each variant's median over the rounds, and ``paired``: the median over the rounds
    of each variant's req/s divided by the first variant's in the same round."""

    results: dict[str, Result]
    paired: dict[str, float]


def duet(runs: Mapping[str, Callable[[], Result]], rounds: int = DUET_ROUNDS, *,
         before: Callable[[], None] | None = None) -> Duet:
    """Drive every variant at the same moment, ``rounds`` times (duet benchmarking: Bulej et al., "Duet
    Benchmarking: Improving Measurement Accuracy in the Cloud", 2020, with both servers on one core here).

    The servers share core 0 and their wrk runs share core 1, so whatever slows the machine in a round slows
    them all alike and each round's ratio holds still. But it is not the one-at-a-time ratio: sharing a
    core, each server also pays for the other (context switches, caches), a cost the same for both that
    dilutes their difference, as a layer of known cost shows (bench/README.md). So it is printed for its
    steadiness and the targets stay one at a time. Pass the ``AtBest`` runs that ``interleaved`` warmed
    up: each keeps its chosen concurrency. ``before`` runs before every round (e.g. refreshing cookies, so no
    run waits for one while the other runs alone).
    """
    names = list(runs)
    samples: dict[str, list[Result]] = {name: [] for name in names}
    with ThreadPoolExecutor(len(names)) as pool:
        for _ in range(rounds):
            if before:
                before()
            futures = {name: pool.submit(runs[name]) for name in names}
            for name, future in futures.items():
                samples[name].append(future.result())
            time.sleep(0.2)
    first = samples[names[0]]
    paired = {name: statistics.median(r.rps / f.rps for r, f in zip(rs, first, strict=True))
              for name, rs in samples.items()}
    return Duet({name: _median(rs) for name, rs in samples.items()}, paired)


@contextmanager
def taking_turns(pids: Sequence[int], slice_s: float = 0.05) -> Iterator[None]:
    """Let one of the processes ``pids`` run at a time, each for ``slice_s`` seconds in turn (SIGSTOP and
    SIGCONT), while the block drives them all: a dev tool for A/B (``bench/ab.py --turns``).

    Each server then runs alone on its core, as one at a time, but the turns are 50 ms instead of a 3 s run,
    so the VM's speed swings (seconds) fall on every server alike. Checked against a layer of known cost, it
    dilutes differences less than the duet but some (each server's CPU per request rises taking turns, for
    both alike), so it is not a target's measure either (bench/README.md). A stopped server's requests wait:
    its latency figures mean nothing, its request count does (each gets the same share of the wall time).
    """
    stop = threading.Event()

    def turns() -> None:
        i = 0
        while not stop.is_set():
            for n, pid in enumerate(pids):
                os.kill(pid, signal.SIGCONT if n == i % len(pids) else signal.SIGSTOP)
            stop.wait(slice_s)
            i += 1

    thread = threading.Thread(target=turns, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        for pid in pids:
            os.kill(pid, signal.SIGCONT)


def _median(results: list[Result]) -> Result:
    middle = sorted(results, key=lambda r: r.rps)[len(results) // 2]
    return Result(
        statistics.median(r.rps for r in results),
        statistics.median(r.p50_ms for r in results),
        statistics.median(r.p99_ms for r in results),
        sum(r.errors for r in results),
        sum(r.requests for r in results),
        sum(r.wrong for r in results),
        tuple(r.rps for r in results),
        statistics.median(r.cpu_us for r in results),
        statistics.median(r.busy for r in results),
        middle.connections,
        statistics.median(r.load_us for r in results),
    )


def table(results: Mapping[str, Result], baseline: str) -> str:
    """req/s, latency, the req/s ratio to ``baseline``, and the server's CPU per request and how busy its core
    was. ``cpu ratio`` (baseline's CPU per request / this one's) is the req/s ratio both would have with the
    core saturated: steadier than the req/s ratio on a noisy machine, and it separates CPU cost from stalls
    (a server waiting on Redis with its core idle)."""
    base, base_cpu = results[baseline].rps, results[baseline].cpu_us
    lines = [f"{'variant':<30} {'req/s':>9} {'conns':>5} {'p50 ms':>8} {'p99 ms':>8} {'ratio':>7} {'non-2xx':>8} "
             f"{'wrong':>6} {'cpu us/req':>11} {'busy':>5} {'cpu ratio':>9} {'wrk us/req':>10}"]
    for name, r in results.items():
        cpu_ratio = f"{base_cpu / r.cpu_us:>9.3f}" if r.cpu_us and base_cpu else f"{'-':>9}"
        lines.append(f"{name:<30} {r.rps:>9.0f} {r.connections:>5} {r.p50_ms:>8.2f} {r.p99_ms:>8.2f} "
                     f"{r.rps / base:>7.3f} {r.errors:>8} {r.wrong:>6} {r.cpu_us:>11.1f} {r.busy:>5.0%} {cpu_ratio} "
                     f"{r.load_us:>10.1f}")
    return "\n".join(lines)


def target(name: str, ratio: float, goal: float, *, higher_is_better: bool = True) -> str:
    ok = ratio >= goal if higher_is_better else ratio <= goal
    return f"target {name} ratio={ratio:.3f} goal={goal} {'PASS' if ok else 'FAIL'}"


def save(name: str, data: Mapping[str, Any]) -> Path:
    """Write ``bench/results/NAME.json`` (``plot.py`` reads every file there)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=2, default=_jsonable) + "\n")
    return path


def series(results: Mapping[str, Result]) -> dict[str, dict[str, Any]]:
    """Results as plain data for ``save`` (the plot's "throughput" series)."""
    return {name: asdict(r) for name, r in results.items()}


def _jsonable(value: Any) -> Any:
    if isinstance(value, Result):
        return asdict(value)
    raise TypeError(f"cannot store {type(value).__name__} in a results file")


def machine() -> dict[str, str]:
    model = ""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        model = next((line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name")), "")
    except OSError:
        pass
    return {"nproc": str(CORES), "cpu": model, "python": sys.version.split()[0], "server": _server_stack()}


def _server_stack() -> str:
    """What uvicorn's "auto" picks here (the same for every variant): its loop and HTTP parser, versions."""
    from importlib.metadata import PackageNotFoundError, version

    def v(name: str) -> str | None:
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    loop = f"uvloop {v('uvloop')}" if v("uvloop") else "asyncio"
    http = f"httptools {v('httptools')}" if v("httptools") else "h11"
    return f"uvicorn {v('uvicorn')} ({loop}, {http}), Starlette {v('starlette')}, Flask {v('flask')}, " \
           f"gunicorn {v('gunicorn')}"
