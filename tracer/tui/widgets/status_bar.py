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
    """Playback first (what the keys change), then what is shown, then where it comes from:
    a narrow terminal cuts the source details, never the part that answers a key."""
    t = Text()
    stats = st.stats
    if st.paused:
        t.append(" ⏸ PAUSED ", style="bold reverse")
    elif stats is None or not stats.source.live:
        t.append(" ▶ REPLAY ", style="bold reverse")
    else:
        t.append(" ● LIVE ", style="bold reverse")
    if st.speed is not None:
        t.append(f" {st.speed:g}x", style="bold")
    if stats is not None and stats.position_s is not None and stats.duration_s is not None:
        t.append(f" {_clock(stats.position_s)}/{_clock(stats.duration_s)}")
    if st.finished and st.speed is not None:
        t.append(" end of trace", style="bold")
    t.append(" │ follow" if st.follow else " │ follow off")
    shown = f"{_count(st.shown)}/{_count(st.requests)}" if st.query else _count(st.requests)
    t.append(f" │ {shown} req")
    if st.query:
        t.append(" │ filter ")
        t.append(st.query, style="bold")
    if stats is None:
        return t
    if stats.damage:
        t.append(f" │ damaged: {stats.damage}", style="bold red")
    src = stats.source
    t.append(f" │ {src.backend}", style="bold")
    if src.kernel:
        t.append(f" {src.kernel}")
    # Notes such as "IPVS stand-in" change what the user sees: show them early.
    for note in src.notes:
        t.append(f" │ {note}", style="bold")
    if src.live:
        t.append(f" │ {_count(stats.events_per_s)} ev/s")
    t.append(" │ lost ")
    t.append(_count(stats.lost), style="bold red" if stats.lost else "")
    if stats.filters:
        t.append(f" │ trace {stats.filters}")
    return t


class StatusBar(TextBox):
    """One line rendered from the app's StatusState on every batch."""

    DEFAULT_CSS = "StatusBar { height: 1; }"

    def update_state(self, state: StatusState) -> None:
        self.update(status_text(state))
