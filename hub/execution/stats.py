"""The gateway's counters (published in its heartbeat ``tf:gateway:<name>``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from core.histogram import Histogram


@dataclass
class GatewayStats:
    intents: int = 0
    submitted: int = 0
    rejected: int = 0
    duplicates: int = 0
    reused_ids: int = 0
    refused: int = 0
    bad_intents: int = 0
    poison: int = 0
    replayed: int = 0
    #: orders restored from the broker (Redis had lost them) that their own replayed intent claimed back
    adopted: int = 0
    ack_latency_ns: list[int] = field(default_factory=list)
    ack_ms: Histogram = field(default_factory=Histogram)  # intent sent -> handled, for the dashboard's metrics
