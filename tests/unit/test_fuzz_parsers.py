"""Fuzzing every parser that faces input: each either returns a bounded value or raises
its own boundary's error (the one the CLI, the HTTP server or the gRPC server turns into
one line); any other exception, a hang or a blow-up is a crash.

Parsers: cpu list and hex mask (:mod:`topology.cpuset`), quantity
(:mod:`topology.quantity`), the ``cpu_manager_state`` checkpoint, the node configuration
YAML, the extender's JSON bodies (decoded as the server does, then parsed by
:mod:`scheduler.wire` and :func:`scheduler.pod.parse_pod`) and sysfs files (the reader on
its own, and discovery of a real snapshot with one file replaced).

Hypothesis drives it, derandomized (the same inputs on every run, so CI is reproducible)
and bounded by ``max_examples``: the whole module runs in tens of seconds. Inputs mix
free text with structure-aware generators (valid forms with one part mutated), so the
fuzzer reaches the checks behind the first syntax check. Every crash it found is pinned
as a named test at the end of this module.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cpumanager.checkpoint_format import CheckpointError, checksum_v2, decode
from scheduler.errors import SchedulerError
from scheduler.pod import parse_pod
from scheduler.wire import parse_binding_args, parse_extender_args, parse_preemption_args
from topolet.node_config import NodeConfig, NodeConfigError
from topology.cpuset import CPUSet, CPUSetParseError, cpu_id_limit
from topology.errors import DiscoveryError, TopologyError
from topology.quantity import QuantityError, parse_quantity
from topology.sysfs import SysfsReader, discover

#: Derandomized: the same examples on every run; no example database, no deadline (the
#: CI machine is shared; speed is a benchmark's business, hangs are pytest-timeout's).
FUZZ = settings(
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=400,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
SLOW_FUZZ = settings(FUZZ, max_examples=120)

# ------------------------------------------------------------------ generators

_numbers = st.one_of(
    st.integers(0, 64).map(str),
    st.integers(0, 2**70).map(str),
    st.sampled_from(["8191", "8192", "4294967295", "99999999999", "0" * 30 + "7", "1" * 5000]),
)
_tokens = st.one_of(_numbers, st.tuples(_numbers, _numbers).map("-".join), st.text(max_size=6))
#: cpu lists: mostly well-formed tokens, some junk, odd separators and whitespace.
cpu_lists = st.one_of(
    st.lists(_tokens, max_size=8).map(",".join),
    st.text(alphabet="0123456789-, \n\t\x00x", max_size=40),
    st.text(max_size=40),
)
_hex_words = st.text(alphabet="0123456789abcdefABCDEF", min_size=0, max_size=10)
masks = st.one_of(
    st.lists(_hex_words, max_size=300).map(",".join),
    st.text(alphabet="0123456789abcdefx,\x00 \n", max_size=60),
    st.text(max_size=40),
)
quantities = st.one_of(
    st.from_regex(
        r"[+-]?[0-9_]{0,45}(\.[0-9]{0,45})?([eE][+-]?[0-9]{1,9}|Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE])?",
        fullmatch=True,
    ),
    st.sampled_from(
        ["Infinity", "-inf", "NaN", "nan", "1e9999999", "1e99999", "1_000", "\uff11", "0x10", " 1", "1 "]
    ),
    st.text(max_size=30),
    st.integers(-(2**200), 2**200),
)

json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False), st.text(max_size=12)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


# ------------------------------------------------------------------ cpu list / mask


@FUZZ
@given(cpu_lists)
def test_cpu_list(text: str) -> None:
    try:
        cpus = CPUSet.parse(text)
    except CPUSetParseError as e:
        assert len(str(e)) < 500, "the error quotes a bounded part of the input"
        return
    assert not cpus or max(cpus) < cpu_id_limit()
    assert CPUSet.parse(str(cpus)) == cpus


@FUZZ
@given(masks)
def test_cpu_mask(text: str) -> None:
    try:
        cpus = CPUSet.parse_mask(text)
    except CPUSetParseError as e:
        assert len(str(e)) < 500
        return
    assert not cpus or max(cpus) < cpu_id_limit()
    assert CPUSet.parse_mask(cpus.to_mask()) == cpus


# ------------------------------------------------------------------ quantity


@FUZZ
@given(quantities)
def test_quantity(text: str | int) -> None:
    try:
        q = parse_quantity(text, field="cpu")
    except QuantityError as e:
        assert len(str(e)) < 500
        return
    assert isinstance(q, Fraction)
    assert abs(q) < Fraction(10) ** 110, "at most 40 digits times 10**64"
    assert q.denominator <= 10**110


# ------------------------------------------------------------------ checkpoint


def _valid_checkpoint(policy: str, default: str, entries: dict[str, dict[str, str]]) -> str:
    doc: dict[str, Any] = {"policyName": policy, "defaultCpuSet": default}
    if entries:
        doc["entries"] = entries
    doc["checksum"] = checksum_v2(policy, default, entries)
    return json.dumps(doc)


checkpoints = st.one_of(
    # structurally valid with a valid checksum, so decoding reaches the cpu lists
    st.builds(
        _valid_checkpoint,
        st.sampled_from(["static", "none", ""]),
        cpu_lists,
        st.dictionaries(
            st.text(max_size=6), st.dictionaries(st.text(max_size=6), cpu_lists, max_size=2), max_size=2
        ),
    ),
    json_values.map(json.dumps),
    st.binary(max_size=80),
)


@FUZZ
@given(checkpoints)
def test_checkpoint(text: str | bytes) -> None:
    try:
        cp = decode(text, policy_name="static")
    except CheckpointError as e:
        assert "Traceback" not in str(e)
        return
    assert not cp.default_cpu_set or max(cp.default_cpu_set) < cpu_id_limit()


# ------------------------------------------------------------------ node config

_config_values = st.one_of(
    json_scalars, cpu_lists, st.sampled_from(["10s", "1m30s", "-1s", "auto", "true", "v1", "/abs", "rel"])
)
_key_names = st.sampled_from(
    [
        "nodeName",
        "podSource",
        "stateDir",
        "cgroupRoot",
        "reservedSystemCPUs",
        "numReservedCPUs",
        "nvml",
        "watchUdev",
        "gpuResourceNames",
        "metricsBindAddress",
        "cpuManagerReconcilePeriod",
        "bogus",
    ]
)
config_texts = st.one_of(
    st.dictionaries(_key_names, _config_values, max_size=5).map(lambda d: yaml.safe_dump(d)),
    st.lists(st.tuples(_key_names, _config_values), max_size=5).map(
        lambda kv: "".join(f"{k}: {json.dumps(v)}\n" for k, v in kv)  # duplicates allowed here
    ),
    st.text(alphabet="ab:{}[]-&*!|>#'\"\n 0123456789", max_size=60),
    st.text(max_size=60),
)


@SLOW_FUZZ
@given(text=config_texts)
def test_node_config(tmp_path: Path, text: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        NodeConfig.load(path)
    except NodeConfigError as e:
        assert str(e).startswith(f"{path}: "), "every configuration error names the file"
        assert "\n" not in str(e)


# ------------------------------------------------------------------ extender JSON


def _filter_body(pod: Any, names: Any) -> bytes:
    return json.dumps({"Pod": pod, "NodeNames": names}).encode()


_resources = st.dictionaries(
    st.sampled_from(["cpu", "memory", "nvidia.com/gpu", "hugepages-2Mi", "x"]), quantities, max_size=3
)
_pods = st.builds(
    lambda req, lim: {
        "metadata": {"name": "p", "uid": "u"},
        "spec": {"containers": [{"name": "c", "resources": {"requests": req, "limits": lim}}]},
    },
    _resources,
    _resources,
)
extender_bodies = st.one_of(
    st.builds(
        _filter_body,
        st.one_of(_pods, json_values),
        st.one_of(st.lists(st.text(max_size=5), max_size=4), json_values),
    ),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=80),
)


@FUZZ
@given(extender_bodies)
def test_extender_json(body: bytes) -> None:
    try:
        doc = json.loads(body)  # what the server does with a body
    except ValueError:
        return  # JSONDecodeError and UnicodeDecodeError: a 400
    for parse in (parse_binding_args, parse_preemption_args):
        with contextlib.suppress(SchedulerError, ValueError):
            parse(doc)
    try:
        request = parse_extender_args(doc)
        parse_pod(request.pod)
    except (SchedulerError, ValueError):
        pass


# ------------------------------------------------------------------ sysfs files


file_bytes = st.one_of(
    cpu_lists.map(str.encode),
    masks.map(str.encode),
    st.binary(max_size=100),
    st.integers(-(2**80), 2**80).map(lambda n: str(n).encode()),
)


@FUZZ
@given(data=file_bytes)
def test_sysfs_reader(tmp_path: Path, data: bytes) -> None:
    (tmp_path / "f").write_bytes(data)
    r = SysfsReader(tmp_path)
    for read in (r.text, r.integer, r.mask, r.cpulist):
        try:
            read("f")
        except DiscoveryError as e:
            assert str(tmp_path / "f") in str(e)


#: Files of a real snapshot that discovery parses, each replaced in turn by fuzzed bytes.
_SNAPSHOT = "8em64t-2s2ca2c"
_TARGETS = [
    "sys/devices/system/cpu/online",
    "sys/devices/system/cpu/present",
    "sys/devices/system/cpu/cpu0/topology/core_siblings",
    "sys/devices/system/cpu/cpu0/topology/thread_siblings",
    "sys/devices/system/cpu/cpu1/topology/physical_package_id",
    "sys/devices/system/cpu/cpu0/cache/index2/shared_cpu_map",
    "sys/devices/system/node/node0/cpumap",
    "sys/devices/system/node/node0/distance",
    "sys/devices/system/node/node0/meminfo",
    "proc/cpuinfo",
    "proc/self/cpuset",
    "proc/mounts",
]


@pytest.fixture(scope="module")
def snapshot_copy(
    hwloc_snapshot: Callable[[str], Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("fuzz") / "root"
    shutil.copytree(hwloc_snapshot(_SNAPSHOT), root, symlinks=True)
    yield root


@SLOW_FUZZ
@given(target=st.sampled_from(_TARGETS), data=file_bytes)
def test_discovery_with_one_file_fuzzed(snapshot_copy: Path, target: str, data: bytes) -> None:
    path = snapshot_copy / target
    original = path.read_bytes() if path.exists() else None
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    try:
        topo = discover(snapshot_copy)
        assert max(topo.online_cpus) < cpu_id_limit()
    except TopologyError:
        pass
    finally:
        if original is None:
            path.unlink()
        else:
            path.write_bytes(original)
