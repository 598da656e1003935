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
    """Show requests from feed until the user quits; step=True starts in talk mode,
    present=True in its presentation layout; query is the filter to start with."""
    from tracer.tui.app import SwarmtraceApp  # Textual loads only when a TUI is shown

    SwarmtraceApp(feed, step=step, title=title, query=query, present=present).run()
