"""ASGI entry point: ``uvicorn --factory dunning.app:create_app``."""

from __future__ import annotations

from fastapi import FastAPI

from agent_console.app import create_console
from dunning.wiring import build_services, console_context
from kernel.settings import get_settings


def create_app() -> FastAPI:
    services = build_services(get_settings())
    app = create_console(console_context(services))
    app.state.services = services
    return app
