"""What the console's routes need, attached to the app once and handed out as a dependency."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from kernel.calendar import CallingWindow
from kernel.coordination import Coordination
from kernel.db import Database
from kernel.pii import KeyRing
from kernel.settings import Settings


@dataclass
class ConsoleContext:
    settings: Settings
    database: Database
    coordination: Coordination
    keyring: KeyRing
    calling_window: CallingWindow


def console_context(request: Request) -> ConsoleContext:
    ctx: ConsoleContext = request.app.state.ctx
    return ctx
