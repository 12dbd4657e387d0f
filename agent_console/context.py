"""What the console's routes need, attached to the app once and handed out as a dependency."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from fastapi import Request

from dialer.clock import Clock, SystemClock
from dialer.ports import Carrier
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
    carrier: Carrier | None = None  # click-to-call when its capabilities allow it
    clock: Clock = field(default_factory=SystemClock)

    def now(self) -> datetime:
        return self.clock.now()


async def console_context(request: Request) -> ConsoleContext:
    ctx: ConsoleContext = request.app.state.ctx
    return ctx
