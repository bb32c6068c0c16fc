"""The `driftrec` command: one surface for infrastructure, replay, evaluation and benchmarks.

Every flag falls back to the ``DRIFTREC_*`` environment (ops.settings.Settings).
Subcommands import their heavy dependencies (torch, faust) only when they run.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from driftrec.core import ConfigError, DriftrecError
from driftrec.ops.settings import Settings, get_settings

__all__ = ["build_parser", "main"]

Handler = Callable[[argparse.Namespace, Settings], int]


def _up(args: argparse.Namespace, settings: Settings) -> int:
    from driftrec.ops.infra import services_status, services_up

    for line in services_up(settings):
        print(line)
    return 0 if all(s.healthy for s in services_status(settings)) else 1


def _down(args: argparse.Namespace, settings: Settings) -> int:
    from driftrec.ops.infra import services_down

    for line in services_down(settings):
        print(line)
    return 0


def _status(args: argparse.Namespace, settings: Settings) -> int:
    from driftrec.ops.infra import services_status

    statuses = services_status(settings)
    for status in statuses:
        print(status.line())
    return 0 if all(s.healthy for s in statuses) else 1


def _speed(value: str) -> float | None:
    if value == "max":
        return None
    try:
        speed = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--speed takes a number > 0 or 'max', not {value!r}"
        ) from None
    if speed <= 0:
        raise argparse.ArgumentTypeError("--speed must be > 0 (or 'max')")
    return speed


def _options(pairs: Sequence[str]) -> dict[str, str]:
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise argparse.ArgumentTypeError(f"--option takes KEY=VALUE, not {pair!r}")
        options[key.strip()] = value.strip()
    return options


def _replay(args: argparse.Namespace, settings: Settings) -> int:
    from driftrec.ops.progress import event_progress
    from driftrec.producers import prefetched, replay_encoded

    records = prefetched(args.source, args.format, limit=args.limit, options=_options(args.option))
    with event_progress("replay", total=args.limit, enabled=not args.quiet) as advance:
        summary = replay_encoded(records, settings, speed=args.speed, on_event=advance)
    for line in summary.lines():
        print(line)
    return 1 if summary.rejected else 0


def _worker(args: argparse.Namespace, settings: Settings) -> int:
    from driftrec.producers import ensure_topics
    from faust import Worker

    # faust only subscribes to topics that exist when it starts; create ours first.
    ensure_topics(settings)
    from driftrec.stream import WorkerMetrics, create_app

    metrics = WorkerMetrics()
    if settings.metrics_port:
        from prometheus_client import start_http_server

        try:  # a thread of its own: a scrape never waits on the event loop
            start_http_server(
                settings.metrics_port, settings.metrics_host, registry=metrics.registry
            )
        except OSError as error:
            # A second worker on this host: it still works, only without its own series.
            print(
                f"driftrec: warning: Prometheus metrics off, port {settings.metrics_port} "
                f"is taken ({error}); give each worker its own DRIFTREC_METRICS_PORT",
                file=sys.stderr,
            )
    app = create_app(settings, args.role, metrics)
    worker = Worker(app, loglevel=args.loglevel, quiet=True)
    worker.execute_from_commandline()
    return 0


def _watch(args: argparse.Namespace, settings: Settings) -> int:
    from driftrec.ops.watch import watch

    watch(settings, once=args.once, interval=args.interval)
    return 0


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    from driftrec.ops.serving import run_server

    run_server(
        settings, host=args.host, port=args.port or settings.serve_port, workers=args.workers
    )
    return 0


def _embed(args: argparse.Namespace, settings: Settings) -> int:
    if args.refresh:
        from driftrec.online_update.embeddings import refresh

        print(refresh(settings, args.model))
        return 0
    from driftrec.online_update.embeddings import run_embedder

    # One torch thread encodes about twice as fast as two on a shared 2-core host.
    stats = run_embedder(
        settings, model=args.model, stop_after=args.stop_after, threads=args.threads
    )
    print(
        f"embedded {stats.encoded} texts ({stats.cache_hits} cache hits), {stats.dead_letters} dead letters"
    )
    return 0


def _models(args: argparse.Namespace, settings: Settings) -> int:
    from driftrec.online_update.registry import open_registry
    from driftrec.ops import models_cmd as cli

    registry = open_registry(settings)
    if args.action == "gc":
        from driftrec.online_update.embeddings import RedisVectorStore
        from driftrec.online_update.registry import RetentionPolicy

        vectors = RedisVectorStore(registry.redis, prefix=f"{settings.redis_prefix}emb:")
        lines = cli.models_gc(
            registry,
            vectors,
            RetentionPolicy.from_config(settings),
            embedding_grace_s=settings.embedding_grace_s,
            dry_run=args.dry_run,
        )
        print("\n".join(lines))
        return 0
    if args.action == "list":
        print("\n".join(cli.models_list(registry)))
    elif args.action == "show":
        print(cli.models_show(registry, _need_version(args)))
    elif args.action == "promote":
        print(cli.models_promote(registry, _need_version(args)))
    else:
        print(cli.models_rollback(registry))
    return 0


def _need_version(args: argparse.Namespace) -> str:
    if not args.version:
        raise ConfigError(
            f"`driftrec models {args.action}` needs a VERSION (see `driftrec models list`)"
        )
    return str(args.version)


def _demo(args: argparse.Namespace, settings: Settings) -> int:
    from driftrec.ops.demo import DemoWatch, start_demo, stop_demo, token_path

    if args.stop:
        for line in stop_demo(settings):
            print(line)
        return 0
    for line in start_demo(settings):
        print(line)
    token = "$DRIFTREC_ADMIN_TOKEN" if settings.admin_token else f"$(cat {token_path(settings)})"
    url = f"localhost:{settings.serve_port}"
    print(
        f"\nWatch it learn, in the browser:        http://{url}/dashboard\n"
        "Or in another terminal:                .venv/bin/driftrec watch\n"
        f"Ask for recommendations:               curl -s {url}/recommend "
        '-H \'content-type: application/json\' -d \'{"user_id": "u42", "k": 5}\'\n'
        f"Roll the served model back:            curl -s -X POST {url}/models/rollback "
        f'-H "authorization: Bearer {token}"\n'
        "Stop the demo processes:               .venv/bin/driftrec demo --stop\n"
    )
    args.source, args.format, args.option = "default", "synthetic", []
    with DemoWatch(settings, print) as watch:
        try:
            code = _replay(args, settings)
        except KeyboardInterrupt:
            if watch.failed is None:
                raise
            return 1
        waiting = watch.finish(timeout=180.0)
    if waiting:
        logs = settings.data_dir.resolve() / "logs"
        print(
            f"driftrec: error: not healthy after the replay: {', '.join(waiting)} "
            f"(see {logs} and `curl -s {url}/healthz`)",
            file=sys.stderr,
        )
        return 1
    return code


def _eval(args: argparse.Namespace, settings: Settings) -> int:
    from driftrec.ops.eval_cmd import run_eval

    model = args.model or settings.model_arch
    return run_eval(
        args.source,
        args.format,
        args.limit,
        model,
        args.json,
        args.plot,
        _options(args.option),
        settings,
    )


def _bench(args: argparse.Namespace, settings: Settings) -> int:
    from driftrec.ops.bench import run_bench

    return run_bench(args, settings)


def _config(args: argparse.Namespace, settings: Settings) -> int:
    for name, info in Settings.model_fields.items():
        value = getattr(settings, name)
        shown = "***" if "password" in name or ("token" in name and value) else value
        print(f"DRIFTREC_{name.upper():<28} {shown!s:<28} {info.description}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="driftrec",
        description="Stream-processing online-learning recommender (Kafka + faust + PyTorch).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, handler: Handler, help_text: str) -> argparse.ArgumentParser:
        command = sub.add_parser(name, help=help_text, description=help_text)
        command.set_defaults(handler=handler)
        return command

    add("up", _up, "start local Kafka (KRaft) and Redis unless they already run")
    add("down", _down, "stop the Kafka and Redis that `driftrec up` started")
    add("status", _status, "show each service with address, pid and health")
    add("config", _config, "print every setting with its environment variable")

    replay = add("replay", _replay, "replay a click log into Kafka")
    replay.add_argument(
        "source", nargs="?", default="default", help="file, directory, or 'default' (synthetic)"
    )
    replay.add_argument(
        "--format",
        choices=["mind", "movielens", "csv", "jsonl", "synthetic"],
        default=None,
        help="log format (guessed from the path when omitted)",
    )
    replay.add_argument(
        "--speed",
        type=_speed,
        default=None,
        metavar="N|max",
        help="N times the log's own clock, or max (default: max)",
    )
    replay.add_argument("--limit", type=int, default=None, help="stop after N events")
    replay.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="reader option, e.g. user_id=uid for csv, seed=7 for synthetic",
    )
    replay.add_argument("--quiet", action="store_true", help="no progress bar")

    worker = add("worker", _worker, "run the faust worker: joiner, features and trainer agents")
    worker.add_argument(
        "--loglevel", default="info", choices=["crit", "error", "warn", "info", "debug"]
    )
    worker.add_argument(
        "--role",
        default="all",
        choices=["all", "joiner", "trainer"],
        help="run every agent, or only the joiner or only the trainer (own process and group)",
    )

    watch = add(
        "watch", _watch, "live view: per-task rolling metrics, rates, drift alarms, checkpoints"
    )
    watch.add_argument("--once", action="store_true", help="print one reading and exit")
    watch.add_argument("--interval", type=float, default=1.0, help="seconds between readings")

    serve = add("serve", _serve, "HTTP API: /recommend, /score, /models (hot-swaps model versions)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=None, help="default: DRIFTREC_SERVE_PORT")
    serve.add_argument(
        "--workers", type=int, default=1, help="server processes sharing the port (default 1)"
    )

    embed = add("embed", _embed, "embedding worker: encode item text into Redis (GPU when present)")
    embed.add_argument(
        "--refresh", action="store_true", help="re-encode the whole catalog into a new version"
    )
    embed.add_argument(
        "--model", default=None, help="minilm, hashing[:dim] or a local HF model directory"
    )
    embed.add_argument("--threads", type=int, default=1, help="torch threads on CPU")
    embed.add_argument(
        "--stop-after", type=float, default=None, help="exit after this many idle seconds"
    )

    models = add("models", _models, "model registry: list, show V, promote V, rollback, gc")
    models.add_argument("action", choices=["list", "show", "promote", "rollback", "gc"])
    models.add_argument("version", nargs="?", default=None)
    models.add_argument(
        "--dry-run",
        action="store_true",
        help="gc: show what retention would delete, delete nothing",
    )

    ev = add(
        "eval",
        _eval,
        "prequential evaluation against static, periodic and river baselines (no Kafka)",
    )
    ev.add_argument(
        "source", nargs="?", default="default", help="file, directory, or 'default' (synthetic)"
    )
    ev.add_argument(
        "--format", choices=["mind", "movielens", "csv", "jsonl", "synthetic"], default=None
    )
    ev.add_argument("--limit", type=int, default=None, help="evaluate the first N events")
    ev.add_argument("--model", choices=["mmoe", "ple", "shared-bottom"], default=None)
    ev.add_argument("--json", action="store_true", help="last line: one JSON object")
    ev.add_argument(
        "--plot", type=Path, default=None, help="write rolling click AUC per system to a PNG"
    )
    ev.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="reader option (seed=7), or eval.* setting (eval.systems=online,static)",
    )

    demo = add("demo", _demo, "start worker, embedder and server, then replay the drifting log")
    demo.add_argument(
        "--speed",
        type=_speed,
        default=2000.0,
        metavar="N|max",
        help="replay speed, times the log's own clock (default 2000: ~4 minutes)",
    )
    demo.add_argument(
        "--limit", type=int, default=None, help="replay only the first N events of the log"
    )
    demo.add_argument("--stop", action="store_true", help="stop the demo's background processes")
    demo.add_argument("--quiet", action="store_true", help="no progress bar")

    bench = add("bench", _bench, "benchmarks that print figures and ratios (last line: JSON)")
    bench.add_argument("what", choices=["replay", "train", "pipeline", "soak", "embed", "serve"])
    bench.add_argument("--events", type=int, default=200_000, help="events to use")
    bench.add_argument("--json", action="store_true", help="print only the JSON line")
    bench.add_argument("--workers", type=int, default=1, help="serve: server processes")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args, get_settings()))
    except DriftrecError as error:
        print(f"driftrec: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("driftrec: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
