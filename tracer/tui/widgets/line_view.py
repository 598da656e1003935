"""Line-API views whose content height changes often (live list, hop path)."""

from __future__ import annotations

from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.widget import Widget


class LineView(ScrollView):
    """A ScrollView whose vertical scrollbar is always shown, so a new content height needs
    no screen layout: setting `virtual_size` (a layout reactive) costs a full arrange of the
    screen per change, ~30 ms here; this repaints the view and its scrollbar only."""

    DEFAULT_CSS = "LineView { overflow-x: hidden; overflow-y: scroll; scrollbar-size-vertical: 1; }"

    def set_content_size(self, size: Size) -> None:
        if size == self.virtual_size:
            return
        self.set_reactive(Widget.virtual_size, size)
        # Textual's own update of scrollbar thumb and scroll limits (pinned textual==8.2.8).
        self._scroll_update(size)
        self.refresh()
