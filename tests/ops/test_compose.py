"""docker-compose.yml cannot run here (no Docker engine); check what it would run."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml
from driftrec.ops.cli import build_parser
from driftrec.ops.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_services_and_images(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"kafka", "redis", "worker", "embedder", "serve"} <= set(services)
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert services["redis"]["image"].startswith("redis:")
    for name in ("worker", "embedder", "serve"):
        assert services[name]["build"] == "."
    assert (ROOT / "Dockerfile").exists()


def test_ports(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert "9092:9092" in services["kafka"]["ports"]
    assert "6379:6379" in services["redis"]["ports"]
    assert "8000:8000" in services["serve"]["ports"]


def test_driftrec_services_point_at_the_compose_brokers(compose: dict[str, Any]) -> None:
    fields = {f"DRIFTREC_{name.upper()}" for name in Settings.model_fields}
    for name in ("worker", "embedder", "serve"):
        env = compose["services"][name]["environment"]
        assert env["DRIFTREC_KAFKA_BOOTSTRAP"] == "kafka:9092"
        assert env["DRIFTREC_REDIS_URL"].startswith("redis://redis:6379")
        assert set(env) <= fields, f"{name} sets variables Settings does not know"


def test_every_command_is_a_real_driftrec_subcommand(compose: dict[str, Any]) -> None:
    parser = build_parser()
    for name, service in compose["services"].items():
        if "build" not in service:
            continue
        command = service["command"]
        argv = command if isinstance(command, list) else shlex.split(command)
        args = parser.parse_args(argv)  # exits (fails the test) on an unknown command or flag
        assert args.command == argv[0], name
