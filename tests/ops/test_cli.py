"""The `driftrec` command surface: flags, errors and exit codes."""

from __future__ import annotations

import pytest
from driftrec.ops.cli import build_parser, main
from driftrec.ops.settings import Settings


def test_config_lists_every_setting(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config"]) == 0
    out = capsys.readouterr().out
    for name in Settings.model_fields:
        assert f"DRIFTREC_{name.upper()}" in out


def test_config_hides_secrets(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DRIFTREC_ADMIN_TOKEN", "s3cret-value")
    from driftrec.ops import settings

    settings.get_settings.cache_clear()
    try:
        assert main(["config"]) == 0
    finally:
        settings.get_settings.cache_clear()
    assert "s3cret-value" not in capsys.readouterr().out


@pytest.mark.parametrize("speed", ["0", "-2", "fast"])
def test_replay_rejects_a_bad_speed(speed: str) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["replay", "default", "--speed", speed])


def test_replay_speed_forms() -> None:
    assert build_parser().parse_args(["replay", "x", "--speed", "max"]).speed is None
    assert build_parser().parse_args(["replay", "x", "--speed", "60"]).speed == 60.0


def test_unknown_format_is_a_clear_error(
    capsys: pytest.CaptureFixture[str], tmp_path: object
) -> None:
    assert main(["replay", "/nonexistent/log.csv", "--quiet"]) == 2
    assert "driftrec: error:" in capsys.readouterr().err


def test_models_show_needs_a_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "show"]) == 2
    assert "needs a VERSION" in capsys.readouterr().err


def test_learner_settings_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from driftrec.online_update.training import learner_config

    monkeypatch.setenv("DRIFTREC_LEARNER_MICRO_BATCH", "32")
    monkeypatch.setenv("DRIFTREC_LEARNER_LR_WIDE", "0.05")
    monkeypatch.setenv("DRIFTREC_MODEL_ARCH", "ple")
    settings = Settings()
    config = learner_config(settings, text_dim=384)  # what the trainer agent builds
    assert (config.micro_batch, config.lr_wide, config.model.arch) == (32, 0.05, "ple")
    assert main(["config"]) == 0
    assert "DRIFTREC_LEARNER_MICRO_BATCH" in capsys.readouterr().out
