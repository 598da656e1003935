"""The filter's input line: an Input that does not lay out the whole screen per typed key."""

from __future__ import annotations

from textual.geometry import Size
from textual.widget import Widget
from textual.widgets import Input


class FilterBox(Input):
    """Input sets its virtual_size, a layout reactive, on every change of its value: a layout of
    the whole screen per key (~5 ms of UI CPU with the request list). The box's size comes from
    CSS; only its scroll width follows the text, so set that without a layout."""

    def _watch_value(self, value: str) -> None:
        size = Size(self.content_width, 1)
        if size != self.virtual_size:
            self.set_reactive(Widget.virtual_size, size)
            # Textual's own update of the scroll limits (pinned textual==8.2.8).
            self._scroll_update(size)
        super()._watch_value(value)
