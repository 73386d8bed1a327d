"""Build the FastAPI application from settings (`create_app`), or from the environment (`app_from_env`)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request, Response

from service.api import routes_console, routes_jobs, routes_system
from service.api.errors import error_response, install_error_handlers
from service.background import start_background
from service.container import Services, build_services
from service.job_queue import live_workers, queue_depth
from service.settings import Settings, load_settings

log = logging.getLogger(__name__)
VERSION = "0.2.0"


def create_app(services: Services, *, run_background: bool = True) -> FastAPI:
    """The API over `services`. It also runs a webhook dispatcher and a reaper thread (each safe beside
    the other processes' ones), so webhooks and abandoned jobs are handled even with no worker up."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        stop = threading.Event()
        threads = start_background(services, stop) if run_background else []
        yield
        stop.set()
        for thread in threads:
            thread.join(5)

    app = FastAPI(
        title="FastVSR video super-resolution",
        version=VERSION,
        description="Submit low-resolution videos, get 4x upscaled ones (FastVSR, one-step diffusion).",
        lifespan=lifespan,
    )
    app.state.services = services
    install_error_handlers(app)
    app.include_router(routes_jobs.router)
    app.include_router(routes_system.router)
    app.include_router(routes_console.router)  # the web console at /
    generate_spec = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = routes_jobs.add_schemas(generate_spec())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    services.metrics.watch_queue(lambda: queue_depth(services.queue), lambda: live_workers(services.queue))

    @app.middleware("http")
    async def record_request(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        start = time.perf_counter()
        try:
            response = await call_next(request)
        except Exception:
            # Answered here, in the one error shape, rather than left to the server: uvicorn would send a
            # bare 500 and close the connection with the upload unread, so the client could see a reset
            # instead of the answer. A handled response keeps the connection and drains the body. (Not an
            # `exception_handler(Exception)` in errors.py: Starlette re-raises those to the server.)
            log.exception("unhandled error in %s %s", request.method, request.url.path)
            response = error_response(500, "internal_error", "internal server error; it is logged")
        template = getattr(request.scope.get("route"), "path", "unmatched")
        metrics = services.metrics
        metrics.requests.labels(request.method, template, str(response.status_code)).inc()
        metrics.request_seconds.labels(request.method, template).observe(time.perf_counter() - start)
        return response

    return app


def app_from_settings(settings: Settings) -> FastAPI:
    return create_app(build_services(settings))


def app_from_env() -> FastAPI:
    """uvicorn factory: `uvicorn service.api.app:app_from_env --factory`."""
    return app_from_settings(load_settings())
