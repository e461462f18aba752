"""``topolet extender``: the kube-scheduler HTTP extender (filter, prioritize, bind).

NRT data comes from a directory of YAML files (``--nrt-dir``, reloaded on change) or from
the Kubernetes API (``--kubeconfig FILE``, or the in-cluster service account when neither
is given), where the extender also binds pods and watches pod deletions. Point a
KubeSchedulerConfiguration extender's ``urlPrefix`` at ``http://ADDR/PREFIX``.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from scheduler.cache import NRTCache
from scheduler.errors import SchedulerError
from scheduler.extender import DEFAULT_MAX_BODY, ExtenderServer
from scheduler.score import SCORING_STRATEGIES
from scheduler.service import ExtenderCore
from scheduler.views import FIT_MODES
from topolet.cli import CommandError, common_options

log = logging.getLogger("topolet.extender")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "extender",
        parents=[common_options()],
        help="serve the topology-aware kube-scheduler extender",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--listen",
        default="0.0.0.0:8888",
        metavar="ADDR",
        help="HOST:PORT to serve on (default 0.0.0.0:8888)",
    )
    p.add_argument("--path-prefix", default="", metavar="P", help="URL path prefix, e.g. /topolet")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--nrt-dir", type=Path, metavar="DIR", help="read NRT objects from YAML files in DIR")
    source.add_argument(
        "--kubeconfig",
        metavar="FILE",
        help="use the Kubernetes API with this kubeconfig (default: in-cluster config)",
    )
    p.add_argument(
        "--strategy",
        choices=sorted(SCORING_STRATEGIES),
        default="least-numa-nodes",
        help="prioritize strategy (default least-numa-nodes)",
    )
    p.add_argument(
        "--fit",
        choices=FIT_MODES,
        default="kubelet",
        help="filter rules: kubelet's Topology Manager (default) or NodeResourceTopologyMatch's",
    )
    p.add_argument(
        "--reservation-timeout-s",
        type=float,
        default=120.0,
        metavar="N",
        help="drop a bound pod's reservation after N seconds if no NRT update accounted for it",
    )
    p.add_argument(
        "--max-body-bytes",
        type=int,
        default=DEFAULT_MAX_BODY,
        metavar="N",
        help=f"refuse request bodies above N bytes (default {DEFAULT_MAX_BODY})",
    )
    p.set_defaults(func=run)


def _address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise CommandError(f"--listen: expected HOST:PORT such as 0.0.0.0:8888, got {text!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


def _kubernetes(args: argparse.Namespace, cache: NRTCache, core: ExtenderCore) -> None:
    from kubernetes import client, config  # imported only when the API is used

    from scheduler.sources import KubernetesBinder, KubernetesSource

    try:
        if args.kubeconfig:
            config.load_kube_config(config_file=args.kubeconfig)
        else:
            config.load_incluster_config()
    except config.ConfigException as err:
        raise CommandError(
            f"no Kubernetes configuration ({err}); pass --kubeconfig FILE or --nrt-dir DIR"
        ) from err
    api = client.ApiClient()
    core.binder = KubernetesBinder(api)
    KubernetesSource(api, cache, core.forget_pod).start()


def run(args: argparse.Namespace) -> int:
    if args.reservation_timeout_s <= 0:
        raise CommandError("--reservation-timeout-s: expected a positive number of seconds")
    cache = NRTCache(reservation_timeout_s=args.reservation_timeout_s)
    try:
        core = ExtenderCore(cache, fit_mode=args.fit, strategy=args.strategy)
        if args.nrt_dir is not None:
            from scheduler.sources import DirectorySource

            DirectorySource(args.nrt_dir, cache).start()
        else:
            _kubernetes(args, cache, core)
    except SchedulerError as err:
        raise CommandError(str(err)) from err
    server = ExtenderServer(
        core, _address(args.listen), path_prefix=args.path_prefix, max_body=args.max_body_bytes
    )
    log.warning("topolet extender serving %s (fit %s, strategy %s)", server.url, args.fit, args.strategy)
    try:
        server.serve_forever()
    finally:
        server.stop()
    return 0
