"""Regenerate the Python gRPC modules from the ``api.proto`` files beside this script.

Run ``python -m deviceplugin.api.generate`` from the repository root after editing a
proto; ``--check`` exits 1 when the committed modules differ from a fresh generation.
The protos are compiled with the repository root as include path, so each ``api.proto``
keeps its own module path (both files have the same name).
"""

from __future__ import annotations

import argparse
import filecmp
import sys
import tempfile
from pathlib import Path

PROTOS = (
    "deviceplugin/api/v1beta1/api.proto",
    "deviceplugin/api/podresources/v1/api.proto",
    "deviceplugin/api/dra/v1/api.proto",
    "deviceplugin/api/dra/v1beta1/api.proto",
    "deviceplugin/api/pluginregistration/v1/api.proto",
)
OUTPUTS = ("api_pb2.py", "api_pb2.pyi", "api_pb2_grpc.py")


def generate(repo: Path, out: Path) -> None:
    from grpc_tools import protoc  # imported late: a build-time tool only

    for proto in PROTOS:
        args = [
            "grpc_tools.protoc",
            f"-I{repo}",
            f"--python_out={out}",
            f"--pyi_out={out}",
            f"--grpc_python_out={out}",
            str(repo / proto),
        ]
        if protoc.main(args) != 0:
            raise RuntimeError(f"protoc failed on {proto}")


def differences(repo: Path) -> list[str]:
    with tempfile.TemporaryDirectory() as tmp:
        generate(repo, Path(tmp))
        diffs = []
        for proto in PROTOS:
            folder = Path(proto).parent
            for name in OUTPUTS:
                fresh, committed = Path(tmp) / folder / name, repo / folder / name
                if not committed.exists() or not filecmp.cmp(fresh, committed, shallow=False):
                    diffs.append(str(folder / name))
        return diffs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="only report differences")
    args = parser.parse_args(argv)
    repo = Path(__file__).resolve().parents[2]
    if args.check:
        diffs = differences(repo)
        for d in diffs:
            print(f"out of date: {d}", file=sys.stderr)
        return 1 if diffs else 0
    generate(repo, repo)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
