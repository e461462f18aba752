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
import reprlib
import socket
import stat
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

from cpumanager.cgroupfs import CgroupV1Cpuset, CgroupV2Cpuset, CpusetWriter
from cpumanager.checkpoint import CheckpointStore
from cpumanager.cpu_topology import CPUTopology
from cpumanager.errors import CPUManagerError, PolicyConfigError
from cpumanager.options import StaticPolicyOptions
from cpumanager.policy_static import StaticPolicy
from deviceplugin.gpu import VENDOR_RESOURCES
from topolet.arg_types import non_negative_int
from topolet.errors import TopoletError
from topology.cpuset import CPUSet, CPUSetParseError
from topology.hint_errors import PolicyOptionError
from topology.hints import PolicyOptions
from topology.model import Topology
from topology.nrt import POLICIES, SCOPES
from topology.sysfs import discover

__all__ = [
    "KEYS",
    "NodeConfigError",
    "ConfigKey",
    "NodeConfig",
    "NodeSettings",
    "add_node_options",
    "check_cgroup_root",
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


class NodeConfigError(TopoletError, ValueError):
    """A configuration key has a bad value, or is not a key at all. ``source`` is the file
    the key came from (empty: not from a file, e.g. a flag)."""

    def __init__(self, key: str, message: str, *, source: str = "") -> None:
        self.key = key
        self.source = source
        super().__init__(f"{source}: {key}: {message}" if source else f"{key}: {message}")


#: A node configuration file is a page of YAML; anything larger is refused unread.
MAX_CONFIG_BYTES = 1024 * 1024
#: Deepest nesting a configuration needs (gpuResourceNames is a mapping in the mapping).
_MAX_DEPTH = 8
_shown = reprlib.Repr()
_shown.maxstring = _shown.maxother = 60
_shown.maxlevel = 3


def _show(value: object) -> str:
    """*value* quoted, bounded in size and depth (an error line stays one short line)."""
    return _shown.repr(value)


class _StrictLoader(yaml.SafeLoader):
    """YAML as a configuration needs it: no aliases (``*name``: no billion laughs), no
    duplicate keys, no nesting deeper than :data:`_MAX_DEPTH`."""

    _depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
            raise yaml.composer.ComposerError(None, None, "aliases (*name) are not accepted here", mark)
        self._depth += 1
        try:
            if self._depth > _MAX_DEPTH:
                mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
                raise yaml.composer.ComposerError(None, None, f"nested deeper than {_MAX_DEPTH} levels", mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[object, object]:
        seen: set[object] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, str | int | float | bool | None):
                continue  # an unhashable key: the base class says so
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {_show(key)}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _yaml_problem(e: yaml.YAMLError) -> str:
    """One line: what is wrong and where (``line 3, column 1``)."""
    if isinstance(e, yaml.MarkedYAMLError) and e.problem_mark is not None:
        mark = e.problem_mark
        return f"{e.problem} at line {mark.line + 1}, column {mark.column + 1}"
    return " ".join(str(e).split())


def parse_yaml(text: str) -> object:
    """*text* as strict YAML (see :class:`_StrictLoader`); ``ValueError`` saying why not."""
    try:
        return yaml.load(text, Loader=_StrictLoader)
    except yaml.YAMLError as e:
        raise ValueError(f"not valid YAML: {_yaml_problem(e)}") from None
    except (ValueError, RecursionError) as e:  # e.g. an integer of more than 4300 digits
        raise ValueError(f"not valid YAML: {' '.join(str(e).split())[:200]}") from None


def _read_config(path: Path) -> str:
    """The text of configuration file *path*: a regular file of at most 1 MiB, UTF-8."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NodeConfigError(str(path), "expected a regular file holding YAML")
        data = os.read(fd, MAX_CONFIG_BYTES + 1)
    finally:
        os.close(fd)
    if len(data) > MAX_CONFIG_BYTES:
        raise NodeConfigError(str(path), f"expected at most {MAX_CONFIG_BYTES} bytes of YAML")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise NodeConfigError(str(path), f"expected UTF-8 text (byte {e.start} is not)") from None


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


def _nvml_mode(value: object) -> str:
    """``auto``, ``true`` or ``false``; YAML's own booleans (``nvml: true``) count too."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return _choice("auto", "true", "false")(value)


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


_OPTION_MAP_MAX = 32


def option_map(value: object) -> dict[str, str]:
    """A policy-options map: a YAML mapping, or kubelet's flag form ``name=value,...``.
    Values are kept as strings (kubelet's type is map[string]string); YAML booleans and
    integers are written back as ``true``/``false``/digits."""
    if value is None or value == "":
        return {}
    items: list[tuple[object, object]]
    if isinstance(value, str):
        items = []
        for part in value.split(","):
            key, eq, text = part.partition("=")
            if not eq or not key.strip():
                raise ValueError(f"{part!r}: expected name=value pairs separated by commas")
            items.append((key.strip(), text.strip()))
    elif isinstance(value, Mapping):
        items = list(value.items())
    else:
        raise ValueError("expected a mapping of option name to value, or 'name=value,...'")
    if len(items) > _OPTION_MAP_MAX:
        raise ValueError(f"expected at most {_OPTION_MAP_MAX} options")
    out: dict[str, str] = {}
    for name, raw in items:
        val = (
            ("true" if raw else "false")
            if isinstance(raw, bool)
            else str(raw)
            if isinstance(raw, int)
            else raw
        )
        if not isinstance(name, str) or not isinstance(val, str):
            raise ValueError(f'{name!r}: expected a string value such as "true"')
        out[name] = val
    return out


def _cpu_manager_options(value: object) -> Mapping[str, str]:
    opts = option_map(value)
    try:
        StaticPolicyOptions.parse(opts, alpha_enabled=True)
    except CPUManagerError as e:
        raise ValueError(str(e)) from e
    return opts


def _topology_manager_options(value: object) -> Mapping[str, str]:
    opts = option_map(value)
    try:
        PolicyOptions.parse(opts)
    except PolicyOptionError as e:
        raise ValueError(str(e)) from e
    return opts


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
        "cpuManagerPolicyOptions",
        "cpu_manager_policy_options",
        _cpu_manager_options,
        "Static policy options, kubelet's names and string values (full-pcpus-only, "
        "distribute-cpus-across-numa, align-by-socket, distribute-cpus-across-cores, "
        "strict-cpu-reservation, prefer-align-cpus-by-uncorecache) and topolet's "
        "fragmentation-aware; a mapping, or as a flag name=value,...",
        metavar="OPTIONS",
    ),
    ConfigKey(
        "topologyManagerPolicy",
        "topology_manager_policy",
        _choice(*POLICIES),
        "kubelet's topologyManagerPolicy: how a container's exclusive CPUs follow its devices' "
        "NUMA nodes (single-numa-node and restricted refuse, best-effort prefers); published in NRT.",
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
        "topologyManagerPolicyOptions",
        "topology_manager_policy_options",
        _topology_manager_options,
        "Topology manager options (prefer-closest-numa-nodes, max-allowable-numa-nodes); "
        "a mapping, or as a flag name=value,...",
        metavar="OPTIONS",
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
        _nvml_mode,
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
    cpu_manager_policy_options: Mapping[str, str] = field(default_factory=dict)
    topology_manager_policy: str = "none"
    topology_manager_scope: str = "container"
    topology_manager_policy_options: Mapping[str, str] = field(default_factory=dict)
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
    def from_mapping(
        data: Mapping[str, object], base: NodeConfig | None = None, *, source: str = "", flags: bool = False
    ) -> NodeConfig:
        """*base* (default: all defaults) with the keys of *data*; unknown keys and bad
        values raise :class:`NodeConfigError` naming the key (the flag, with *flags*), its
        file *source* and the accepted form."""
        if not isinstance(data, Mapping):
            raise NodeConfigError(
                source or "<file>", f"expected a mapping of configuration keys, got {_show(data)}"
            )
        changes = {}
        for name, value in data.items():
            key = _BY_NAME.get(str(name))
            if key is None:
                raise NodeConfigError(
                    _show(name).strip("'"),
                    "unknown key; known keys: " + ", ".join(sorted(_BY_NAME)),
                    source=source,
                )
            try:
                changes[key.attr] = key.parse(value)
            except ValueError as e:
                name_shown = f"{key.flag} ({key.name})" if flags else key.name
                raise NodeConfigError(name_shown, f"{e}; got {_show(value)}", source=source) from None
        return replace(base or NodeConfig(), **changes)

    @staticmethod
    def load(path: Path) -> NodeConfig:
        """The configuration in YAML file *path* (an empty file means all defaults). The
        file is read bounded (:data:`MAX_CONFIG_BYTES`); aliases, duplicate keys and deep
        nesting are refused, each error naming the file."""
        try:
            data = parse_yaml(_read_config(Path(path)))
        except NodeConfigError:
            raise
        except ValueError as e:
            raise NodeConfigError(str(path), str(e)) from None
        return NodeConfig.from_mapping(data if data is not None else {}, source=str(path))  # type: ignore[arg-type]

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
            self.sysfs_root,
            self.state_dir,
            self.reserved_system_cpus,
            self.num_reserved_cpus,
            cpu_manager_policy_options=dict(self.cpu_manager_policy_options),
            topology_manager_policy=self.topology_manager_policy,
            topology_manager_scope=self.topology_manager_scope,
            topology_manager_policy_options=dict(self.topology_manager_policy_options),
        )

    def check(self, topo: Topology, *, source: str = "", flags: Collection[str] = ()) -> None:
        """What can only be checked against the machine, before anything is created: the
        reservation fits *topo*, a standalone ``cgroupRoot`` is a cgroup. Errors name the
        key with its file *source*, or the flag when the key is among *flags*."""

        def name(attr: str) -> str:
            key = next(k for k in KEYS if k.attr == attr)
            if key.name in flags:
                return f"{key.flag} ({key.name})"
            return f"{source}: {key.name}" if source else key.name

        settings = replace(
            self.settings(),
            reserved_name=name("reserved_system_cpus"),
            num_reserved_name=name("num_reserved_cpus"),
        )
        settings.check(topo)
        if self.pod_source == "standalone" and self.cgroup_root is not None:
            v1 = detect_cgroup_writer(None, self.cgroup_version, self.cgroup_driver).root == V1_CPUSET
            check_cgroup_root(self.cgroup_root, v1=v1, name=name("cgroup_root"))


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
    """The keys given as flags, values parsed as YAML scalars (``true``, ``{a: b}``); a
    flag that is not valid YAML raises :class:`NodeConfigError` naming the flag."""
    out: dict[str, object] = {}
    for key in KEYS:
        raw = getattr(args, f"cfg_{key.attr}", None)
        if raw is None:
            continue
        try:
            out[key.name] = parse_yaml(raw) if key.yaml_flag else raw
        except ValueError as e:
            raise NodeConfigError(f"{key.flag} ({key.name})", f"{e}; got {_show(raw)}") from None
    return out


# ------------------------------------------------------- short-lived commands
def detect_cgroup_writer(root: Path | None, version: str, driver: str) -> CpusetWriter:
    """The cpuset writer for this machine: v1 when its cpuset hierarchy is mounted."""
    if version == "auto":
        version = "v1" if (V1_CPUSET / "cpuset.cpus").exists() else "v2"
    if version == "v1":
        return CgroupV1Cpuset(root or V1_CPUSET, driver=driver)  # type: ignore[arg-type]
    return CgroupV2Cpuset(root or V2_ROOT, driver=driver)  # type: ignore[arg-type]


def check_cgroup_root(root: Path, *, v1: bool, name: str = "--cgroup-root") -> None:
    """Refuse *root* unless it is, or would be made directly inside, a cgroup directory
    (one with ``cgroup.procs``; for v1 also ``cpuset.cpus``). Checked before anything is
    created, so a typo never leaves a stray directory behind."""
    need = ("cgroup.procs", "cpuset.cpus") if v1 else ("cgroup.procs",)
    hierarchy = f"the cpuset hierarchy such as {V1_CPUSET}" if v1 else f"the cgroup v2 tree such as {V2_ROOT}"
    if not root.is_absolute():
        raise NodeConfigError(name, f"{str(root)!r} is not absolute; expected a directory in {hierarchy}")
    where = root if root.exists() else root.parent
    if not where.is_dir():
        raise NodeConfigError(name, f"{str(where)!r} is not a directory; expected a directory in {hierarchy}")
    if missing := [f for f in need if not (where / f).exists()]:
        raise NodeConfigError(
            name,
            f"{str(where)!r} is not a cgroup ({missing[0]} missing); expected a directory in {hierarchy}",
        )


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
        type=non_negative_int,
        default=1,
        metavar="N",
        help="whole CPUs reserved when --reserved-cpus is not given, chosen as kubelet "
        "chooses them (default 1: the static policy needs at least one)",
    )
    g.add_argument(
        "--cpu-manager-policy-options",
        default="",
        metavar="NAME=VALUE,...",
        help="static policy options as kubelet's --cpu-manager-policy-options "
        "(e.g. full-pcpus-only=true), plus fragmentation-aware",
    )
    g.add_argument("--topology-manager-policy", default="none", choices=POLICIES)
    g.add_argument("--topology-manager-scope", default="container", choices=SCOPES)
    g.add_argument(
        "--topology-manager-policy-options",
        default="",
        metavar="NAME=VALUE,...",
        help="prefer-closest-numa-nodes=true, max-allowable-numa-nodes=N",
    )


@dataclass(frozen=True)
class NodeSettings:
    root: Path
    state_dir: Path
    reserved_cpus: CPUSet | None
    num_reserved_cpus: int
    #: How the user spelled the two reservation settings (a flag, or a configuration key).
    reserved_name: str = "reservedSystemCPUs"
    num_reserved_name: str = "numReservedCPUs"
    cpu_manager_policy_options: Mapping[str, str] = field(default_factory=dict)
    topology_manager_policy: str = "none"
    topology_manager_scope: str = "container"
    topology_manager_policy_options: Mapping[str, str] = field(default_factory=dict)

    @staticmethod
    def from_args(args: argparse.Namespace) -> NodeSettings:
        reserved = None
        if args.reserved_cpus is not None:
            try:
                reserved = CPUSet.parse(args.reserved_cpus)
            except CPUSetParseError as e:
                raise NodeConfigError("--reserved-cpus", str(e)) from e
        if args.num_reserved_cpus < 0:
            raise NodeConfigError(
                "--num-reserved-cpus", f"expected a non-negative integer, got {args.num_reserved_cpus}"
            )
        opts: dict[str, Mapping[str, str]] = {}
        for flag, parse in (
            ("cpu_manager_policy_options", _cpu_manager_options),
            ("topology_manager_policy_options", _topology_manager_options),
        ):
            try:
                opts[flag] = parse(getattr(args, flag, ""))
            except ValueError as e:
                raise NodeConfigError(f"--{flag.replace('_', '-')}", str(e)) from e
        return NodeSettings(
            args.root,
            args.state_dir,
            reserved,
            args.num_reserved_cpus,
            reserved_name="--reserved-cpus",
            num_reserved_name="--num-reserved-cpus",
            cpu_manager_policy_options=opts["cpu_manager_policy_options"],
            topology_manager_policy=getattr(args, "topology_manager_policy", "none"),
            topology_manager_scope=getattr(args, "topology_manager_scope", "container"),
            topology_manager_policy_options=opts["topology_manager_policy_options"],
        )

    def topology(self) -> Topology:
        """The whole machine, whatever cpuset cgroup the caller runs in."""
        return discover(self.root, whole_machine=True)

    def check(self, topo: Topology) -> None:
        """Refuse a reservation this machine cannot hold, naming the setting (not the
        checkpoint: the checkpoint is fine, the setting is not)."""
        online = topo.online_cpus
        if self.reserved_cpus is not None:
            if missing := self.reserved_cpus - online:
                raise NodeConfigError(
                    self.reserved_name,
                    f'"{self.reserved_cpus}" names CPUs "{missing}" that this machine does not have '
                    f'(online: "{online}"); expected a cpu list within the online CPUs',
                )
        elif self.num_reserved_cpus > len(online):
            raise NodeConfigError(
                self.num_reserved_name,
                f"{self.num_reserved_cpus} CPUs asked for, this machine has {len(online)} "
                f'(online: "{online}"); expected at most {len(online)}',
            )

    def policy(self, topo: Topology) -> StaticPolicy:
        """The static policy with the configured options; a bad option (or one that does
        not fit this machine or topology-manager policy) raises ValueError naming it."""
        self.check(topo)
        n = len(self.reserved_cpus) if self.reserved_cpus is not None else self.num_reserved_cpus
        try:
            options = StaticPolicyOptions.parse(self.cpu_manager_policy_options, alpha_enabled=True)
            return StaticPolicy(
                CPUTopology.from_topology(topo),
                num_reserved_cpus=n,
                reserved_cpus=self.reserved_cpus,
                options=options,
                topology_manager_policy=self.topology_manager_policy,
            )
        except PolicyConfigError as e:
            raise ValueError(f"cpuManagerPolicyOptions: {e}") from e

    def store(self) -> CheckpointStore:
        return CheckpointStore(self.state_dir / CHECKPOINT_NAME, policy_name="static")


assert {f.name for f in fields(NodeConfig)} == {k.attr for k in KEYS}, "every field has a key"
