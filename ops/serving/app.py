"""The serving HTTP API (``driftrec serve``): recommend, score, models, health, metrics.

Framework: FastAPI on uvicorn. The request and response bodies are pydantic models,
which is already driftrec's one schema language, so FastAPI validates requests with
the same library as every topic message, turns a bad request into a 422 that names the
field, and documents the API at ``/docs`` for free. It is ASGI, so health and metrics
stay responsive while scoring runs; the scoring endpoints hand their work to a lane of
``scoring_threads`` threads (default one per process), so the event loop stays free
for health checks and the next requests while one is scored. Flask would need a
second validation layer; aiohttp or raw Starlette would hand-roll what FastAPI gives.

Endpoints (bodies in ops.serving.schemas):

- ``POST /recommend``: top-k of the candidates (or of the newest catalog items) with
  per-task scores, the blended score and the version that scored them.
- ``POST /score``: the same numbers for every candidate, in request order.
- ``GET /models``: registry versions, the active one and the one this server serves.
- ``POST /models/{version}/promote``, ``POST /models/rollback``: need
  ``Authorization: Bearer <DRIFTREC_ADMIN_TOKEN>``; no header is 401, a wrong token 403,
  and with no token configured admin is disabled (403 saying how to enable it).
- ``GET /healthz``: readiness, 503 with the reasons whenever the server cannot score with
  the active model (ops.serving.health); ``GET /livez``: liveness, always 200 while the
  process answers, with its pid; ``GET /metrics``: Prometheus.
- ``GET /dashboard``: the live drift dashboard, and its JSON under ``/dashboard/api/``
  (ops.dashboard).

Request bodies over ``max_request_bytes`` are refused with 413 before they are read
(ops.serving.limits). ``/recommend`` never answers an empty ranking: an empty
``item_ids`` is a 422, and with no ``item_ids`` and an empty catalog it is a 503.
"""

from __future__ import annotations

import gc
import hmac
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import redis
from anyio import CapacityLimiter, to_thread
from driftrec.online_update.embeddings import RedisVectorStore
from driftrec.online_update.registry import ModelRegistry, RegistryError
from driftrec.ops.dashboard import add_dashboard
from driftrec.ops.serving.health import check_readiness
from driftrec.ops.serving.limits import BodySizeLimit
from driftrec.ops.serving.metrics import CONTENT_TYPE_LATEST, MetricsMiddleware, ServingMetrics
from driftrec.ops.serving.model_holder import LoadedModel, ModelHolder
from driftrec.ops.serving.schemas import (
    BlendWeights,
    Health,
    ModelsResponse,
    RecommendRequest,
    RecommendResponse,
    ScoreRequest,
    ScoreResponse,
    SwitchResponse,
)
from driftrec.ops.serving.scoring import Scorer
from driftrec.ops.settings import Settings
from driftrec.stream import RedisFeatureStore
from fastapi import Depends, FastAPI, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

__all__ = ["Services", "build_services", "create_app", "run_server"]

_DEFAULT_WEIGHTS = BlendWeights()


@dataclass
class Services:
    """Everything the endpoints use; one set per app."""

    settings: Settings
    client: redis.Redis
    registry: ModelRegistry
    vectors: RedisVectorStore
    features: RedisFeatureStore
    holder: ModelHolder
    scorer: Scorer
    metrics: ServingMetrics


def build_services(settings: Settings, *, poll_s: float = 1.0, listen: bool = True) -> Services:
    """Clients for ``settings`` with the key layout every driftrec process uses."""
    client = redis.Redis.from_url(
        settings.redis_url,
        socket_connect_timeout=5.0,
        socket_timeout=settings.redis_timeout_s,
        health_check_interval=30,
    )
    prefix = settings.redis_prefix
    registry = ModelRegistry(client, settings.data_dir / "registry", prefix=f"{prefix}registry:")
    vectors = RedisVectorStore(client, prefix=f"{prefix}emb:")
    features = RedisFeatureStore(client, prefix)
    metrics = ServingMetrics()
    holder = ModelHolder(
        registry,
        vectors,
        feature_config=features.config,
        poll_s=poll_s,
        listen=listen,
        on_swap=lambda new, old: metrics.swapped(new.version),
        on_failure=lambda version, error: metrics.load_failures.inc(),
    )
    return Services(
        settings,
        client,
        registry,
        vectors,
        features,
        holder,
        Scorer(features, vectors, settings.partitions),
        metrics,
    )


def _validation_error(request: Request, error: Exception) -> JSONResponse:
    problems = error.errors() if isinstance(error, RequestValidationError) else []
    lines = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in problems]
    return JSONResponse(
        status_code=422,
        content={
            "detail": "invalid request: " + "; ".join(lines),
            "errors": [{"loc": list(e["loc"]), "msg": e["msg"]} for e in problems],
        },
    )


def _redis_error(request: Request, error: Exception) -> JSONResponse:
    return JSONResponse(
        status_code=503,
        content={"detail": f"Redis is unreachable ({error}); retry, or check `driftrec status`"},
    )


def _json(body: ScoreResponse | RecommendResponse) -> Response:
    # Already validated models: serialise once in Rust instead of re-validating.
    return Response(content=body.model_dump_json(), media_type="application/json")


def create_app(
    settings: Settings,
    *,
    services: Services | None = None,
    poll_s: float = 1.0,
    listen: bool = True,
) -> FastAPI:
    """The API for ``settings``; the model holder starts and stops with the app."""
    s = services or build_services(settings, poll_s=poll_s, listen=listen)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        s.holder.start()
        # Move everything allocated so far (modules, the first model) out of the cyclic
        # GC's reach: full collections then scan only request garbage, not the heap of
        # torch and FastAPI objects, which otherwise shows up as 100 ms tail latencies.
        gc.freeze()
        try:
            yield
        finally:
            s.holder.stop()
            s.client.close()
            gc.unfreeze()  # let interpreter shutdown collect them (extensions check for leaks)

    app = FastAPI(title="driftrec serving", version="1", lifespan=lifespan)
    app.state.services = s
    app.add_middleware(MetricsMiddleware, metrics=s.metrics)
    # Added last, so it runs first: an oversized body is refused before anything reads it.
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_request_bytes)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(redis.RedisError, _redis_error)

    # Scoring runs on its own lane of ``scoring_threads`` worker threads, apart from the
    # pool that health, metrics and admin use: it is mostly Python under the GIL, and
    # torch drops and retakes the GIL at every op, so many requests scoring at once in
    # one process thrash it. Measured (`driftrec bench serve`, 2 cores): FastAPI's 40
    # threads cost 5.5 ms CPU a request, one thread 2.9 ms. Use `--workers` for cores.
    lane = CapacityLimiter(settings.scoring_threads)

    def model() -> LoadedModel:
        current = s.holder.current
        if current is None:
            detail = "no model version is active yet: promote one with `driftrec models promote V`"
            if s.holder.last_error:
                detail = f"no model loaded: {s.holder.last_error}"
            raise HTTPException(503, detail)
        return current

    def admin(request: Request) -> None:
        token = settings.admin_token
        if token is None or not token.get_secret_value():
            raise HTTPException(
                403, "admin endpoints are disabled: start the server with DRIFTREC_ADMIN_TOKEN set"
            )
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            raise HTTPException(
                401,
                "missing bearer token: send `Authorization: Bearer <DRIFTREC_ADMIN_TOKEN>`",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if not hmac.compare_digest(given.strip().encode(), token.get_secret_value().encode()):
            raise HTTPException(403, "wrong admin token")

    @app.post("/recommend", response_model=RecommendResponse)
    async def recommend(body: RecommendRequest) -> Response:
        return await to_thread.run_sync(_recommend, body, model(), limiter=lane)

    def _recommend(body: RecommendRequest, current: LoadedModel) -> Response:
        if body.item_ids is None:
            candidates = s.features.recent_items(body.recent)
            if not candidates:
                raise HTTPException(
                    503,
                    "no candidates: the request sent no item_ids and the feature store has "
                    "no catalog items yet (is the worker running and the catalog replayed?)",
                )
        else:
            candidates = list(dict.fromkeys(body.item_ids))  # ranking twice is meaningless
        scored = s.scorer.score(
            current, body.user_id, candidates, body.ts, body.weights or _DEFAULT_WEIGHTS
        )
        return _json(
            RecommendResponse(
                model_version=scored.version,
                user_id=body.user_id,
                as_of=scored.as_of,
                items=scored.items(scored.top(body.k)),
                candidates=len(candidates),
                candidate_source="request" if body.item_ids is not None else "recent items",
            )
        )

    @app.post("/score", response_model=ScoreResponse)
    async def score(body: ScoreRequest) -> Response:
        return await to_thread.run_sync(_score, body, model(), limiter=lane)

    def _score(body: ScoreRequest, current: LoadedModel) -> Response:
        scored = s.scorer.score(
            current, body.user_id, list(body.item_ids), body.ts, body.weights or _DEFAULT_WEIGHTS
        )
        return _json(
            ScoreResponse(
                model_version=scored.version,
                user_id=body.user_id,
                as_of=scored.as_of,
                items=scored.items(),
            )
        )

    @app.get("/models")
    def models() -> ModelsResponse:
        current = s.holder.current
        return ModelsResponse(
            active=s.registry.active_version_name(),
            serving=None if current is None else current.version,
            swaps=s.holder.swaps,
            versions=s.registry.list_versions(),
        )

    @app.post("/models/{version}/promote", dependencies=[Depends(admin)])
    def promote(version: str) -> SwitchResponse:
        try:
            name = s.registry.get(version).version
        except RegistryError as error:
            raise HTTPException(404, str(error)) from None
        before = s.registry.active_version_name()
        try:
            info = s.registry.promote(name, reason="promote (api)")
        except RegistryError as error:  # e.g. the artifact fails its checksum
            raise HTTPException(409, str(error)) from None
        return SwitchResponse(active=info.version, previous=before)

    @app.post("/models/rollback", dependencies=[Depends(admin)])
    def rollback() -> SwitchResponse:
        before = s.registry.active_version_name()
        try:
            info = s.registry.rollback(reason="rollback (api)")
        except RegistryError as error:
            raise HTTPException(409, str(error)) from None
        return SwitchResponse(active=info.version, previous=before)

    @app.get("/healthz")
    def healthz() -> JSONResponse:
        found = check_readiness(s.holder, s.registry, s.vectors)
        health = Health(
            status=found.status(s.holder.last_error),
            reasons=found.reasons,
            serving=found.serving,
            active=found.active,
            embedding_version=found.embedding_version,
            item_vectors=found.item_vectors,
            swaps=s.holder.swaps,
            last_error=s.holder.last_error,
        )
        return JSONResponse(health.model_dump(), status_code=200 if found.ready else 503)

    @app.get("/livez")
    async def livez() -> dict[str, str | int]:
        # The pid tells which of `driftrec serve --workers N`'s processes answered.
        return {"status": "alive", "pid": os.getpid()}

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(content=s.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    add_dashboard(app, settings, s.client, s.registry)
    return app


def run_server(
    settings: Settings, host: str = "127.0.0.1", port: int = 8000, workers: int = 1
) -> None:
    """Serve until interrupted (``driftrec serve``); blocks. ``workers`` > 1 runs that
    many processes on the port (ops.serving.workers), each with its own model holder."""
    import torch
    import uvicorn

    if workers > 1:
        from driftrec.ops.serving.workers import serve_workers

        serve_workers(settings, host, port, workers)
        return
    # One intra-op thread per process: concurrent requests already use every core, and
    # torch threads fighting each other and the request threads ruin tail latency.
    torch.set_num_threads(1)
    uvicorn.run(create_app(settings), host=host, port=port, access_log=False, log_level="info")
