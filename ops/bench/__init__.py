"""`driftrec bench ...`: benchmarks that measure a figure and its baseline in one run.

Each prints a short table and, as its last line, one JSON object.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

from driftrec.ops.settings import Settings

__all__ = ["print_result", "run_bench"]


def print_result(result: dict[str, Any], json_only: bool) -> None:
    if not json_only:
        for key, value in result.items():
            shown = f"{value:,.2f}" if isinstance(value, float) else str(value)
            print(f"  {key:<28} {shown}")
    print(json.dumps(result, sort_keys=False))


def run_bench(args: argparse.Namespace, settings: Settings) -> int:
    """Run ``ops/bench/<what>.py``'s ``bench_<what>`` and print its result."""
    import importlib

    module = importlib.import_module(f"driftrec.ops.bench.{args.what}")
    bench: Callable[[argparse.Namespace, Settings], dict[str, Any]] = getattr(
        module, f"bench_{args.what}"
    )
    print_result(bench(args, settings), args.json)
    return 0
