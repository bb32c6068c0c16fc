"""`driftrec eval` end to end on a tiny synthetic log: the table, the PNG and the JSON line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from driftrec.core.errors import ConfigError
from driftrec.online_update.evaluation.runner import METRICS, SYSTEMS
from driftrec.online_update.training import learner_config
from driftrec.ops.eval_cmd import format_table, run_eval, split_options
from driftrec.ops.settings import Settings

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(text_model="hashing:64", data_dir=tmp_path / "state")


def test_eval_prints_a_table_writes_a_png_and_ends_with_the_json_line(
    settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    options = {
        "n_events": "4000",
        "n_users": "300",
        "n_initial_items": "100",
        "eval.periodic_every": "1000",
        "eval.periodic_window": "1500",
        "eval.periodic_epochs": "1",
        "eval.rolling_window": "500",
    }
    plot = tmp_path / "out" / "auc.png"
    code = run_eval("default", "synthetic", 4000, "mmoe", True, plot, options, settings)
    assert code == 0
    lines = capsys.readouterr().out.strip().splitlines()
    result = json.loads(lines[-1])
    assert set(result) == {
        "events", "examples", "drift_points", "oracle_click_auc", "systems", "learner", "windows"
    } and result["events"] == 4000  # fmt: skip
    assert list(result["systems"]) == list(SYSTEMS)
    oracle = result["oracle_click_auc"]
    assert 0.6 < oracle < 1.0  # the generator's own click probabilities rank well
    for name, metrics in result["systems"].items():
        assert list(metrics) == list(METRICS), name
        assert 0.0 < metrics["click_auc"] < 1.0 and metrics["click_logloss"] > 0.0
        assert metrics["post_drift_click_auc"] is not None  # the synthetic log drifts
        share = (metrics["click_auc"] - 0.5) / (oracle - 0.5)
        assert metrics["oracle_share"] == pytest.approx(share, abs=2e-4)
    assert set(result["windows"]) == {*SYSTEMS, "oracle"}
    window = result["windows"]["online"]
    assert len(window["event"]) == len(window["click_auc"]) > 1
    # The learner reported is the one the trainer builds from the same settings.
    trainer_config = learner_config(settings, text_dim=64)
    assert result["learner"]["fingerprint"] == trainer_config.fingerprint()
    assert result["learner"]["config"] == trainer_config.to_dict()
    for river in ("river_lr", "river_fm"):
        assert result["systems"][river]["conversion_auc"] is None
        assert result["systems"][river]["dwell_mae"] is None
    assert result["systems"]["online"]["dwell_mae"] > 0.0
    assert any(line.startswith("online_no_text ") for line in lines)
    assert plot.read_bytes()[:8] == PNG
    assert list((settings.data_dir / "text-cache").iterdir())  # item vectors were cached


def test_other_formats_have_no_drift_points(
    settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "log.jsonl"
    rows = []
    for i in range(60):
        ts = 1_700_000_000 + 10 * i
        rows.append(
            {"type": "impression", "user_id": f"u{i % 7}", "item_id": f"i{i % 5}", "ts": ts}
        )
        if i % 3 == 0:
            rows.append(
                {"type": "click", "user_id": f"u{i % 7}", "item_id": f"i{i % 5}", "ts": ts + 1}
            )
    log.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    options = {"eval.systems": "online,river_lr", "eval.batch_size": "16"}
    tuned = settings.model_copy(update={"learner_micro_batch": 8, "learner_lr_wide": 0.05})
    assert run_eval(str(log), None, None, "ple", True, None, options, tuned) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert list(result["systems"]) == ["online", "river_lr"]
    assert result["events"] == len(rows)
    assert all(m["post_drift_click_auc"] is None for m in result["systems"].values())
    assert result["oracle_click_auc"] is None  # only the synthetic log knows the truth
    assert all(m["oracle_share"] is None for m in result["systems"].values())
    config = result["learner"]["config"]  # --model and the settings reach the learner
    assert (config["model"]["arch"], config["micro_batch"], config["lr_wide"]) == ("ple", 8, 0.05)


def test_eval_options_are_parsed_and_checked() -> None:
    config, reader = split_options({"eval.seed": "3", "eval.static_share": "0.5", "seed": "9"})
    assert (config.seed, config.static_share, reader) == (3, 0.5, {"seed": "9"})
    with pytest.raises(ConfigError, match=r"unknown option eval\.sed"):
        split_options({"eval.sed": "1"})
    with pytest.raises(ConfigError, match="takes a int"):
        split_options({"eval.batch_size": "many"})


def test_bad_arguments_fail_before_any_work(settings: Settings) -> None:
    with pytest.raises(ConfigError, match="--model"):
        run_eval("default", "synthetic", 100, "transformer", False, None, {}, settings)
    with pytest.raises(ConfigError, match="--limit"):
        run_eval("default", "synthetic", 0, "mmoe", False, None, {}, settings)


def test_table_has_a_row_per_system_and_dashes_for_missing_values() -> None:
    from driftrec.online_update.evaluation.runner import EvalReport

    metrics = {name: dict.fromkeys(METRICS, 0.5) for name in ("online", "river_fm")}
    metrics["river_fm"]["conversion_auc"] = None
    report = EvalReport(events=10, examples=8, rejected=0, drift_points=(), metrics=metrics)
    lines = format_table(report)
    assert lines[2].startswith("online") and lines[3].startswith("river_fm")
    assert "-" in lines[3].split() and "drift points (event index) none" in lines[-2]
