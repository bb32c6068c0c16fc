"""`driftrec eval`: prequential evaluation of the online learner against its baselines.

Reads a log through the producers' readers (no Kafka), runs the systems of
``driftrec.online_update.evaluation.runner`` side by side, prints a table, optionally writes a PNG of
windowed click AUC over time (the oracle's too, on a synthetic log), and with ``--json``
prints one JSON object as the last line: the metrics per system, ``oracle_click_auc``,
the learner's fingerprint and configuration (the one the live trainer runs with the same
settings), and the windowed click AUC per system (``windows``).

``--option`` pairs go to the log reader, except ``eval.<field>=<value>``, which sets a
field of ``EvalConfig`` (``eval.batch_size=128``, ``eval.systems=online,static``).

>>> config, reader = split_options({"eval.batch_size": "128", "n_events": "4000"})
>>> config.batch_size, reader
(128, {'n_events': '4000'})
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from driftrec.core import ConfigError
from driftrec.ops.settings import Settings

__all__ = ["format_table", "run_eval", "split_options"]

_PREFIX = "eval."
_COLUMNS = (
    ("click_auc", "click AUC"),
    ("click_logloss", "click logloss"),
    ("conversion_auc", "conv AUC"),
    ("dwell_mae", "dwell MAE"),
    ("cold_click_auc", "cold AUC"),
    ("post_drift_click_auc", "post-drift AUC"),
    ("oracle_share", "oracle share"),
)


def split_options(options: Mapping[str, str]) -> tuple[Any, dict[str, str]]:
    """(``EvalConfig`` from the ``eval.*`` options, the rest for the reader)."""
    from driftrec.online_update.evaluation import EvalConfig

    defaults = EvalConfig()
    known = {f.name: f for f in dataclasses.fields(EvalConfig)}
    values: dict[str, Any] = {}
    reader: dict[str, str] = {}
    for key, raw in options.items():
        if not key.startswith(_PREFIX):
            reader[key] = raw
            continue
        name = key[len(_PREFIX) :]
        if name not in known:
            raise ConfigError(f"unknown option {key}: eval options are {', '.join(sorted(known))}")
        kind = type(getattr(defaults, name))
        try:
            values[name] = kind(raw)
        except ValueError:
            raise ConfigError(f"option {key} takes a {kind.__name__}, not {raw!r}") from None
    return EvalConfig(**values), reader


def _cell(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.4f}"


def format_table(report: Any) -> list[str]:
    """The report as aligned text lines: one row per system, then the run's facts."""
    head = f"{'system':<16}" + "".join(f"{title:>16}" for _, title in _COLUMNS) + f"{'seconds':>10}"
    lines = [head, "-" * len(head)]
    for name, metrics in report.metrics.items():
        cells = "".join(f"{_cell(metrics[key]):>16}" for key, _ in _COLUMNS)
        lines.append(f"{name:<16}{cells}{report.seconds.get(name, 0.0):>10.1f}")
    drifts = ", ".join(str(d) for d in report.drift_points) or "none"
    lines += [
        "",
        f"events {report.events:,}  examples {report.examples:,}  rejected {report.rejected:,}  "
        f"drift points (event index) {drifts}  elapsed {report.elapsed_s:.1f} s",
        f"cold rows {report.cold_share:.0%} of examples; post-drift rows "
        f"{report.post_drift_share:.0%}; dwell MAE in log1p(seconds)",
    ]
    if report.oracle_click_auc is not None:
        lines.append(
            f"oracle click AUC (the log's true click probabilities) {report.oracle_click_auc:.4f}"
        )
    if report.learner:
        lines.append(
            f"learner {report.learner['fingerprint']} (driftrec systems; "
            "the trainer runs the same with these settings)"
        )
    return lines


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 4)


def _rounded(report_json: dict[str, Any]) -> dict[str, Any]:
    """The JSON line: metrics and window AUCs to 4 decimals."""
    out = dict(report_json)
    out["systems"] = {
        name: {k: _round(v) for k, v in metrics.items()}
        for name, metrics in report_json["systems"].items()
    }
    out["oracle_click_auc"] = _round(report_json["oracle_click_auc"])
    out["windows"] = {
        name: {"event": w["event"], "click_auc": [_round(v) for v in w["click_auc"]]}
        for name, w in report_json["windows"].items()
    }
    return out


def run_eval(
    source: str,
    fmt: str | None,
    limit: int | None,
    model: str,
    json_out: bool,
    plot: Path | None,
    options: dict[str, str],
    settings: Settings,
) -> int:
    """``driftrec eval``: print the table, write the PNG, print the JSON line last."""
    from driftrec.features import joiner_config
    from driftrec.models import ARCHS
    from driftrec.online_update.embeddings import CachedEncoder, load_text_encoder
    from driftrec.online_update.evaluation import evaluate_source
    from driftrec.ops.plots import plot_rolling_auc
    from driftrec.ops.progress import event_progress

    if model not in ARCHS:
        raise ConfigError(f"--model must be one of {', '.join(ARCHS)}, got {model!r}")
    if limit is not None and limit < 1:
        raise ConfigError(f"--limit must be at least 1 event, got {limit}")
    config, reader = split_options(options)
    # --model overrides the setting; everything else of the learner comes from settings.
    learner_settings = settings.model_copy(update={"model_arch": model})
    encoder = CachedEncoder(
        load_text_encoder(settings.text_model), settings.data_dir / "text-cache", flush_every=512
    )
    with encoder, event_progress("eval", total=limit) as advance:
        report = evaluate_source(
            source,
            fmt,
            encoder,
            limit=limit,
            options=reader,
            settings=learner_settings,
            config=config,
            joiner=joiner_config(settings),
            on_event=advance,
        )
    if report.examples == 0:
        raise ConfigError(f"{source} yielded no impressions, so there is nothing to evaluate")
    for line in format_table(report):
        print(line)
    if plot is not None:
        plot_rolling_auc(report.curves, report.drift_points, plot, window=config.rolling_window)
        print(f"wrote {plot}")
    if json_out:
        sys.stdout.flush()
        print(json.dumps(_rounded(report.to_json())))
    return 0
