"""The always-visible context line: live or replay, source, rates, losses, filters, notes."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text

from tracer.tui.feed import FeedStats
from tracer.tui.widgets.text_box import TextBox


@dataclass(frozen=True)
class StatusState:
    stats: FeedStats | None
    requests: int
    shown: int
    query: str
    paused: bool
    follow: bool
    finished: bool
    speed: float | None  # replay speed, None when the feed cannot be paced


def _count(n: float) -> str:
    if n >= 1e6:
        return f"{n / 1e6:.1f}M"
    if n >= 1e4:
        return f"{n / 1e3:.0f}k"
    if n >= 1e3:
        return f"{n / 1e3:.1f}k"
    return f"{n:.0f}"


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    return f"{m:02d}:{s:02d}"


def status_text(st: StatusState) -> Text:
    t = Text()
    stats = st.stats
    if st.paused:
        t.append(" ⏸ PAUSED ", style="bold reverse")
    elif stats is None or not stats.source.live:
        t.append(" ▶ REPLAY ", style="bold reverse")
    else:
        t.append(" ● LIVE ", style="bold reverse")
    if stats is not None:
        src = stats.source
        t.append(f" {src.backend}", style="bold")
        if src.kernel:
            t.append(f" {src.kernel}")
        # Notes such as "IPVS stand-in" change what the user sees: show them early.
        for note in src.notes:
            t.append(f" │ {note}", style="bold")
        if st.speed is not None:
            t.append(f" │ {st.speed:g}x")
        if stats.position_s is not None and stats.duration_s is not None:
            t.append(f" {_clock(stats.position_s)}/{_clock(stats.duration_s)}")
        t.append(f" │ {_count(stats.events_per_s)} ev/s")
        t.append(" │ lost ")
        t.append(_count(stats.lost), style="bold red" if stats.lost else "")
        if stats.filters:
            t.append(f" │ trace {stats.filters}")
    shown = f"{_count(st.shown)}/{_count(st.requests)}" if st.query else _count(st.requests)
    t.append(f" │ {shown} req")
    if st.query:
        t.append(" │ filter ")
        t.append(st.query, style="bold")
    if st.follow:
        t.append(" │ follow")
    if st.finished:
        t.append(" │ end of trace", style="bold")
    return t


class StatusBar(TextBox):
    """One line rendered from the app's StatusState on every batch."""

    DEFAULT_CSS = "StatusBar { height: 1; }"

    def update_state(self, state: StatusState) -> None:
        self.update(status_text(state))
