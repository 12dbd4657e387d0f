"""IVR flows as YAML data and the pure engine that steps them.

``load_builtin_flow()`` / ``load_flow(path)`` give a validated :class:`Flow`;
``start(flow, ctx)`` the initial :class:`State`; ``step(flow, ctx, state, event)`` the actions
to perform and the next state. Events and actions share the name ``Hangup``: import them as
``ivr_scripts.events.Hangup`` / ``ivr_scripts.actions.Hangup`` or use the aliases
``HangupEvent`` / ``HangupAction`` exported here.
"""

from ivr_scripts import actions, events
from ivr_scripts.actions import (
    Action,
    AddDoNotCall,
    Gather,
    MarkWrongNumber,
    RecordOutcome,
    RequestCallback,
    RequestSms,
    Say,
    Transfer,
)
from ivr_scripts.actions import Hangup as HangupAction
from ivr_scripts.checks import steps_before_confirmation
from ivr_scripts.engine import start, step
from ivr_scripts.events import CallAnswered, Digits, Event, NoInput, Speech, TransferResult
from ivr_scripts.events import Hangup as HangupEvent
from ivr_scripts.flow import Flow, FlowError
from ivr_scripts.loader import load_builtin_flow, load_flow, parse_flow
from ivr_scripts.model import (
    CallContext,
    OutcomeCode,
    ReceivableItem,
    SecondFactor,
    State,
    TimeBand,
)
from ivr_scripts.transcript import Transcript, Turn, run_script

__all__ = [
    "Action",
    "AddDoNotCall",
    "CallAnswered",
    "CallContext",
    "Digits",
    "Event",
    "Flow",
    "FlowError",
    "Gather",
    "HangupAction",
    "HangupEvent",
    "MarkWrongNumber",
    "NoInput",
    "OutcomeCode",
    "ReceivableItem",
    "RecordOutcome",
    "RequestCallback",
    "RequestSms",
    "Say",
    "SecondFactor",
    "Speech",
    "State",
    "TimeBand",
    "Transcript",
    "Transfer",
    "TransferResult",
    "Turn",
    "actions",
    "events",
    "load_builtin_flow",
    "load_flow",
    "parse_flow",
    "run_script",
    "start",
    "step",
    "steps_before_confirmation",
]
