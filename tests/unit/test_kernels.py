"""The isolation benchmark's victim kernels: each result passes its self-check, and a
corrupted result fails it."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from bench.kernels import KERNELS, KernelCheckError, run_kernel

TINY = 0.01


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_tiny_run_passes_its_self_check(name: str) -> None:
    run = run_kernel(name, TINY)
    assert run.kernel == name and run.seconds > 0 and np.isfinite(run.checksum)


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_same_scale_same_checksum(name: str) -> None:
    assert run_kernel(name, TINY).checksum == run_kernel(name, TINY).checksum


def _bump_call_put(i: int) -> Callable[[Any, Any], None]:
    def corrupt(_inp: Any, p: Any) -> None:
        p.call[i] += 0.01
        p.put[i] += 0.01  # parity still holds: only the price check can see it

    return corrupt


def _sampled_bs_index(inp: Any) -> int:
    return int(np.random.default_rng(1).integers(0, len(inp.spot), 64)[0])


def _swap_slots(_inp: Any, p: Any) -> None:
    p.slot[[0, 1]] = p.slot[[1, 0]]


def _duplicate_slot(_inp: Any, p: Any) -> None:
    p.slot[0] = p.slot[1]


def _reassign_point(_inp: Any, r: Any) -> None:
    r.assign[3] = (r.assign[3] + 1) % len(r.centres)


def _move_centre(_inp: Any, r: Any) -> None:
    r.centres[int(r.assign[0])] += 0.5


@dataclass(frozen=True)
class Corruption:
    id: str
    kernel: str
    corrupt: Callable[[Any, Any], None]
    message: str


CORRUPTIONS = [
    Corruption(
        "blackscholes/one-call-price-off/parity",
        "blackscholes-like",
        lambda _i, p: p.call.__setitem__(5, p.call[5] + 0.01),
        "put-call parity",
    ),
    Corruption(
        "blackscholes/anchor-shifted-with-parity/anchor",
        "blackscholes-like",
        _bump_call_put(0),
        "anchor option",
    ),
    Corruption(
        "blackscholes/sampled-option-shifted/closed-form",
        "blackscholes-like",
        lambda i, p: _bump_call_put(_sampled_bs_index(i))(i, p),
        "closed form",
    ),
    Corruption(
        "blackscholes/checksum-off",
        "blackscholes-like",
        lambda _i, p: setattr(p, "total", p.total * 1.001),
        "checksum",
    ),
    Corruption(
        "canneal/cost-off-by-one", "canneal-like", lambda _i, p: setattr(p, "cost", p.cost + 1), "wire length"
    ),
    Corruption("canneal/two-slots-swapped/cost-mismatch", "canneal-like", _swap_slots, "wire length"),
    Corruption("canneal/slot-duplicated/not-a-permutation", "canneal-like", _duplicate_slot, "permutation"),
    Corruption(
        "canneal/negative-accept-count", "canneal-like", lambda _i, p: setattr(p, "accepted", -1), "accepted"
    ),
    Corruption(
        "streamcluster/cost-off",
        "streamcluster-like",
        lambda _i, r: setattr(r, "cost", r.cost * 1.01),
        "reported cost",
    ),
    Corruption("streamcluster/point-reassigned", "streamcluster-like", _reassign_point, "reported cost"),
    Corruption("streamcluster/centre-moved", "streamcluster-like", _move_centre, "reported cost"),
    Corruption(
        "streamcluster/assignment-out-of-range",
        "streamcluster-like",
        lambda _i, r: r.assign.__setitem__(0, 99),
        "names no centre",
    ),
]


@pytest.mark.parametrize("case", CORRUPTIONS, ids=lambda c: c.id)
def test_corrupted_result_fails_the_self_check(case: Corruption) -> None:
    kernel = KERNELS[case.kernel]
    inputs = kernel.prepare(TINY)
    result = kernel.compute(inputs)
    kernel.verify(inputs, result)  # sound before the corruption
    case.corrupt(inputs, result)
    with pytest.raises(KernelCheckError, match=case.message) as err:
        kernel.verify(inputs, result)
    assert err.value.kernel == case.kernel


@pytest.mark.parametrize(
    ("name", "scale", "message"),
    [
        ("no-such-kernel", 1.0, "unknown kernel 'no-such-kernel'"),
        ("canneal-like", 0.0, "scale: expected a positive number"),
        ("canneal-like", -1.0, "scale: expected a positive number"),
    ],
    ids=["unknown-name", "zero-scale", "negative-scale"],
)
def test_bad_arguments_are_refused(name: str, scale: float, message: str) -> None:
    with pytest.raises((KeyError, ValueError), match=message):
        run_kernel(name, scale)


def test_child_protocol_waits_for_go_then_prints_one_json_line() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.kernels", "streamcluster-like", "--scale", "0.01", "--wait"],
        input="go\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    ready, line = proc.stdout.splitlines()
    data = json.loads(line)
    assert ready == "ready"
    assert data["kernel"] == "streamcluster-like" and data["scale"] == 0.01 and data["seconds"] > 0


def test_child_reports_a_bad_scale_as_an_error_line() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.kernels", "canneal-like", "--scale", "-2"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert "scale" in json.loads(proc.stdout)["error"]
