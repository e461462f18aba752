"""Named regression tests: each crash the fuzz suite (test_fuzz_parsers.py) found in the
parsers as they were before the bounds, plus the bounds themselves, pinned in-process."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import pytest

from cpumanager.checkpoint_format import CheckpointError, checksum_v2, decode
from topolet.arg_types import non_negative_int, positive_float, positive_int
from topolet.node_config import NodeConfig, NodeConfigError, check_cgroup_root
from topology.cpuset import CPUSet, CPUSetParseError, cpu_id_limit
from topology.errors import DiscoveryError
from topology.quantity import QuantityError, parse_quantity
from topology.sysfs import MAX_FILE_BYTES, MAX_LARGE_FILE_BYTES, SysfsReader

# --------------------------------------------------------- crashes the fuzzer found


def test_fuzz_crash_cpu_range_to_2_pow_32_was_memory_error() -> None:
    start = time.perf_counter()
    with pytest.raises(CPUSetParseError, match="above 8191"):
        CPUSet.parse("0,2-4294967295")
    assert time.perf_counter() - start < 2.0  # expanding the range would take minutes


def test_fuzz_crash_5000_digit_cpu_id_was_python_int_limit_value_error() -> None:
    with pytest.raises(CPUSetParseError, match=r"\(5000 characters\)"):
        CPUSet.parse("1" * 5000)


def test_fuzz_crash_cpu_id_8192_was_accepted() -> None:
    assert max(CPUSet.parse("8191")) == 8191
    with pytest.raises(CPUSetParseError):
        CPUSet.parse("8192")
    with pytest.raises(CPUSetParseError, match="CPU id 8192"):
        CPUSet.parse_mask("1" + ",00000000" * 256)


def test_fuzz_crash_checkpoint_default_cpuset_to_2_pow_32_was_memory_error() -> None:
    default = "0,2-4294967295"
    checksum = checksum_v2("static", default, {})
    text = f'{{"policyName":"static","defaultCpuSet":"{default}","checksum":{checksum}}}'
    with pytest.raises(CheckpointError, match="could not parse default cpu set"):
        decode(text, policy_name="static")


def test_fuzz_crash_sysfs_cpulist_to_2_pow_32_was_memory_error(tmp_path: Path) -> None:
    (tmp_path / "online").write_text("0-4294967295\n")
    with pytest.raises(DiscoveryError, match="online"):
        SysfsReader(tmp_path).cpulist("online")


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("cpuManagerReconcilePeriod: ''\n", id="bad-value"),
        pytest.param("bogus: 1\n", id="unknown-key"),
        pytest.param("a: !<!0>\n", id="yaml-tag-error-spanned-lines"),
        pytest.param("a: \x1f\n", id="yaml-reader-error"),
    ],
)
def test_fuzz_crash_config_errors_did_not_name_the_file_or_spanned_lines(tmp_path: Path, text: str) -> None:
    f = tmp_path / "c.yaml"
    f.write_text(text)
    with pytest.raises(NodeConfigError) as err:
        NodeConfig.load(f)
    assert str(err.value).startswith(f"{f}: ")
    assert "\n" not in str(err.value)


# ------------------------------------------------------------------ bounds


def test_cpuset_constructors_are_bounded() -> None:
    with pytest.raises(ValueError, match="above the largest"):
        CPUSet.of(cpu_id_limit())
    with pytest.raises(ValueError, match="above the largest"):
        CPUSet.range(0, 2**40)
    with pytest.raises(ValueError, match="above the largest"):
        CPUSet.from_bits(1 << 2**20)


def test_cpu_list_error_quotes_a_bounded_part() -> None:
    with pytest.raises(CPUSetParseError) as err:
        CPUSet.parse("x" * 100_000)
    assert len(str(err.value)) < 400


@pytest.mark.parametrize(
    "text",
    ["1e9999999", "1e99999", "1_000", "Infinity", "NaN", "1" * 41, "0." + "0" * 40 + "1", "1" * 100_000],
)
def test_quantity_refuses_unbounded_forms(text: str) -> None:
    with pytest.raises(QuantityError) as err:
        parse_quantity(text, field="--cpus")
    assert str(err.value).startswith("--cpus: ")
    assert len(str(err.value)) < 300


def test_quantity_accepts_forty_digits() -> None:
    assert parse_quantity("1" * 40) == int("1" * 40)
    with pytest.raises(QuantityError):
        parse_quantity(10**40)


@pytest.mark.parametrize(
    ("parse", "text"),
    [
        (positive_int, "1_000"),
        (positive_int, "9" * 19),
        (positive_float, "Infinity"),
        (positive_float, "1e999"),
        (non_negative_int, "-1"),
    ],
)
def test_argparse_numbers_are_strict(parse: object, text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        parse(text)  # type: ignore[operator]


def test_sysfs_reader_refuses_non_regular_and_oversized_files(tmp_path: Path) -> None:
    r = SysfsReader(tmp_path)
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "zero").symlink_to("/dev/zero")
    (tmp_path / "big").write_bytes(b"0" * (MAX_FILE_BYTES + 1))
    with (tmp_path / "sparse").open("wb") as f:
        f.truncate(1 << 30)
    for name, why in [("fifo", "FIFO"), ("zero", "character device"), ("big", "65536"), ("sparse", "65536")]:
        start = time.perf_counter()
        with pytest.raises(DiscoveryError, match=why) as err:
            r.text(name)
        assert str(tmp_path / name) in str(err.value)
        assert time.perf_counter() - start < 5.0  # reading 1 GiB or /dev/zero never ends
    (tmp_path / "ok").write_bytes(b"0" * MAX_FILE_BYTES)
    assert r.text("ok") == "0" * MAX_FILE_BYTES
    assert r.text("missing") is None


def test_cpuinfo_may_be_larger(tmp_path: Path) -> None:
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc/cpuinfo").write_bytes(b"processor : 0\n" * 10_000)  # 140 KB: a 256-CPU machine
    assert SysfsReader(tmp_path).text("proc/cpuinfo") is not None
    assert MAX_LARGE_FILE_BYTES >= 1 << 20


def test_sysfs_integers_are_64_bit(tmp_path: Path) -> None:
    (tmp_path / "n").write_text("9" * 30)
    with pytest.raises(DiscoveryError, match="64-bit"):
        SysfsReader(tmp_path).integer("n")


def test_cgroup_root_must_be_in_a_cgroup(tmp_path: Path) -> None:
    with pytest.raises(NodeConfigError, match="is not a cgroup"):
        check_cgroup_root(tmp_path / "x", v1=False)
    with pytest.raises(NodeConfigError, match="not a directory"):
        check_cgroup_root(tmp_path / "a" / "b", v1=False)
    with pytest.raises(NodeConfigError, match="not absolute"):
        check_cgroup_root(Path("rel"), v1=False)
    assert not (tmp_path / "x").exists()


def test_config_file_is_read_bounded(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("# " + "x" * (1 << 20) + "\n")
    with pytest.raises(NodeConfigError, match="at most 1048576 bytes"):
        NodeConfig.load(f)


def test_nvml_accepts_yaml_booleans() -> None:
    assert NodeConfig.from_mapping({"nvml": True}).nvml == "true"
    assert NodeConfig.from_mapping({"nvml": False}).nvml == "false"
    with pytest.raises(NodeConfigError, match="auto, true, false"):
        NodeConfig.from_mapping({"nvml": "yes"})
