"""NVML link discovery and XID health, against the pynvml stand-in (tests/nvml_standin.py)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from deviceplugin.errors import DevicePluginConfigError
from deviceplugin.gpu_allocation import GPU, GPUTopology, preferred_allocation
from deviceplugin.nvml import (
    NVMLXidHealth,
    discover_links,
    pci_address,
)
from deviceplugin.resources import HealthEvent
from tests.conformance.test_gpualloc import DATA
from tests.nvml_standin import (
    NVML_ERROR_GPU_IS_LOST,
    NVML_ERROR_NOT_SUPPORTED,
    NVML_ERROR_TIMEOUT,
    NVML_ERROR_UNINITIALIZED,
    NVMLStandIn,
)


def _address(index: int) -> str:
    return f"0000:{0x10 + index:02x}:00.0"


def _standin(topology: dict[str, Any]) -> NVMLStandIn:
    nvml = NVMLStandIn([_address(g["index"]) for g in topology["gpus"]])
    for link in topology["links"]:
        nvml.link(_address(link["a"]), _address(link["b"]), link["pcie"], link["nvlinks"])
    nvml.nvmlInit()
    return nvml


@pytest.mark.parametrize("topology", DATA["topologies"], ids=lambda t: t["name"])
def test_discovered_links_score_as_the_reference_topology(topology: dict[str, Any]) -> None:
    nvml = _standin(topology)
    addresses = [_address(g["index"]) for g in topology["gpus"]]
    links = discover_links(nvml, addresses)
    assert len(links) == len(addresses) * (len(addresses) - 1) // 2
    for link in topology["links"]:
        got = links[(_address(link["a"]), _address(link["b"]))].score
        assert got == link["score"], link


@pytest.mark.parametrize("topology", DATA["topologies"], ids=lambda t: t["name"])
def test_discovered_links_give_the_reference_preferred_allocations(topology: dict[str, Any]) -> None:
    nvml = _standin(topology)
    addresses = [_address(g["index"]) for g in topology["gpus"]]
    model = GPUTopology(
        [GPU(_address(g["index"]), g["index"], g["numa"]) for g in topology["gpus"]],
        discover_links(nvml, addresses),
    )
    cases = [
        c
        for c in DATA["cases"]
        if c["topology"] == topology["name"]
        and c["policy"] == "besteffort"
        and isinstance(c["expected"], list)
        and c["expected"]
    ]
    assert cases
    for case in cases:
        got = preferred_allocation(
            model,
            [_address(i) for i in case["available"]],
            [_address(i) for i in case["required"]],
            case["size"],
        )
        assert sorted(got) == sorted(_address(i) for i in case["expected"]), case["id"]


@pytest.mark.parametrize(
    ("nvml_id", "sysfs"),
    [
        ("00000000:3B:00.0", "0000:3b:00.0"),
        (b"00000001:AF:10.3", "0001:af:10.3"),
        ("0000:3b:00.0", "0000:3b:00.0"),
    ],
)
def test_pci_address(nvml_id: str | bytes, sysfs: str) -> None:
    assert pci_address(nvml_id) == sysfs


def test_pci_address_rejects_garbage() -> None:
    with pytest.raises(DevicePluginConfigError, match="NVML PCI bus id"):
        pci_address("3b")


GPUS = [_address(i) for i in range(3)]


def _events(health: Any, within: float = 1.0) -> list[HealthEvent]:
    out, deadline = [], time.monotonic() + within
    while time.monotonic() < deadline:
        event = health.get(0.05)
        if event is not None:
            out.append(event)
    return out


def _watch(nvml: NVMLStandIn, **kw: object) -> NVMLXidHealth:
    health = NVMLXidHealth(GPUS, nvml, wait_ms=50, **kw)  # type: ignore[arg-type]
    health.start()
    return health


@pytest.mark.parametrize(
    ("inject", "unhealthy"),
    [
        (lambda n: n.inject_xid(GPUS[1], 79), {GPUS[1]}),  # fell off the bus
        (lambda n: n.inject_xid(GPUS[0], 48), {GPUS[0]}),  # double-bit ECC
        (lambda n: n.inject_xid(GPUS[1], 13), set()),  # application XID
        (lambda n: n.inject_xid(GPUS[1], 43), set()),
        (lambda n: n.inject_xid(GPUS[1], 79, event_type=0x2), set()),  # ECC event, not an XID
        (lambda n: n.inject_xid(None, 79), set(GPUS)),  # unresolvable GPU
        (lambda n: n.inject_xid("0000:99:00.0", 79), None),  # someone else's GPU: NVML can't name it
        (lambda n: n.inject_wait_error(NVML_ERROR_GPU_IS_LOST), set(GPUS)),
        (lambda n: n.inject_wait_error(NVML_ERROR_NOT_SUPPORTED), set()),
        (lambda n: n.inject_wait_error(NVML_ERROR_TIMEOUT), set()),
    ],
    ids=[
        "xid79",
        "xid48",
        "xid13-ignored",
        "xid43-ignored",
        "ecc-event-skipped",
        "unknown-gpu",
        "foreign-gpu",
        "gpu-lost",
        "not-supported-transient",
        "timeout",
    ],
)
def test_xid_events(inject: Callable[[NVMLStandIn], object], unhealthy: set[str] | None) -> None:
    nvml = NVMLStandIn(GPUS)
    nvml.nvmlInit()
    health = _watch(nvml)
    try:
        inject(nvml)
        got = {e.device_id for e in _events(health, 0.4) if not e.healthy}
    finally:
        health.stop()
    # A GPU NVML does not know is, to the stand-in, an invalid handle: every GPU turns Unhealthy.
    assert got == (set(GPUS) if unhealthy is None else unhealthy)


def test_registration_failure_marks_that_gpu_unhealthy_at_once() -> None:
    nvml = NVMLStandIn(GPUS)
    nvml.gpus["00000000:12:00.0"].register_error = NVML_ERROR_NOT_SUPPORTED
    nvml.nvmlInit()
    health = _watch(nvml)
    try:
        assert {e.device_id for e in _events(health, 0.3)} == {GPUS[2]}
    finally:
        health.stop()


def test_uninitialised_stops_the_watch_and_frees_the_event_set() -> None:
    nvml = NVMLStandIn(GPUS)
    nvml.nvmlInit()
    health = _watch(nvml)
    nvml.inject_wait_error(NVML_ERROR_UNINITIALIZED)
    deadline = time.monotonic() + 2
    while not nvml.freed and time.monotonic() < deadline:
        time.sleep(0.02)
    assert nvml.freed
    health.stop()


def test_stop_returns_within_a_second() -> None:
    nvml = NVMLStandIn(GPUS)
    nvml.nvmlInit()
    health = NVMLXidHealth(GPUS, nvml, wait_ms=500)
    health.start()
    t0 = time.monotonic()
    health.stop()
    assert time.monotonic() - t0 < 1.0
    assert nvml.freed


def test_merged_health_forwards_udev_and_nvml_events() -> None:
    from deviceplugin.gpu import UdevGPUHealth
    from deviceplugin.health import MergedHealth

    class _NoMonitor:
        def start(self) -> None: ...

        def stop(self) -> None: ...

    nvml = NVMLStandIn(GPUS)
    nvml.nvmlInit()
    udev = UdevGPUHealth(GPUS, monitor_factory=lambda callback: _NoMonitor())
    merged = MergedHealth([udev, NVMLXidHealth(GPUS, nvml, wait_ms=50)], poll_s=0.05)
    merged.start()
    try:
        nvml.inject_xid(GPUS[0], 79)
        udev.on_udev_event("remove", GPUS[2])
        got = {(e.device_id, e.healthy) for e in _events(merged, 0.4)}
        assert got == {(GPUS[0], False), (GPUS[2], False)}
        udev.on_udev_event("add", GPUS[2])
        assert [(e.device_id, e.healthy) for e in _events(merged, 0.3)] == [(GPUS[2], True)]
    finally:
        merged.stop()
    assert nvml.freed
