"""What every screen reads: the request store and the latest news from the feed."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tracer.tui.feed import FeedStats
from tracer.tui.store import RequestStore


@dataclass
class TuiState:
    store: RequestStore = field(default_factory=RequestStore)
    stats: FeedStats | None = None
    topology: dict[str, Any] | None = None
    paused: bool = False
    follow: bool = True
    finished: bool = False
    speed: float | None = None  # replay speed; None when the feed cannot be paced
    input_at: float = 0.0  # time.monotonic() of the last key or click: background work yields
