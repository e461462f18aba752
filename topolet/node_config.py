"""Settings of the node-side commands: ``topolet node`` (:class:`NodeConfig`, one YAML file)
and the short-lived ``run`` / ``cpumanager`` commands (:class:`NodeSettings`, flags only).

Defaults match kubelet's where kubelet has the same knob (reconcile period, device-plugin
directory, pod-resources socket, topology manager policy and scope, reserved CPUs).
:data:`KEYS` is the one table of configuration keys: it drives parsing, the ``--help``
text of every flag of ``topolet node``, ``--print-config`` and docs/node-config.md.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

from cpumanager.cgroupfs import CgroupV1Cpuset, CgroupV2Cpuset, CpusetWriter
from cpumanager.checkpoint import CheckpointStore
from cpumanager.policy_static import StaticPolicy
from deviceplugin.gpu import VENDOR_RESOURCES
from topology.cpuset import CPUSet, CPUSetParseError
from topology.model import Topology
from topology.nrt import POLICIES, SCOPES
from topology.sysfs import discover

__all__ = [
    "KEYS",
    "ConfigError",
    "ConfigKey",
    "NodeConfig",
    "NodeSettings",
    "add_node_options",
    "detect_cgroup_writer",
    "format_duration",
    "parse_duration",
]

#: Where topolet keeps its checkpoint (kubelet keeps its own in /var/lib/kubelet).
DEFAULT_STATE_DIR = Path("/var/lib/topolet")
#: cgroup v1 cpuset mount, or the v2 unified root when v1 holds no cpuset controller.
V1_CPUSET = Path("/sys/fs/cgroup/cpuset")
V2_ROOT = Path("/sys/fs/cgroup")
#: Host folders of the DRA driver: kubelet's plugin registry, our plugin folder, CDI specs.
DRA_HOST_PATHS = (
    Path("/var/lib/kubelet/plugins_registry"),
    Path("/var/lib/kubelet/plugins/gpu.topolet.io"),
    Path("/var/run/cdi"),
)
CHECKPOINT_NAME = "cpu_manager_state"


class ConfigError(ValueError):
    """A configuration key has a bad value, or is not a key at all."""

    def __init__(self, key: str, message: str) -> None:
        self.key = key
        super().__init__(f"{key}: {message}")


# ------------------------------------------------------------------ value forms
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(h|ms|m|s)")
_UNIT_S = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
_ADDRESS = re.compile(r"^(?P<host>[^\s:]*|\[[0-9a-fA-F:]+\]):(?P<port>\d{1,5})$")
_RESOURCE = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?/[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")


def parse_duration(text: str) -> float:
    """Seconds in a Go-style duration: ``10s``, ``1m30s``, ``500ms``, ``1h``."""
    pos, total = 0, 0.0
    for m in _DURATION.finditer(text):
        if m.start() != pos:
            break
        total += float(m[1]) * _UNIT_S[m[2]]
        pos = m.end()
    if not text or pos != len(text):
        raise ValueError("expected a duration such as '10s', '1m30s' or '500ms'")
    return total


def format_duration(seconds: float) -> str:
    """The shortest duration text for *seconds* (``10s``, ``500ms``, ``5m``)."""
    if seconds and seconds < 1:
        return f"{round(seconds * 1000)}ms"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{int(seconds // 60)}m"
    return f"{seconds:g}s"


def _string(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError("expected a string")
    return value


def _choice(*choices: str) -> Callable[[object], str]:
    def parse(value: object) -> str:
        if value not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}")
        return str(value)

    return parse


def _path(value: object) -> Path:
    text = _string(value)
    if not text.startswith("/"):
        raise ValueError("expected an absolute path such as /var/lib/topolet")
    return Path(text)


def _optional_path(value: object) -> Path | None:
    return None if value in ("", None) else _path(value)


def _duration(value: object) -> float:
    seconds = parse_duration(_string(value))
    if seconds <= 0:
        raise ValueError("expected a positive duration such as '10s'")
    return seconds


def _bool(value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError("expected true or false")
    return value


def _count(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError("expected a non-negative integer")
    return value


def _cpus(value: object) -> CPUSet | None:
    if value in ("", None):
        return None
    try:
        return CPUSet.parse(str(value))
    except CPUSetParseError as e:
        raise ValueError(f"expected a cpu list such as '0,1' or '0-3' ({e})") from None


def _address(value: object) -> str:
    text = _string(value)
    m = _ADDRESS.match(text)
    if m is None or int(m["port"]) > 65535:
        raise ValueError("expected HOST:PORT such as 0.0.0.0:9464 (port 0 picks a free one)")
    return text


def _resource_name(value: object) -> str:
    text = _string(value)
    if text and not _RESOURCE.match(text):
        raise ValueError("expected an extended resource name 'domain/name', or '' to disable")
    return text


def _gpu_names(value: object) -> Mapping[str, str]:
    if not isinstance(value, Mapping):
        raise ValueError("expected a mapping of vendor to resource name, e.g. {nvidia: nvidia.com/gpu}")
    out = {}
    for vendor, name in value.items():
        if not isinstance(vendor, str) or not isinstance(name, str) or not _RESOURCE.match(name):
            raise ValueError(f"{vendor!r}: expected a resource name 'domain/name' such as nvidia.com/gpu")
        out[vendor] = name
    return out


def _render(value: object) -> object:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, CPUSet):
        return str(value)
    if value is None:
        return ""
    if isinstance(value, Mapping):
        return dict(value)
    return value


# ------------------------------------------------------------------ the key table
@dataclass(frozen=True)
class ConfigKey:
    """One YAML key: its ``NodeConfig`` attribute, its value parser and its meaning."""

    name: str
    attr: str
    parse: Callable[[object], Any]
    meaning: str
    render: Callable[[Any], object] = _render
    metavar: str = "VALUE"
    flag_name: str = ""
    #: The flag's text is read as YAML (booleans, numbers, mappings), else taken as a string.
    yaml_flag: bool = False

    @property
    def flag(self) -> str:
        return "--" + (self.flag_name or re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "-", self.name).lower())


KEYS: tuple[ConfigKey, ...] = (
    ConfigKey(
        "nodeName",
        "node_name",
        _string,
        "Node name: the NRT object's name. Empty: env NODE_NAME, else the hostname.",
        metavar="NAME",
    ),
    ConfigKey(
        "podSource",
        "pod_source",
        _choice("kubernetes", "standalone"),
        "Where running containers come from: 'kubernetes' (pod watch on this node plus "
        "podresources) or 'standalone' (containers started by 'topolet run').",
        metavar="SOURCE",
    ),
    ConfigKey(
        "kubeconfig",
        "kubeconfig",
        _string,
        "kubeconfig file for the Kubernetes API. Empty: the in-cluster service account.",
        metavar="FILE",
    ),
    ConfigKey(
        "stateDir",
        "state_dir",
        _path,
        "Directory of the cpu_manager_state checkpoint, the agent lock and standalone records.",
        metavar="DIR",
    ),
    ConfigKey(
        "sysfsRoot",
        "sysfs_root",
        _path,
        "Filesystem root holding sys/ and proc/ that the topology is read from.",
        metavar="DIR",
    ),
    ConfigKey(
        "cgroupRoot",
        "cgroup_root",
        _optional_path,
        "cpuset cgroup directory holding the pod cgroups. Empty: /sys/fs/cgroup/cpuset "
        "(v1) or /sys/fs/cgroup (v2).",
        metavar="DIR",
    ),
    ConfigKey(
        "cgroupVersion",
        "cgroup_version",
        _choice("auto", "v1", "v2"),
        "cgroup version: 'auto' uses v1 when its cpuset hierarchy is mounted.",
        metavar="V",
    ),
    ConfigKey(
        "cgroupDriver",
        "cgroup_driver",
        _choice("cgroupfs", "systemd"),
        "Pod cgroup layout, as kubelet's cgroupDriver.",
        metavar="DRIVER",
    ),
    ConfigKey(
        "cpuManagerReconcilePeriod",
        "reconcile_period_s",
        _duration,
        "How often cpusets are checked against the state and stale assignments released "
        "(kubelet: cpuManagerReconcilePeriod).",
        render=format_duration,
        metavar="DURATION",
    ),
    ConfigKey(
        "reservedSystemCPUs",
        "reserved_system_cpus",
        _cpus,
        "CPUs kept for the system and never exclusive, as a cpu list (kubelet: "
        "reservedSystemCPUs). Empty: numReservedCPUs whole CPUs chosen as kubelet does.",
        metavar="LIST",
        flag_name="reserved-cpus",
    ),
    ConfigKey(
        "numReservedCPUs",
        "num_reserved_cpus",
        _count,
        "CPUs reserved when reservedSystemCPUs is empty (kubelet derives it from "
        "kubeReserved + systemReserved cpu; the static policy needs at least 1).",
        metavar="N",
        yaml_flag=True,
    ),
    ConfigKey(
        "topologyManagerPolicy",
        "topology_manager_policy",
        _choice(*POLICIES),
        "kubelet's topologyManagerPolicy, published in the NRT attributes.",
        metavar="POLICY",
    ),
    ConfigKey(
        "topologyManagerScope",
        "topology_manager_scope",
        _choice(*SCOPES),
        "kubelet's topologyManagerScope, published in the NRT attributes.",
        metavar="SCOPE",
    ),
    ConfigKey(
        "devicePluginDir",
        "device_plugin_dir",
        _path,
        "kubelet's device-plugin directory (kubelet.sock and the plugins' sockets).",
        metavar="DIR",
    ),
    ConfigKey(
        "podResourcesSocket",
        "pod_resources_socket",
        _path,
        "kubelet's Pod Resources API socket, read to re-key CPU device-plugin allocations.",
        metavar="FILE",
    ),
    ConfigKey(
        "gpuResourceNames",
        "gpu_resource_names",
        _gpu_names,
        "Extended resource name of each GPU vendor's plugin.",
        metavar="YAML",
        yaml_flag=True,
    ),
    ConfigKey(
        "exclusiveCPUResourceName",
        "exclusive_cpu_resource_name",
        _resource_name,
        "Extended resource of the exclusive-CPU device plugin. Empty: no such plugin.",
        metavar="NAME",
        flag_name="exclusive-cpu-resource-name",
    ),
    ConfigKey(
        "watchUdev",
        "watch_udev",
        _bool,
        "Follow udev GPU add/remove events: health of GPUs and re-discovery.",
        metavar="BOOL",
        yaml_flag=True,
    ),
    ConfigKey(
        "nvml",
        "nvml",
        _choice("auto", "true", "false"),
        "NVIDIA GPUs: NVML (the 'nvidia' extra) for XID health events and NVLink/PCIe link "
        "scores. auto: when it loads; true: refuse to start without it; false: never.",
        metavar="MODE",
    ),
    ConfigKey(
        "publishNRT",
        "publish_nrt",
        _bool,
        "Publish the NodeResourceTopology object also with podSource standalone "
        "(always published with kubernetes).",
        metavar="BOOL",
        yaml_flag=True,
    ),
    ConfigKey(
        "draDriver",
        "dra_driver",
        _bool,
        "Also be DRA driver gpu.topolet.io: publish the GPUs as ResourceSlices and serve "
        "kubelet's DRA plugin (CDI specs under /var/run/cdi); see docs/dra.md.",
        metavar="BOOL",
        yaml_flag=True,
    ),
    ConfigKey(
        "nrtResyncPeriod",
        "nrt_resync_period_s",
        _duration,
        "How often the published NRT object is compared with the API server's copy "
        "(changes are published at once).",
        render=format_duration,
        metavar="DURATION",
    ),
    ConfigKey(
        "metricsBindAddress",
        "metrics_bind_address",
        _address,
        "HOST:PORT of the HTTP endpoint serving /metrics, /healthz and /readyz.",
        metavar="ADDR",
    ),
    ConfigKey(
        "logFormat",
        "log_format",
        _choice("text", "json"),
        "'text' (human-readable) or 'json' (one JSON object per line).",
        metavar="FORMAT",
    ),
)
_BY_NAME = {k.name: k for k in KEYS}


@dataclass(frozen=True)
class NodeConfig:
    """The node agent's configuration; ``NodeConfig()`` has every default."""

    node_name: str = ""
    pod_source: str = "kubernetes"
    kubeconfig: str = ""
    state_dir: Path = DEFAULT_STATE_DIR
    sysfs_root: Path = Path("/")
    cgroup_root: Path | None = None
    cgroup_version: str = "auto"
    cgroup_driver: str = "cgroupfs"
    reconcile_period_s: float = 10.0
    reserved_system_cpus: CPUSet | None = None
    num_reserved_cpus: int = 1
    topology_manager_policy: str = "none"
    topology_manager_scope: str = "container"
    device_plugin_dir: Path = Path("/var/lib/kubelet/device-plugins")
    pod_resources_socket: Path = Path("/var/lib/kubelet/pod-resources/kubelet.sock")
    gpu_resource_names: Mapping[str, str] = field(default_factory=lambda: dict(VENDOR_RESOURCES))
    exclusive_cpu_resource_name: str = "topolet.io/exclusive-cpus"
    watch_udev: bool = True
    nvml: str = "auto"
    publish_nrt: bool = False
    dra_driver: bool = False
    nrt_resync_period_s: float = 60.0
    metrics_bind_address: str = "0.0.0.0:9464"
    log_format: str = "text"

    # ------------------------------------------------------------- building
    @staticmethod
    def from_mapping(data: Mapping[str, object], base: NodeConfig | None = None) -> NodeConfig:
        """*base* (default: all defaults) with the keys of *data*; unknown keys and bad
        values raise :class:`ConfigError` naming the key and the accepted form."""
        if not isinstance(data, Mapping):
            raise ConfigError("<file>", "expected a mapping of configuration keys")
        changes = {}
        for name, value in data.items():
            key = _BY_NAME.get(str(name))
            if key is None:
                raise ConfigError(str(name), "unknown key; known keys: " + ", ".join(sorted(_BY_NAME)))
            try:
                changes[key.attr] = key.parse(value)
            except ValueError as e:
                raise ConfigError(key.name, f"{e}; got {value!r}") from None
        return replace(base or NodeConfig(), **changes)

    @staticmethod
    def load(path: Path) -> NodeConfig:
        """The configuration in YAML file *path* (an empty file means all defaults)."""
        try:
            data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except yaml.YAMLError as e:
            raise ConfigError(str(path), f"not valid YAML: {e}") from e
        return NodeConfig.from_mapping(data if data is not None else {})

    def to_mapping(self) -> dict[str, object]:
        """Every key with its value, in the YAML form :meth:`from_mapping` reads."""
        return {k.name: k.render(getattr(self, k.attr)) for k in KEYS}

    def to_yaml(self, *, comments: bool = True) -> str:
        """The YAML file of this configuration, each key after a comment saying what it means."""
        lines = []
        for key, value in zip(KEYS, self.to_mapping().values(), strict=True):
            if comments:
                lines.append(f"# {key.meaning}")
            text = yaml.safe_dump({key.name: value}, default_flow_style=False, sort_keys=False)
            lines.append(text.rstrip())
        return "\n".join(lines) + "\n"

    # ------------------------------------------------------------ derived
    def effective_node_name(self) -> str:
        return self.node_name or os.environ.get("NODE_NAME") or socket.gethostname()

    @property
    def checkpoint_path(self) -> Path:
        return self.state_dir / CHECKPOINT_NAME

    def cgroup_mount(self) -> Path:
        """The cpuset cgroup directory the pod cgroups live under."""
        if self.cgroup_root is not None:
            return self.cgroup_root
        version = self.cgroup_version
        if version == "auto":
            version = "v1" if (V1_CPUSET / "cpuset.cpus").exists() else "v2"
        return V1_CPUSET if version == "v1" else V2_ROOT

    def host_paths(self) -> tuple[Path, ...]:
        """Every host path the agent reads or writes (for hostPath mounts)."""
        paths = [
            self.sysfs_root / "sys",
            self.sysfs_root / "proc" if self.sysfs_root != Path("/") else None,
            self.cgroup_root if self.cgroup_root is not None else V2_ROOT,
            self.device_plugin_dir,
            self.pod_resources_socket.parent,
            self.state_dir,
            Path("/dev") if self.gpu_resource_names else None,
            Path("/run/udev") if self.watch_udev else None,
            *(DRA_HOST_PATHS if self.dra_driver else ()),
        ]
        return tuple(dict.fromkeys(p for p in paths if p is not None))

    def settings(self) -> NodeSettings:
        """The subset the CPU manager needs, as the short-lived commands use it."""
        return NodeSettings(
            self.sysfs_root, self.state_dir, self.reserved_system_cpus, self.num_reserved_cpus
        )


def add_config_flags(p: argparse.ArgumentParser) -> None:
    """One flag per key of :data:`KEYS` (``--state-dir``, ``--pod-source``, ...); each
    overrides the file's value. Values are given as in YAML."""
    g = p.add_argument_group("configuration (each flag overrides the file's key)")
    defaults = NodeConfig().to_mapping()
    for key in KEYS:
        shown = defaults[key.name]
        flag_is_switch = key.parse is _bool  # "--publish-nrt" alone means true
        g.add_argument(
            key.flag,
            dest=f"cfg_{key.attr}",
            default=None,
            metavar=key.metavar,
            nargs="?" if flag_is_switch else None,
            const="true" if flag_is_switch else None,
            help=f"{key.name}: {key.meaning} (default {shown!r})".replace("%", "%%"),
        )


def flag_overrides(args: argparse.Namespace) -> dict[str, object]:
    """The keys given as flags, values parsed as YAML scalars (``true``, ``{a: b}``)."""
    out: dict[str, object] = {}
    for key in KEYS:
        raw = getattr(args, f"cfg_{key.attr}", None)
        if raw is None:
            continue
        out[key.name] = yaml.safe_load(raw) if key.yaml_flag else raw
    return out


# ------------------------------------------------------- short-lived commands
def detect_cgroup_writer(root: Path | None, version: str, driver: str) -> CpusetWriter:
    """The cpuset writer for this machine: v1 when its cpuset hierarchy is mounted."""
    if version == "auto":
        version = "v1" if (V1_CPUSET / "cpuset.cpus").exists() else "v2"
    if version == "v1":
        return CgroupV1Cpuset(root or V1_CPUSET, driver=driver)  # type: ignore[arg-type]
    return CgroupV2Cpuset(root or V2_ROOT, driver=driver)  # type: ignore[arg-type]


def add_node_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("node settings")
    g.add_argument(
        "--root",
        type=Path,
        default=Path("/"),
        help="filesystem root holding sys/ and proc/ to discover the topology from (default /)",
    )
    g.add_argument(
        "--state-dir",
        type=Path,
        default=DEFAULT_STATE_DIR,
        help=f"where the cpu_manager_state checkpoint lives (default {DEFAULT_STATE_DIR})",
    )
    g.add_argument(
        "--reserved-cpus",
        default=None,
        metavar="LIST",
        help="CPUs kept for the system, as a cpu list ('0,1'); like kubelet's --reserved-cpus",
    )
    g.add_argument(
        "--num-reserved-cpus",
        type=int,
        default=1,
        metavar="N",
        help="whole CPUs reserved when --reserved-cpus is not given, chosen as kubelet "
        "chooses them (default 1: the static policy needs at least one)",
    )


@dataclass(frozen=True)
class NodeSettings:
    root: Path
    state_dir: Path
    reserved_cpus: CPUSet | None
    num_reserved_cpus: int

    @staticmethod
    def from_args(args: argparse.Namespace) -> NodeSettings:
        reserved = None
        if args.reserved_cpus is not None:
            try:
                reserved = CPUSet.parse(args.reserved_cpus)
            except CPUSetParseError as e:
                raise ValueError(f"--reserved-cpus: {e}") from e
        if args.num_reserved_cpus < 0:
            raise ValueError("--num-reserved-cpus: expected a non-negative integer")
        return NodeSettings(args.root, args.state_dir, reserved, args.num_reserved_cpus)

    def topology(self) -> Topology:
        return discover(self.root)

    def policy(self, topo: Topology) -> StaticPolicy:
        n = len(self.reserved_cpus) if self.reserved_cpus is not None else self.num_reserved_cpus
        return StaticPolicy(topo, num_reserved_cpus=n, reserved_cpus=self.reserved_cpus)

    def store(self) -> CheckpointStore:
        return CheckpointStore(self.state_dir / CHECKPOINT_NAME, policy_name="static")


assert {f.name for f in fields(NodeConfig)} == {k.attr for k in KEYS}, "every field has a key"
