"""Entry point for ASGI servers: `uvicorn --factory todo_api.main:create_app_from_environment`."""

from fastapi import FastAPI

from todo_api.app import create_app
from todo_api.config import Settings
from todo_api.observability import configure_logging


def create_app_from_environment() -> FastAPI:
    """Settings from the environment, logging configured: what each worker process runs."""
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    return create_app(settings)
