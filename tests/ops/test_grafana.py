"""The Grafana board and the Prometheus setup in docker-compose.yml are built on exactly
the series the worker exports (Docker cannot run here: check what it would load)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from driftrec.stream import WorkerMetrics

ROOT = Path(__file__).resolve().parents[2]
BOARD = ROOT / "ops" / "grafana" / "dashboards" / "driftrec-worker.json"
NAME = re.compile(r"\bdriftrec_[a-z0-9_]+")


def queries(board: dict[str, Any]) -> list[str]:
    exprs = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    return exprs + [a["expr"] for a in board["annotations"]["list"] if "expr" in a]


@pytest.fixture(scope="module")
def board() -> dict[str, Any]:
    return json.loads(BOARD.read_text())


def test_every_queried_metric_is_exported_by_the_worker(board: dict[str, Any]) -> None:
    exported = WorkerMetrics().exported_names()
    used = {name for expr in queries(board) for name in NAME.findall(expr)}
    assert used, "the board queries nothing"
    assert used <= exported, (
        f"the board queries series the worker does not export: {sorted(used - exported)}"
    )


def test_every_worker_series_is_on_the_board(board: dict[str, Any]) -> None:
    used = {name for expr in queries(board) for name in NAME.findall(expr)}
    families = {family.name for family in WorkerMetrics().registry.collect()}
    unused = {f for f in families if not any(u.startswith(f) for u in used)}
    assert not unused, f"exported but not drawn: {sorted(unused)}"


def test_compose_runs_prometheus_on_the_worker_and_grafana_on_the_board() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert services["worker"]["environment"]["DRIFTREC_METRICS_HOST"] == "0.0.0.0"
    mounts = services["prometheus"]["volumes"] + services["grafana"]["volumes"]
    for mount in mounts:
        assert (ROOT / mount.split(":")[0]).exists(), mount
    scrape = yaml.safe_load((ROOT / "ops" / "prometheus" / "prometheus.yml").read_text())
    targets = {
        t for job in scrape["scrape_configs"] for c in job["static_configs"] for t in c["targets"]
    }
    port = str(services["worker"]["expose"][0])
    assert f"worker:{port}" in targets
    from driftrec.ops.settings import Settings

    assert Settings.model_fields["metrics_port"].default == int(port)
