"""NodeConfig: defaults (kubelet's where kubelet has the knob), parsing, errors naming the key,
flags over the file, --print-config, host paths and the documentation table."""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from topolet import cmd_node
from topolet.cli import CommandError
from topolet.node_config import KEYS, NodeConfig, NodeConfigError, format_duration, parse_duration
from topology.cpuset import CPUSet

DOC = Path(__file__).resolve().parents[2] / "docs" / "node-config.md"


@pytest.mark.parametrize(
    ("attr", "expected"),
    [
        pytest.param("reconcile_period_s", 10.0, id="cpuManagerReconcilePeriod-10s"),
        pytest.param("device_plugin_dir", Path("/var/lib/kubelet/device-plugins"), id="device-plugin-dir"),
        pytest.param(
            "pod_resources_socket",
            Path("/var/lib/kubelet/pod-resources/kubelet.sock"),
            id="podresources-socket",
        ),
        pytest.param("topology_manager_policy", "none", id="topologyManagerPolicy-none"),
        pytest.param("topology_manager_scope", "container", id="topologyManagerScope-container"),
        pytest.param("reserved_system_cpus", None, id="reservedSystemCPUs-empty"),
        pytest.param("cgroup_driver", "cgroupfs", id="cgroupDriver-cgroupfs"),
        pytest.param("state_dir", Path("/var/lib/topolet"), id="stateDir"),
        pytest.param("pod_source", "kubernetes", id="podSource-kubernetes"),
        pytest.param("metrics_bind_address", "0.0.0.0:9464", id="metrics-address"),
        pytest.param("log_format", "text", id="logFormat-text"),
    ],
)
def test_defaults(attr: str, expected: object) -> None:
    assert getattr(NodeConfig(), attr) == expected


@pytest.mark.parametrize(
    ("key", "value", "attr", "expected"),
    [
        pytest.param(
            "cpuManagerReconcilePeriod", "1m30s", "reconcile_period_s", 90.0, id="duration-compound"
        ),
        pytest.param("cpuManagerReconcilePeriod", "250ms", "reconcile_period_s", 0.25, id="duration-ms"),
        pytest.param("reservedSystemCPUs", "0,8-9", "reserved_system_cpus", CPUSet.parse("0,8-9"), id="cpus"),
        pytest.param("podSource", "standalone", "pod_source", "standalone", id="pod-source"),
        pytest.param(
            "topologyManagerPolicy",
            "single-numa-node",
            "topology_manager_policy",
            "single-numa-node",
            id="policy",
        ),
        pytest.param(
            "cgroupRoot",
            "/sys/fs/cgroup/cpuset/kube",
            "cgroup_root",
            Path("/sys/fs/cgroup/cpuset/kube"),
            id="cgroup-root",
        ),
        pytest.param(
            "gpuResourceNames",
            {"nvidia": "example.com/gpu"},
            "gpu_resource_names",
            {"nvidia": "example.com/gpu"},
            id="gpu-names",
        ),
        pytest.param("exclusiveCPUResourceName", "", "exclusive_cpu_resource_name", "", id="cpu-plugin-off"),
        pytest.param("metricsBindAddress", "[::1]:9000", "metrics_bind_address", "[::1]:9000", id="ipv6"),
        pytest.param("publishNRT", True, "publish_nrt", True, id="publish-nrt"),
    ],
)
def test_values_parse(key: str, value: object, attr: str, expected: object) -> None:
    assert getattr(NodeConfig.from_mapping({key: value}), attr) == expected


@pytest.mark.parametrize(
    ("data", "key", "accepted"),
    [
        pytest.param({"cpuManagerReconcilePeriod": "10"}, "cpuManagerReconcilePeriod", "'10s'", id="no-unit"),
        pytest.param({"cpuManagerReconcilePeriod": "0s"}, "cpuManagerReconcilePeriod", "positive", id="zero"),
        pytest.param({"podSource": "docker"}, "podSource", "kubernetes, standalone", id="pod-source"),
        pytest.param(
            {"topologyManagerPolicy": "SingleNUMANode"},
            "topologyManagerPolicy",
            "single-numa-node",
            id="policy-case",
        ),
        pytest.param({"reservedSystemCPUs": "3-1"}, "reservedSystemCPUs", "cpu list", id="cpus-reversed"),
        pytest.param({"stateDir": "var/lib"}, "stateDir", "absolute path", id="relative-path"),
        pytest.param({"metricsBindAddress": "9464"}, "metricsBindAddress", "HOST:PORT", id="no-host"),
        pytest.param(
            {"metricsBindAddress": "0.0.0.0:99999"}, "metricsBindAddress", "HOST:PORT", id="port-range"
        ),
        pytest.param({"numReservedCPUs": -1}, "numReservedCPUs", "non-negative", id="negative"),
        pytest.param({"watchUdev": "yes"}, "watchUdev", "true or false", id="bool-string"),
        pytest.param(
            {"gpuResourceNames": {"nvidia": "gpu"}}, "gpuResourceNames", "domain/name", id="gpu-name"
        ),
        pytest.param({"logFormat": "xml"}, "logFormat", "text, json", id="log-format"),
        pytest.param({"cpuManagerPolicy": "static"}, "cpuManagerPolicy", "unknown key", id="unknown-key"),
    ],
)
def test_bad_values_name_the_key_and_the_accepted_form(data: dict[str, Any], key: str, accepted: str) -> None:
    with pytest.raises(NodeConfigError) as err:
        NodeConfig.from_mapping(data)
    assert err.value.key == key
    assert str(err.value).startswith(f"{key}: ")
    assert accepted in str(err.value)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("10s", 10.0), ("1m30s", 90.0), ("500ms", 0.5), ("1h", 3600.0), ("1.5s", 1.5)],
    ids=["s", "m+s", "ms", "h", "fraction"],
)
def test_durations_round_trip(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds
    assert parse_duration(format_duration(seconds)) == seconds


@pytest.mark.parametrize("text", ["", "10", "s", "10x", "10s5", "-1s"], ids=repr)
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_load_file_and_empty_file(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("podSource: standalone\nstateDir: /tmp/x\n")
    assert NodeConfig.load(f) == NodeConfig(pod_source="standalone", state_dir=Path("/tmp/x"))
    f.write_text("")
    assert NodeConfig.load(f) == NodeConfig()
    f.write_text("podSource: [")
    with pytest.raises(NodeConfigError, match="not valid YAML"):
        NodeConfig.load(f)


def test_printed_defaults_load_back_to_the_defaults() -> None:
    text = NodeConfig().to_yaml()
    assert NodeConfig.from_mapping(yaml.safe_load(text)) == NodeConfig()
    assert [k.name for k in KEYS] == list(yaml.safe_load(text))


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cmd_node.register(parser.add_subparsers())
    return parser.parse_args(["node", *argv])


def test_flags_override_the_file(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("podSource: standalone\nlogFormat: json\nwatchUdev: true\n")
    args = parse(
        [
            "--config",
            str(f),
            "--log-format",
            "text",
            "--watch-udev",
            "false",
            "--reserved-cpus",
            "0-1",
            "--gpu-resource-names",
            "{amd: example.com/amd}",
        ]
    )
    config = cmd_node.load_config(args)
    assert (config.pod_source, config.log_format, config.watch_udev) == ("standalone", "text", False)
    assert config.reserved_system_cpus == CPUSet.parse("0-1")
    assert config.gpu_resource_names == {"amd": "example.com/amd"}


def test_bad_flag_is_a_command_error_naming_the_flag_and_key(tmp_path: Path) -> None:
    flag = r"^--cpu-manager-reconcile-period \(cpuManagerReconcilePeriod\): "
    with pytest.raises(CommandError, match=flag):
        cmd_node.load_config(parse(["--cpu-manager-reconcile-period", "soon"]))
    f = tmp_path / "c.yaml"
    f.write_text("bogus: 1\n")
    with pytest.raises(CommandError, match=f"^{re.escape(str(f))}: bogus: unknown key"):
        cmd_node.load_config(parse(["--config", str(f)]))


def test_print_config_prints_every_key(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert cmd_node.run(parse(["--print-config", "--node-name", "n1"])) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed == {**NodeConfig().to_mapping(), "nodeName": "n1"}


def test_every_key_has_a_flag_in_help() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    cmd_node.register(sub)
    text = sub.choices["node"].format_help()
    for key in KEYS:
        assert key.flag in text and key.name in text


def test_host_paths_cover_what_the_config_names(tmp_path: Path) -> None:
    config = NodeConfig.from_mapping(
        {
            "stateDir": "/data/topolet",
            "devicePluginDir": "/k/dp",
            "podResourcesSocket": "/k/pr/kubelet.sock",
            "cgroupRoot": "/sys/fs/cgroup/cpuset/k8s",
            "sysfsRoot": "/host",
        }
    )
    paths = config.host_paths()
    for p in ("/data/topolet", "/k/dp", "/k/pr", "/sys/fs/cgroup/cpuset/k8s", "/host/sys", "/host/proc"):
        assert Path(p) in paths
    defaults = NodeConfig().host_paths()
    for p in (
        "/sys",
        "/sys/fs/cgroup",
        "/var/lib/kubelet/device-plugins",
        "/var/lib/kubelet/pod-resources",
        "/var/lib/topolet",
    ):
        assert Path(p) in defaults


def test_node_name_defaults_to_env_then_hostname(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NODE_NAME", "worker-7")
    assert NodeConfig().effective_node_name() == "worker-7"
    assert NodeConfig(node_name="explicit").effective_node_name() == "explicit"
    monkeypatch.delenv("NODE_NAME")
    assert NodeConfig().effective_node_name()


def test_docs_table_lists_every_key_with_its_default() -> None:
    rows = {}
    for line in DOC.read_text().splitlines():
        m = re.match(r"^\| `([A-Za-z]+)` \| `([^`]*)` \|", line)
        if m:
            rows[m[1]] = m[2]
    defaults = NodeConfig().to_mapping()
    for key in KEYS:
        assert key.name in rows, f"docs/node-config.md has no row for {key.name}"
        shown = defaults[key.name]
        if isinstance(shown, dict):
            continue
        expected = str(shown).lower() if isinstance(shown, bool) else str(shown) or '""'
        assert rows[key.name] == expected, f"{key.name}: docs say {rows[key.name]!r}, code {expected!r}"
