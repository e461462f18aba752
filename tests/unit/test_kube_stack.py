"""The shipped scheduler deployment, as the e2e tests and ``bench scheduler`` run it."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from bench.kube_stack import (
    DEFAULT_DEPLOY,
    extender_prefix,
    shipped_extender_args,
    shipped_scheduler_config,
)
from bench.scheduler_throughput import metric_sum


def _shipped() -> Any:
    docs = yaml.safe_load_all((DEFAULT_DEPLOY / "scheduler" / "scheduler-config.yaml").read_text())
    cm = next(d for d in docs if d and d.get("kind") == "ConfigMap")
    loaded: Any = yaml.safe_load(cm["data"]["scheduler-config.yaml"])
    return loaded


def test_scheduler_config_changes_only_the_extender_address_and_the_kubeconfig() -> None:
    got = shipped_scheduler_config(DEFAULT_DEPLOY, "127.0.0.1:4321", Path("/k/conf"))
    want = copy.deepcopy(_shipped())
    ext = want["extenders"][0]
    assert got["extenders"][0]["urlPrefix"] == "http://127.0.0.1:4321" + extender_prefix(want)
    ext["urlPrefix"] = got["extenders"][0]["urlPrefix"]
    want.setdefault("clientConnection", {})["kubeconfig"] = "/k/conf"
    assert got == want


def test_extender_args_change_only_listen() -> None:
    args = shipped_extender_args(DEFAULT_DEPLOY, "127.0.0.1:9")
    assert args[0] == "extender"
    assert [a for a in args if a.startswith("--listen")] == ["--listen=127.0.0.1:9"]
    assert "--path-prefix=" + extender_prefix(_shipped()) in args


def test_metric_sum_adds_the_samples_whose_labels_match() -> None:
    text = "\n".join(
        [
            "# HELP x_total things",
            'x_total{profile="a",result="scheduled"} 3',
            'x_total{profile="b",result="scheduled"} 4',
            'x_total{profile="a",result="error"} 5',
            "x_total_other 100",
        ]
    )
    assert metric_sum(text, "x_total", {"result": "scheduled"}) == 7
    assert metric_sum(text, "x_total", {"profile": "a"}) == 8
    assert metric_sum(text, "y_total") == 0
