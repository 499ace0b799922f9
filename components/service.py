"""The recommendation service (``shopdistill serve-api``): FastAPI over a hot-swappable :class:`Guide`.

Requests take the current guide once, at their start, so a reload never changes a request halfway:
in-flight requests finish on the old model while new ones get the new one (the swap is one attribute
assignment). A reload loads and checks the new version beside the old one; one that fails leaves the
old one serving and is reported in ``/model``, ``/metrics`` and the log.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from importlib import resources

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from pydantic import BaseModel, ConfigDict, Field

from shopdistill.components.guide import MAX_K, Guide, GuideError
from shopdistill.components.guide import Request as GuideRequest
from shopdistill.components.registry import RegistryError

log = logging.getLogger("shopdistill.service")


class RecommendBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: list[str] = Field(
        default_factory=list, max_length=1000, description="product ids, most recent last"
    )
    user: str | None = Field(None, description="a known user id: their stored history comes first")
    k: int = Field(10, ge=1, le=MAX_K)
    exclude_seen: bool = True
    category: str | None = Field(None, description="only this category, or department")
    brand: str | None = None


class GuideHolder:
    """The serving guide and its reloads (see the module)."""

    def __init__(self, load: Callable[[str | None], Guide], champion: Callable[[], str | None] | None):
        """``load(version)``: a checked guide; ``champion()``: the champion's version now (None: the
        service is pinned to one version and never follows the alias)."""
        self.load, self.champion = load, champion
        self.guide = load(None)
        self.last_error: str | None = None
        self.last_check: float | None = None
        self._lock = threading.Lock()

    def reload(self, force: bool = False) -> dict:
        """Load the champion if it moved (``force``: load the target even if it is the one served);
        returns what happened."""
        with self._lock:
            old = self.guide.info.version
            try:
                target = self.champion() if self.champion else old
                self.last_check = time.time()
                if target is None or (target == old and not force):
                    return {"reloaded": False, "version": old}
                fresh = self.load(target)
            except (GuideError, RegistryError) as exc:
                self.last_error = f"{time.strftime('%Y-%m-%dT%H:%M:%S')}: {exc}"
                log.error("reload failed, still serving v%s: %s", old, exc)
                return {"reloaded": False, "version": old, "error": str(exc)}
            self.guide, self.last_error = fresh, None
            log.info("now serving v%s (was v%s)", fresh.info.version, old)
            return {"reloaded": True, "version": fresh.info.version, "previous": old}


class Metrics:
    def __init__(self):
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "shopdistill_requests",
            "requests by endpoint and status",
            ["endpoint", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "shopdistill_request_seconds",
            "request latency by endpoint",
            ["endpoint"],
            buckets=(0.001, 0.002, 0.005, 0.01, 0.015, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0),
            registry=self.registry,
        )
        self.version = Gauge(
            "shopdistill_model_version", "the model version being served", registry=self.registry
        )
        self.reloads = Counter(
            "shopdistill_reloads", "reloads by outcome", ["outcome"], registry=self.registry
        )


def _poller(holder: GuideHolder, metrics: Metrics, seconds: float, stop: threading.Event) -> None:
    while not stop.wait(seconds):
        _reload(holder, metrics)


def _reload(holder: GuideHolder, metrics: Metrics, force: bool = False) -> dict:
    result = holder.reload(force)
    outcome = "error" if "error" in result else "loaded" if result["reloaded"] else "unchanged"
    metrics.reloads.labels(outcome).inc()
    metrics.version.set(float(holder.guide.info.version))
    return result


def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
    """422 with each problem as ``field: message`` (the field's dotted path in the body or query)."""
    problems = [
        f"{'.'.join(str(p) for p in e['loc'] if p not in ('body', 'query', 'path')) or 'body'}: {e['msg']}"
        for e in exc.errors()
    ]
    return JSONResponse(status_code=422, content={"error": "; ".join(problems), "detail": problems})


def create_app(holder: GuideHolder, *, poll_seconds: float = 30.0) -> FastAPI:
    """The service (``docs/serving.md``); polls the champion alias every ``poll_seconds`` (0: never)."""
    metrics = Metrics()
    metrics.version.set(float(holder.guide.info.version))

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI):
        stop = threading.Event()
        if holder.champion and poll_seconds > 0:
            args = (holder, metrics, poll_seconds, stop)
            threading.Thread(target=_poller, args=args, daemon=True, name="champion-poller").start()
        yield
        stop.set()

    app = FastAPI(title="shopdistill shopping guide", lifespan=lifespan)
    app.add_exception_handler(RequestValidationError, _validation_error)

    app.add_middleware(_Measure, metrics=metrics)
    _routes(app, holder, metrics)
    return app


class _Measure:
    """Request counts and latency per route, as plain ASGI middleware (Starlette's
    ``BaseHTTPMiddleware`` costs far more per request)."""

    def __init__(self, app, metrics: Metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, status = time.perf_counter(), [500]

        async def sending(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            endpoint = getattr(scope.get("route"), "path", "other")
            self.metrics.latency.labels(endpoint).observe(time.perf_counter() - start)
            self.metrics.requests.labels(endpoint, str(status[0])).inc()


def _routes(app: FastAPI, holder: GuideHolder, metrics: Metrics) -> None:
    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        return resources.files("shopdistill.components").joinpath("static/guide.html").read_text()

    @app.post("/recommend")
    async def recommend(body: RecommendBody) -> dict:
        # in the event loop: a sub-millisecond CPU call gains nothing from a thread hand-off
        return holder.guide.recommend(GuideRequest(**body.model_dump()))

    @app.get("/users/{user_id}/recommendations")
    def for_user(
        user_id: str,
        k: int = Query(10, ge=1, le=MAX_K),
        exclude_seen: bool = True,
        category: str | None = None,
        brand: str | None = None,
    ) -> dict:
        guide = holder.guide
        if user_id not in guide.histories:
            raise HTTPException(404, f"unknown user {user_id!r}: no stored history in the served dataset")
        request = GuideRequest(user=user_id, k=k, exclude_seen=exclude_seen, category=category, brand=brand)
        return guide.recommend(request)

    @app.get("/catalogue/sample")
    def sample(n: int = Query(24, ge=1, le=200), users: int = Query(8, ge=0, le=100)) -> dict:
        """Popular products and a few users with long histories, for the page."""
        guide = holder.guide
        popular = guide.catalogue.popularity.argsort()[::-1][:n]
        longest = sorted(guide.histories, key=lambda u: (-len(guide.histories[u]), u))[:users]
        return {"products": [guide.catalogue.describe(int(i)) for i in popular], "users": longest}

    @app.get("/healthz")
    def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz() -> dict:
        guide = holder.guide
        guide.check()
        return {"ready": True, "version": guide.info.version, "engine": guide.info.engine}

    @app.get("/model")
    def model() -> dict:
        info = holder.guide.info
        return {
            **info.__dict__,
            "follows_champion": holder.champion is not None,
            "last_check": holder.last_check,
            "last_reload_error": holder.last_error,
        }

    @app.get("/metrics")
    def prometheus() -> PlainTextResponse:
        return PlainTextResponse(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.post("/admin/reload")
    def reload(force: bool = False) -> dict:
        """Check the champion now; ``force``: load and swap in the target even if it is unchanged."""
        return _reload(holder, metrics, force)
