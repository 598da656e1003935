"""The Textual TUI: a sink for Requests. The tracing core never imports this package."""

from __future__ import annotations

from tracer.tui.feed import FeedBatch, FeedStats, ListFeed, ReplayControls, RequestFeed

__all__ = ["FeedBatch", "FeedStats", "ListFeed", "ReplayControls", "RequestFeed", "run_tui"]


def run_tui(
    feed: RequestFeed,
    *,
    step: bool = False,
    title: str = "swarmtrace",
    query: str = "",
    present: bool = False,
) -> None:
    """Show requests from feed until the user quits; step=True starts in talk mode."""
    from tracer.tui import app  # Textual loads only when a TUI is shown

    app.run_tui(feed, step=step, title=title, query=query, present=present)
