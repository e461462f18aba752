"""Static policy options, parsed from kubelet's ``--cpu-manager-policy-options`` map.

Values are strings, read as Go's ``strconv.ParseBool`` reads them. Unknown names,
options of a maturity level that is not enabled, bad values and incompatible pairs are
rejected with a :class:`PolicyConfigError` that names the option and the accepted forms.
Besides kubelet's options there is topolet's own ``fragmentation-aware`` (maturity
``topolet``: no kubelet feature gate applies to it; see :mod:`cpumanager.fragmentation`).
Pure, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

from cpumanager.cpu_topology import CPUTopology
from cpumanager.errors import PolicyConfigError

__all__ = [
    "ALIGN_BY_SOCKET",
    "DISTRIBUTE_CPUS_ACROSS_CORES",
    "DISTRIBUTE_CPUS_ACROSS_NUMA",
    "FRAGMENTATION_AWARE",
    "FULL_PCPUS_ONLY",
    "OPTION_MATURITY",
    "PREFER_ALIGN_BY_L3",
    "STRICT_CPU_RESERVATION",
    "StaticPolicyOptions",
]

FULL_PCPUS_ONLY = "full-pcpus-only"
DISTRIBUTE_CPUS_ACROSS_NUMA = "distribute-cpus-across-numa"
ALIGN_BY_SOCKET = "align-by-socket"
DISTRIBUTE_CPUS_ACROSS_CORES = "distribute-cpus-across-cores"
STRICT_CPU_RESERVATION = "strict-cpu-reservation"
#: kubelet's name for the option; topolet calls the cache it aligns to L3 (docs/glossary.md).
PREFER_ALIGN_BY_L3 = "prefer-align-cpus-by-uncorecache"
FRAGMENTATION_AWARE = "fragmentation-aware"

Maturity = Literal["alpha", "beta", "ga", "topolet"]

#: Maturity of each option as of kubelet v1.32-v1.34 (policy_options.go): alpha options
#: need the CPUManagerPolicyAlphaOptions gate, beta ones CPUManagerPolicyBetaOptions
#: (on by default). ``topolet`` options are this project's own and need no gate.
OPTION_MATURITY: Mapping[str, Maturity] = MappingProxyType(
    {
        FULL_PCPUS_ONLY: "ga",
        DISTRIBUTE_CPUS_ACROSS_NUMA: "beta",
        ALIGN_BY_SOCKET: "alpha",
        DISTRIBUTE_CPUS_ACROSS_CORES: "alpha",
        STRICT_CPU_RESERVATION: "beta",
        PREFER_ALIGN_BY_L3: "beta",
        FRAGMENTATION_AWARE: "topolet",
    }
)

#: Pairs of options that cannot be on together.
INCOMPATIBLE: tuple[tuple[str, str], ...] = (
    (FULL_PCPUS_ONLY, DISTRIBUTE_CPUS_ACROSS_CORES),
    (DISTRIBUTE_CPUS_ACROSS_NUMA, DISTRIBUTE_CPUS_ACROSS_CORES),
    (PREFER_ALIGN_BY_L3, DISTRIBUTE_CPUS_ACROSS_CORES),
    (PREFER_ALIGN_BY_L3, DISTRIBUTE_CPUS_ACROSS_NUMA),
)

_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})


def parse_bool(name: str, value: str) -> bool:
    """Read *value* as Go's ``strconv.ParseBool`` does."""
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise PolicyConfigError(
        f'bad value for option "{name}": "{value}"',
        "use true or false (also accepted: 1, t, T, TRUE, True, 0, f, F, FALSE, False)",
    )


@dataclass(frozen=True, slots=True)
class StaticPolicyOptions:
    """The static policy's switches (all off by default)."""

    full_physical_cpus_only: bool = False
    """``full-pcpus-only``: only whole physical cores are handed out."""
    distribute_cpus_across_numa: bool = False
    """``distribute-cpus-across-numa``: spread multi-NUMA requests evenly."""
    align_by_socket: bool = False
    """``align-by-socket``: widen a NUMA hint to the whole sockets it touches."""
    distribute_cpus_across_cores: bool = False
    """``distribute-cpus-across-cores``: prefer one thread per core (spread strategy)."""
    strict_cpu_reservation: bool = False
    """``strict-cpu-reservation``: keep reserved CPUs out of the shared pool too."""
    prefer_align_by_l3: bool = False
    """``prefer-align-cpus-by-uncorecache``: best-effort packing into L3 caches."""
    fragmentation_aware: bool = False
    """``fragmentation-aware`` (topolet): best-fit NUMA node / socket, keeping free ones whole."""

    @staticmethod
    def parse(
        options: Mapping[str, str], *, alpha_enabled: bool = False, beta_enabled: bool = True
    ) -> StaticPolicyOptions:
        """Parse the kubelet options map; raise :class:`PolicyConfigError` when invalid."""
        values: dict[str, bool] = {}
        for name, value in options.items():
            maturity = OPTION_MATURITY.get(name)
            if maturity is None:
                raise PolicyConfigError(
                    f'unknown CPU Manager Policy option: "{name}"',
                    f"valid options are {', '.join(sorted(OPTION_MATURITY))}",
                )
            _check_gate(name, maturity, alpha_enabled=alpha_enabled, beta_enabled=beta_enabled)
            values[name] = parse_bool(name, value)
        for a, b in INCOMPATIBLE:
            if values.get(a) and values.get(b):
                raise PolicyConfigError(
                    f"static policy options {a} and {b} can not be used at the same time",
                    "turn one of them off",
                )
        return StaticPolicyOptions(
            full_physical_cpus_only=values.get(FULL_PCPUS_ONLY, False),
            distribute_cpus_across_numa=values.get(DISTRIBUTE_CPUS_ACROSS_NUMA, False),
            align_by_socket=values.get(ALIGN_BY_SOCKET, False),
            distribute_cpus_across_cores=values.get(DISTRIBUTE_CPUS_ACROSS_CORES, False),
            strict_cpu_reservation=values.get(STRICT_CPU_RESERVATION, False),
            prefer_align_by_l3=values.get(PREFER_ALIGN_BY_L3, False),
            fragmentation_aware=values.get(FRAGMENTATION_AWARE, False),
        )

    def enabled(self) -> list[str]:
        """The names of the options that are on, in kubelet's spelling."""
        names = {
            FULL_PCPUS_ONLY: self.full_physical_cpus_only,
            DISTRIBUTE_CPUS_ACROSS_NUMA: self.distribute_cpus_across_numa,
            ALIGN_BY_SOCKET: self.align_by_socket,
            DISTRIBUTE_CPUS_ACROSS_CORES: self.distribute_cpus_across_cores,
            STRICT_CPU_RESERVATION: self.strict_cpu_reservation,
            PREFER_ALIGN_BY_L3: self.prefer_align_by_l3,
            FRAGMENTATION_AWARE: self.fragmentation_aware,
        }
        return [n for n, on in names.items() if on]

    def validate_for(self, topo: CPUTopology, topology_manager_policy: str = "none") -> None:
        """Reject options that do not fit this machine or topology-manager policy."""
        if not self.align_by_socket:
            return
        if topology_manager_policy == "single-numa-node":
            raise PolicyConfigError(
                # kubelet's words, its misspelling included, so the message can be searched for
                f"Topolgy manager single-numa-node policy is incompatible with CPUManager "
                f"{ALIGN_BY_SOCKET} policy option",
                f"turn {ALIGN_BY_SOCKET} off or use another topology manager policy",
            )
        if topo.declared_sockets > topo.declared_numa_nodes:
            raise PolicyConfigError(
                "Align by socket is not compatible with hardware where number of sockets are more "
                "than number of NUMA",
                f"turn {ALIGN_BY_SOCKET} off on this machine",
            )


def _check_gate(name: str, maturity: Maturity, *, alpha_enabled: bool, beta_enabled: bool) -> None:
    if maturity == "alpha" and not alpha_enabled:
        raise PolicyConfigError(
            f'CPU Manager Policy Alpha-level Options not enabled, but option "{name}" provided',
            "enable the CPUManagerPolicyAlphaOptions feature gate or remove the option",
        )
    if maturity == "beta" and not beta_enabled:
        raise PolicyConfigError(
            f'CPU Manager Policy Beta-level Options not enabled, but option "{name}" provided',
            "enable the CPUManagerPolicyBetaOptions feature gate or remove the option",
        )
