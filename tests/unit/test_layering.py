"""The layering contracts of pyproject.toml ``[tool.importlinter]`` hold for the repository,
and they can fail: a copy of the packages with one forbidden import added is rejected by the
very same contracts."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LINT_IMPORTS = shutil.which("lint-imports") or str(Path(sys.executable).with_name("lint-imports"))


def _lint_imports(cwd: Path, config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [LINT_IMPORTS, "--config", str(config), "--no-cache", "--no-logo"],
        cwd=cwd,
        env={"PYTHONPATH": str(cwd), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _config() -> dict[str, object]:
    with (REPO / "pyproject.toml").open("rb") as f:
        section: dict[str, object] = tomllib.load(f)["tool"]["importlinter"]
    return section


def _module_path(root: Path, module: str) -> Path:
    return root.joinpath(*module.split(".")).with_suffix(".py")


def test_repository_keeps_its_layers() -> None:
    result = _lint_imports(REPO, REPO / "pyproject.toml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "BROKEN" not in result.stdout


@pytest.fixture
def package_copy(tmp_path: Path) -> Path:
    """The repository's root packages and pyproject.toml, copied; every module a contract
    names that does not exist yet is created empty so that only imports are judged."""
    config = _config()
    roots = [str(r) for r in config["root_packages"]]  # type: ignore[attr-defined]
    for root in roots:
        shutil.copytree(REPO / root, tmp_path / root, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    for contract in config["contracts"]:  # type: ignore[attr-defined]
        named = [*contract.get("source_modules", []), *contract.get("forbidden_modules", [])]
        for module in (m for m in named if m.split(".")[0] in roots):
            path = _module_path(tmp_path, module)
            if not path.exists() and not (tmp_path / module.replace(".", "/")).is_dir():
                path.write_text('"""placeholder"""\n')
    return tmp_path


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        pytest.param(
            "topology._violation",
            "import cpumanager",
            "topology imports nothing of ours",
            id="topology-imports-cpumanager",
        ),
        pytest.param(
            "scheduler._violation",
            "from cpumanager import __name__ as _n",
            "scheduler imports only topology and kube",
            id="scheduler-imports-cpumanager",
        ),
        pytest.param(
            "cpumanager._violation",
            "import deviceplugin",
            "cpumanager may import only topology and kube",
            id="cpumanager-imports-deviceplugin",
        ),
        pytest.param(
            "kube._violation",
            "import cpumanager",
            "kube may import only topology",
            id="kube-imports-cpumanager",
        ),
        pytest.param(
            "scheduler._violation",
            "import kubernetes",
            "only kube imports the kubernetes client",
            id="scheduler-imports-kubernetes",
        ),
        pytest.param(
            "bench._violation",
            "import topolet",
            "nothing imports the composition root",
            id="bench-imports-topolet",
        ),
        pytest.param(
            "topology.model",
            "import subprocess",
            "topology pure core does no I/O",
            id="pure-model-imports-subprocess",
        ),
    ],
)
def test_contract_detects_forbidden_import(package_copy: Path, module: str, line: str, contract: str) -> None:
    path = _module_path(package_copy, module)
    existing = path.read_text() if path.exists() else '"""A module that breaks a layer."""\n'
    path.write_text(existing + f"\n{line}\n")

    result = _lint_imports(package_copy, package_copy / "pyproject.toml")

    assert result.returncode != 0
    broken = [ln for ln in result.stdout.splitlines() if "BROKEN" in ln]
    assert any(contract in ln for ln in broken), result.stdout
    assert module in result.stdout
