"""Line-API views whose content height changes often (live list, hop path)."""

from __future__ import annotations

from rich.style import Style
from textual.geometry import Region, Size
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.widget import Widget


class LineView(ScrollView):
    """A ScrollView whose vertical scrollbar is always shown, so a new content height needs
    no screen layout: setting `virtual_size` (a layout reactive) costs a full arrange of the
    screen per change, ~30 ms here; this repaints the view and its scrollbar only."""

    DEFAULT_CSS = "LineView { overflow-x: hidden; overflow-y: scroll; scrollbar-size-vertical: 1; }"

    line_style = Style()  # the widget's rich_style as of the frame being drawn

    def render_lines(self, crop: Region) -> list[Strip]:
        # rich_style walks the styles of every ancestor (~0.1 ms): look it up once per frame,
        # not in render_line, where a new hop path asked for it twice per line drawn.
        self.line_style = self.rich_style
        return super().render_lines(crop)

    def set_content_size(self, size: Size) -> None:
        if size == self.virtual_size:
            return
        self.set_reactive(Widget.virtual_size, size)
        # Textual's own update of scrollbar thumb and scroll limits (pinned textual==8.2.8).
        self._scroll_update(size)
        self.refresh()
