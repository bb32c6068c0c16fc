"""`driftrec bench train` measures both rates on realistic batches and returns them."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from driftrec.ops.bench.train import bench_train
from driftrec.ops.settings import Settings


def test_bench_train_returns_positive_rates_and_their_ratio(tmp_path: Path) -> None:
    settings = Settings(text_model="hashing:64", data_dir=tmp_path)
    result = bench_train(
        argparse.Namespace(events=5000), settings, warmup=2, timed=4, river_examples=300
    )
    assert result["arch"] == "mmoe" and result["batch_size"] == 512
    assert result["examples"] == 4 * 512 and result["river_fm_examples"] == 300
    assert result["examples_per_s"] > 0 and result["river_fm_examples_per_s"] > 0
    # The rates are printed rounded; the ratio is of the unrounded rates.
    ratio = result["examples_per_s"] / result["river_fm_examples_per_s"]
    assert result["ratio"] == pytest.approx(ratio, abs=0.01)
