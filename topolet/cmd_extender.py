"""``topolet extender``: the kube-scheduler HTTP extender (filter, prioritize, bind).

NRT data comes from a directory of YAML files (``--nrt-dir``, reloaded on change) or from
the Kubernetes API (``--kubeconfig FILE``, or the in-cluster service account when neither
is given), where the extender also binds pods and watches pod deletions. Point a
KubeSchedulerConfiguration extender's ``urlPrefix`` at ``http://ADDR/PREFIX``.

With ``--workers N`` (N > 1), N worker processes answer on the same port, each with its
own NRT source and caches; binds and reservations go through this process, which
coordinates them (see :mod:`scheduler.workers`).
"""

from __future__ import annotations

import argparse
import logging
import signal
from collections.abc import Callable
from pathlib import Path

from scheduler.cache import NRTCache
from scheduler.errors import SchedulerError
from scheduler.extender import DEFAULT_MAX_BODY, DEFAULT_SERVER, SERVERS, ExtenderServer, normalise_prefix
from scheduler.score import SCORING_STRATEGIES
from scheduler.service import ExtenderCore
from scheduler.views import FIT_MODES
from topolet.cli import CommandError, common_options
from topolet.help_text import plain

log = logging.getLogger("topolet.extender")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "extender",
        parents=[common_options()],
        help="serve the topology-aware kube-scheduler extender",
        description=plain(__doc__),
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
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="serve from N processes sharing the port (SO_REUSEPORT); binds and reservations "
        "stay in one coordinating process (default 1)",
    )
    p.add_argument(
        "--server",
        choices=SERVERS,
        default=DEFAULT_SERVER,
        help=f"HTTP server: uvicorn (httptools/llhttp parser on uvloop) or the hand-written builtin "
        f"HTTP/1.1 server; both enforce the same limits (default {DEFAULT_SERVER})",
    )
    p.set_defaults(func=run)


def _address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise CommandError(f"--listen: expected HOST:PORT such as 0.0.0.0:8888, got {text!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


def _kubernetes(args: argparse.Namespace, cache: NRTCache, core: ExtenderCore) -> None:
    from kube.client import api_client  # imported only when the API is used
    from kube.errors import KubeConfigError
    from scheduler.sources import KubernetesBinder, KubernetesSource

    try:
        api = api_client(args.kubeconfig or "")
    except KubeConfigError as err:
        raise CommandError(
            f"no Kubernetes configuration ({err}); pass --kubeconfig FILE or --nrt-dir DIR"
        ) from err
    core.binder = KubernetesBinder(api)
    source = KubernetesSource(api, cache, on_pod=core.pod_seen, claims=core.claims)
    core.synced = source.synced
    source.start()


def _factory(args: argparse.Namespace) -> Callable[[], ExtenderCore]:
    """Builds one process's cache, core and NRT source (the API source also binds)."""

    def build() -> ExtenderCore:
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
        return core

    return build


def run(args: argparse.Namespace) -> int:
    if args.reservation_timeout_s <= 0:
        raise CommandError("--reservation-timeout-s: expected a positive number of seconds")
    if args.workers < 1:
        raise CommandError(f"--workers: expected a positive number of processes, got {args.workers}")
    if args.nrt_dir is not None and not args.nrt_dir.is_dir():
        raise CommandError(f"--nrt-dir {args.nrt_dir}: not a directory")
    address = _address(args.listen)
    if args.workers > 1:
        return _run_workers(args, address)
    server = ExtenderServer(
        _factory(args)(),
        address,
        path_prefix=args.path_prefix,
        max_body=args.max_body_bytes,
        server=args.server,
    )
    log.warning(
        "topolet extender serving %s (fit %s, strategy %s, %s server)",
        server.url,
        args.fit,
        args.strategy,
        args.server,
    )
    try:
        server.serve_forever()
    finally:
        server.stop()
    return 0


def _run_workers(args: argparse.Namespace, address: tuple[str, int]) -> int:
    from scheduler.workers import WorkerPool

    pool = WorkerPool(
        args.workers,
        address,
        _factory(args),
        path_prefix=args.path_prefix,
        max_body=args.max_body_bytes,
        server=args.server,
    )

    def terminate(signum: int, frame: object) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, terminate)  # stop the workers on the way out
    try:
        pool.start()
        host, port = pool.address
        log.warning(
            "topolet extender serving http://%s:%d%s with %d workers (fit %s, strategy %s, %s server)",
            host,
            port,
            normalise_prefix(args.path_prefix),
            args.workers,
            args.fit,
            args.strategy,
            args.server,
        )
        pool.serve_forever()
    except SchedulerError as err:
        raise CommandError(str(err)) from err
    finally:
        pool.stop()
    return 0
