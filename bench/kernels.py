"""Victim kernels of the isolation benchmark: small PARSEC-style workloads with a self-check.

Each kernel is *like* a PARSEC program, not a port of it: it does the same kind of work
(option pricing, cache-hostile random swaps, point-to-centre distances) in numpy, on one
thread, over a fixed amount of work chosen by ``scale`` (1.0 runs in roughly half a second
on a 2.4 GHz EPYC vCPU). A kernel is three steps:

* ``prepare(scale)`` builds the inputs from a fixed seed (not timed);
* ``compute(inputs)`` is the timed work;
* ``verify(inputs, result)`` checks the result a second way and raises
  :class:`KernelCheckError` when it is wrong, so a broken run is an error, never a number.

``python -m bench.kernels NAME [--scale S] [--wait]`` runs one kernel in a child process
(the isolation benchmark places that process in a cgroup or CPU set): it prints ``ready``
once the inputs are built, waits for a line on stdin with ``--wait``, then prints one JSON
line ``{"kernel", "scale", "seconds", "cpu_seconds", "checksum", "cpu_with_check_s",
"runqueue_wait_s", "involuntary_switches", "migrations"}``: the last three are the kernel
scheduler's counters of this process (:mod:`bench.schedstat`) over the timed part only.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from bench.errors import BenchError
from bench.schedstat import delta, read_counters

__all__ = ["KERNELS", "Kernel", "KernelCheckError", "KernelRun", "main", "run_kernel"]

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]


class KernelCheckError(BenchError, RuntimeError):
    """A kernel's result failed its self-check."""

    def __init__(self, kernel: str, detail: str) -> None:
        self.kernel = kernel
        super().__init__(f"{kernel}: self-check failed: {detail}")


@dataclass(frozen=True)
class Kernel:
    """A victim workload: untimed ``prepare``, timed ``compute``, untimed ``verify``."""

    name: str
    prepare: Callable[[float], Any]
    compute: Callable[[Any], Any]
    verify: Callable[[Any, Any], None]
    checksum: Callable[[Any], float]


# ------------------------------------------------------------------ blackscholes-like

# Abramowitz & Stegun 26.2.17 polynomial for the normal CDF (|error| < 7.5e-8), the
# approximation the PARSEC blackscholes program uses.
_AS_P = 0.2316419
_AS_B = (0.319381530, -0.356563782, 1.781477937, -1.821255978, 1.330274429)
_BS_ROUNDS = 16
# A textbook anchor: S=K=100, r=5 %, sigma=20 %, T=1 year.
_BS_ANCHOR = (100.0, 100.0, 0.05, 0.2, 1.0)
_BS_ANCHOR_CALL = 10.450583572185565
_BS_ANCHOR_PUT = 5.573526022256971


@dataclass(frozen=True)
class Options:
    spot: F64
    strike: F64
    rate: F64
    vol: F64
    years: F64


@dataclass
class Prices:
    call: F64
    put: F64
    total: float


def _cndf(x: F64) -> F64:
    ax = np.abs(x)
    k = 1.0 / (1.0 + _AS_P * ax)
    poly = k * (_AS_B[0] + k * (_AS_B[1] + k * (_AS_B[2] + k * (_AS_B[3] + k * _AS_B[4]))))
    upper = 1.0 - np.exp(-0.5 * ax * ax) / math.sqrt(2.0 * math.pi) * poly
    return np.where(x >= 0, upper, 1.0 - upper)


def bs_prepare(scale: float) -> Options:
    n = max(16, int(250_000 * scale))
    rng = np.random.default_rng(7)
    cols = [rng.uniform(lo, hi, n) for lo, hi in ((50, 150), (50, 150), (0.01, 0.1), (0.05, 0.6), (0.1, 3))]
    for col, value in zip(cols, _BS_ANCHOR, strict=True):
        col[0] = value
    return Options(*cols)


def bs_compute(o: Options) -> Prices:
    total = 0.0
    call = put = o.spot
    for _ in range(_BS_ROUNDS):
        sqrt_t = np.sqrt(o.years)
        d1 = (np.log(o.spot / o.strike) + (o.rate + 0.5 * o.vol * o.vol) * o.years) / (o.vol * sqrt_t)
        d2 = d1 - o.vol * sqrt_t
        disc = o.strike * np.exp(-o.rate * o.years)
        call = o.spot * _cndf(d1) - disc * _cndf(d2)
        put = disc * _cndf(-d2) - o.spot * _cndf(-d1)
        total += float(call.sum() + put.sum())
    return Prices(call, put, total)


def _bs_scalar(s: float, k: float, r: float, v: float, t: float) -> tuple[float, float]:
    def n(x: float) -> float:
        return 0.5 * math.erfc(-x / math.sqrt(2.0))

    d1 = (math.log(s / k) + (r + 0.5 * v * v) * t) / (v * math.sqrt(t))
    d2 = d1 - v * math.sqrt(t)
    disc = k * math.exp(-r * t)
    return s * n(d1) - disc * n(d2), disc * n(-d2) - s * n(-d1)


def bs_verify(o: Options, p: Prices) -> None:
    name = "blackscholes-like"
    parity = p.call - p.put - (o.spot - o.strike * np.exp(-o.rate * o.years))
    worst = int(np.argmax(np.abs(parity)))
    if abs(parity[worst]) > 1e-6 * max(1.0, float(o.spot[worst])):
        raise KernelCheckError(name, f"put-call parity off by {parity[worst]:.3g} at option {worst}")
    if abs(p.call[0] - _BS_ANCHOR_CALL) > 1e-4 or abs(p.put[0] - _BS_ANCHOR_PUT) > 1e-4:
        raise KernelCheckError(
            name,
            f"anchor option priced {p.call[0]:.6f}/{p.put[0]:.6f}, "
            f"expected {_BS_ANCHOR_CALL:.6f}/{_BS_ANCHOR_PUT:.6f}",
        )
    for i in np.random.default_rng(1).integers(0, len(o.spot), 64):
        ref = _bs_scalar(o.spot[i], o.strike[i], o.rate[i], o.vol[i], o.years[i])
        if abs(p.call[i] - ref[0]) > 1e-4 or abs(p.put[i] - ref[1]) > 1e-4:
            raise KernelCheckError(
                name,
                f"option {i} priced {p.call[i]:.6f}/{p.put[i]:.6f}, "
                f"closed form gives {ref[0]:.6f}/{ref[1]:.6f}",
            )
    expect = _BS_ROUNDS * float(p.call.sum() + p.put.sum())
    if not math.isclose(p.total, expect, rel_tol=1e-9):
        raise KernelCheckError(name, f"checksum {p.total!r} != {_BS_ROUNDS} x batch sum {expect!r}")


# ------------------------------------------------------------------ canneal-like

_CN_FANOUT = 4
_CN_BATCH = 8192
_CN_TEMPERATURE = 2.0


@dataclass(frozen=True)
class Netlist:
    side: int
    nets: I64
    """``nets[i]`` are the elements element *i* is wired to."""
    start: I64
    """``start[i]`` is element *i*'s grid slot (a permutation of ``range(n)``)."""
    steps: int


@dataclass
class Placement:
    slot: I64
    cost: int
    accepted: int


def cn_prepare(scale: float) -> Netlist:
    n = max(64, int((1 << 20) * min(scale, 1.0)))
    rng = np.random.default_rng(11)
    steps = max(2, int(48 * scale))
    return Netlist(
        side=math.isqrt(n - 1) + 1,
        nets=rng.integers(0, n, (n, _CN_FANOUT)),
        start=rng.permutation(n),
        steps=steps,
    )


def _wire_cost(side: int, here: I64, there: I64) -> I64:
    return np.abs(here % side - there % side) + np.abs(here // side - there // side)  # type: ignore[no-any-return]


def cn_compute(net: Netlist) -> Placement:
    slot = net.start.copy()
    n = len(slot)
    rng = np.random.default_rng(13)
    accepted = 0
    pairs = min(_CN_BATCH, n // 2)
    for _ in range(net.steps):
        pick = rng.choice(n, 2 * pairs, replace=False)
        a, b = pick[:pairs], pick[pairs:]
        sa, sb = slot[a][:, None], slot[b][:, None]
        wa, wb = slot[net.nets[a]], slot[net.nets[b]]  # random gathers: the cache-hostile part
        delta = (
            _wire_cost(net.side, sb, wa)
            + _wire_cost(net.side, sa, wb)
            - _wire_cost(net.side, sa, wa)
            - _wire_cost(net.side, sb, wb)
        ).sum(axis=1)
        take = (delta < 0) | (rng.random(pairs) < np.exp(-np.maximum(delta, 0) / _CN_TEMPERATURE))
        slot[a[take]], slot[b[take]] = slot[b[take]], slot[a[take]]
        accepted += int(take.sum())
    cost = int(_wire_cost(net.side, slot[:, None], slot[net.nets]).sum())
    return Placement(slot, cost, accepted)


def cn_verify(net: Netlist, p: Placement) -> None:
    name = "canneal-like"
    n = len(net.start)
    if len(p.slot) != n or not np.array_equal(np.bincount(p.slot, minlength=n), np.ones(n, np.int64)):
        raise KernelCheckError(name, "final placement is not a permutation of the grid slots")
    # Second way: per wire endpoint column, x and y separately, summed as Python ints.
    xs, ys = p.slot % net.side, p.slot // net.side
    total = 0
    for k in range(net.nets.shape[1]):
        other = p.slot[net.nets[:, k]]
        total += int(np.abs(xs - other % net.side).sum()) + int(np.abs(ys - other // net.side).sum())
    if total != p.cost:
        raise KernelCheckError(name, f"reported wire length {p.cost} != recomputed {total}")
    if not 0 <= p.accepted <= net.steps * min(_CN_BATCH, n // 2):
        raise KernelCheckError(name, f"accepted swap count {p.accepted} out of range")


# ------------------------------------------------------------------ streamcluster-like

_SC_DIM = 32
_SC_CENTRES = 24
_SC_ITERS = 6


@dataclass(frozen=True)
class Points:
    x: F64
    first: F64


@dataclass
class Clustering:
    centres: F64
    """The centres the final assignment was made against."""
    assign: I64
    cost: float


def sc_prepare(scale: float) -> Points:
    n = max(2 * _SC_CENTRES, int(200_000 * scale))
    rng = np.random.default_rng(5)
    blobs = rng.normal(0, 10, (_SC_CENTRES, _SC_DIM))
    x = blobs[rng.integers(0, _SC_CENTRES, n)] + rng.normal(0, 2, (n, _SC_DIM))
    return Points(x=x, first=x[rng.choice(n, _SC_CENTRES, replace=False)].copy())


def sc_compute(pts: Points) -> Clustering:
    x, c = pts.x, pts.first.copy()
    xx = np.einsum("ij,ij->i", x, x)
    assign = np.zeros(len(x), np.int64)
    cost = 0.0
    for it in range(_SC_ITERS):
        d2 = xx[:, None] + np.einsum("ij,ij->i", c, c)[None, :] - 2.0 * (x @ c.T)
        assign = np.argmin(d2, axis=1)
        cost = float(np.sqrt(np.maximum(d2[np.arange(len(x)), assign], 0.0)).sum())
        if it == _SC_ITERS - 1:
            break
        counts = np.bincount(assign, minlength=len(c))
        sums = np.stack(
            [np.bincount(assign, weights=x[:, j], minlength=len(c)) for j in range(x.shape[1])], axis=1
        )
        keep = counts > 0
        c[keep] = sums[keep] / counts[keep, None]
    return Clustering(centres=c, assign=assign, cost=cost)


def sc_verify(pts: Points, r: Clustering) -> None:
    name = "streamcluster-like"
    if r.assign.shape != (len(pts.x),) or r.assign.min() < 0 or r.assign.max() >= len(r.centres):
        raise KernelCheckError(name, "assignment has the wrong shape or names no centre")
    direct = np.sqrt(((pts.x - r.centres[r.assign]) ** 2).sum(axis=1))
    if not math.isclose(float(direct.sum()), r.cost, rel_tol=1e-6):
        raise KernelCheckError(name, f"reported cost {r.cost!r} != direct sum {float(direct.sum())!r}")
    sample = np.random.default_rng(2).choice(len(pts.x), min(len(pts.x), 2048), replace=False)
    every = np.sqrt(((pts.x[sample, None, :] - r.centres[None, :, :]) ** 2).sum(axis=2))
    slack = direct[sample] - every.min(axis=1)
    if slack.max() > 1e-6 * (1.0 + every.max()):
        i = int(sample[int(np.argmax(slack))])
        raise KernelCheckError(name, f"point {i} is not assigned to its nearest centre")


# ------------------------------------------------------------------ registry and runner

KERNELS: dict[str, Kernel] = {
    k.name: k
    for k in (
        Kernel("blackscholes-like", bs_prepare, bs_compute, bs_verify, lambda p: p.total),
        Kernel("canneal-like", cn_prepare, cn_compute, cn_verify, lambda p: float(p.cost)),
        Kernel("streamcluster-like", sc_prepare, sc_compute, sc_verify, lambda r: r.cost),
    )
}


@dataclass(frozen=True)
class KernelRun:
    kernel: str
    scale: float
    seconds: float
    cpu_seconds: float
    checksum: float
    cpu_with_check_s: float = 0.0
    """CPU time from the start of the timing to the end of the self-check."""
    runqueue_wait_s: float = 0.0
    """Time this process's threads waited on a run queue during the timed part."""
    involuntary_switches: int = 0
    migrations: int | None = None


def get_kernel(name: str) -> Kernel:
    try:
        return KERNELS[name]
    except KeyError:
        raise KeyError(f"unknown kernel {name!r}: expected one of {', '.join(KERNELS)}") from None


def run_kernel(name: str, scale: float = 1.0, *, before: Callable[[], None] | None = None) -> KernelRun:
    """Prepare, time and verify one kernel; *before* runs between prepare and the timing."""
    kernel = get_kernel(name)
    if not scale > 0:
        raise ValueError(f"scale: expected a positive number, got {scale!r}")
    inputs = kernel.prepare(scale)
    if before is not None:
        before()
    s0 = read_counters()
    t0, c0 = time.perf_counter(), time.process_time()
    result = kernel.compute(inputs)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    sched = delta(s0, read_counters())
    kernel.verify(inputs, result)
    checksum = kernel.checksum(result)
    return KernelRun(
        name,
        scale,
        seconds,
        cpu,
        checksum,
        time.process_time() - c0,
        sched.runqueue_wait_s,
        sched.involuntary_switches,
        sched.migrations,
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.kernels", description=__doc__)
    p.add_argument("kernel", choices=sorted(KERNELS))
    p.add_argument("--scale", type=float, default=1.0)
    p.add_argument("--wait", action="store_true", help="print 'ready', then wait for a line on stdin")
    args = p.parse_args(argv)

    def handshake() -> None:
        print("ready", flush=True)
        sys.stdin.readline()

    try:
        run = run_kernel(args.kernel, args.scale, before=handshake if args.wait else None)
    except (KernelCheckError, ValueError) as e:
        print(json.dumps({"kernel": args.kernel, "error": str(e)}), flush=True)
        return 1
    print(
        json.dumps(
            {
                "kernel": run.kernel,
                "scale": run.scale,
                "seconds": run.seconds,
                "cpu_seconds": run.cpu_seconds,
                "checksum": run.checksum,
                "cpu_with_check_s": run.cpu_with_check_s,
                "runqueue_wait_s": run.runqueue_wait_s,
                "involuntary_switches": run.involuntary_switches,
                "migrations": run.migrations,
            }
        ),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
