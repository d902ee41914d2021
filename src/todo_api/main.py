"""Entry point for ASGI servers: `uvicorn --factory todo_api.main:create_app_from_environment`."""

import gc

from fastapi import FastAPI

from todo_api.app import create_app
from todo_api.config import Settings
from todo_api.observability import configure_logging

# Young-generation collections every 50,000 net allocations instead of 700: a request
# allocates thousands of short-lived objects, and at the default the collector ran several
# times per request and stalled some of them (measured with wrk at 10 connections on one
# task: p99 64 ms -> 7 ms, p50 unchanged).
GC_GENERATION0_THRESHOLD = 50_000


def tune_garbage_collector() -> None:
    """Move everything loaded at start-up out of the collector's sight, and collect less often."""
    gc.collect()
    gc.freeze()
    _, generation1, generation2 = gc.get_threshold()
    gc.set_threshold(GC_GENERATION0_THRESHOLD, generation1, generation2)


def create_app_from_environment() -> FastAPI:
    """Settings from the environment, logging configured: what each worker process runs."""
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    app = create_app(settings)
    tune_garbage_collector()
    return app
