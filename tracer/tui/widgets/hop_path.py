"""One request's hop path, drawn by PathDrawing at the widget's width (a line-API view)."""

from __future__ import annotations

from rich.segment import Segment
from rich.text import Text
from textual.geometry import Size
from textual.strip import Strip

from tracer.model import Request
from tracer.tui.colors import palette_of
from tracer.tui.path_render import PathDrawing
from tracer.tui.store import revision
from tracer.tui.widgets.line_view import LineView

EMPTY = Text("No request selected: pick one in the list above.", style="dim")


class HopPath(LineView, can_focus=False):
    """Shows a request's path; `highlight` marks the current hop (talk mode).

    Its own scrolling and fixed size: a new path never makes the screen lay out again.
    """

    def __init__(self, *, id: str | None = None, focusable: bool = False) -> None:
        super().__init__(id=id)
        # Under the request list, Tab reaches the path and the arrows scroll it; talk mode
        # keeps the arrows for its hops.
        self.can_focus = focusable
        self.request: Request | None = None
        self.task_color = 0
        self.highlight: int | None = None
        self.drawing: PathDrawing | None = None
        self._key: tuple[object, ...] = ()
        self._strips: dict[int, Strip] = {}

    def on_mount(self) -> None:
        self.watch(self.app, "theme", self._redraw, init=False)

    def show(
        self, request: Request | None, *, task_color: int = 0, highlight: int | None = None
    ) -> None:
        self.request, self.task_color, self.highlight = request, task_color, highlight
        self._redraw()

    def on_resize(self) -> None:
        self._redraw()

    def _redraw(self) -> None:
        drawing = self._draw(self.scrollable_content_region.width or self.size.width)
        lines = len(drawing.lines) if drawing is not None else 1
        self._strips.clear()
        self.set_content_size(Size(self.scrollable_content_region.width, lines))
        self.refresh()

    def _draw(self, width: int) -> PathDrawing | None:
        """The drawing for the current request, width and theme; made once, then reused."""
        if self.request is None or width <= 0:
            return None
        palette = palette_of(self.app)
        key = (width, palette, self.task_color, self.highlight, revision(self.request))
        if self.drawing is None or self.drawing.r is not self.request or self._key != key:
            self.drawing = PathDrawing(
                self.request, width, palette, task_color=self.task_color, highlight=self.highlight
            )
            self._key = key
        return self.drawing

    def render_line(self, y: int) -> Strip:
        # scroll_offset rounds scroll_y as Textual does when it decides to repaint; int() would
        # lag one line behind an animated scroll (End left the last line, the reply, hidden).
        index = self.scroll_offset.y + y
        width = self.scrollable_content_region.width
        strip = self._strips.get(index)
        if strip is None:
            if self.request is None:
                lines = [EMPTY]
            else:
                lines = self.drawing.lines if self.drawing is not None else []
            if index >= len(lines):
                return Strip.blank(width, self.line_style)
            style = self.line_style
            segments = Segment.apply_style(lines[index].render(self.app.console), style)
            strip = self._strips[index] = Strip(segments).crop_extend(0, width, style)
        return strip

    def shows(self, request: Request) -> bool:
        """True when the path on screen is this request as it is now."""
        drawn = self.drawing is not None and self.drawing.r is request
        return drawn and self._key[-1] == revision(request)

    def highlight_line(self) -> int | None:
        """The line of the highlighted hop, to scroll it into view."""
        if self.drawing is None or self.highlight is None:
            return None
        return self.drawing.hop_lines.get(self.highlight)
