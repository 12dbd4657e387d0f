"""ASGI entry point: ``uvicorn --factory dunning.app:create_app``."""

from __future__ import annotations

from fastapi import FastAPI

from dunning.runtime import create_web_app
from dunning.wiring import build_services
from kernel.settings import get_settings


def create_app() -> FastAPI:
    """The console, the carrier's webhooks and every scheduled job of ``dunning serve``."""
    return create_web_app(build_services(get_settings()))
