"""One request's hop path, drawn by PathDrawing at the widget's width."""

from __future__ import annotations

from rich.text import Text
from textual.widget import Widget

from tracer.model import Request
from tracer.tui.colors import palette_of
from tracer.tui.path_render import PathDrawing


class HopPath(Widget):
    """Shows a request's path; `highlight` marks the current hop (talk mode)."""

    DEFAULT_CSS = "HopPath { height: auto; }"

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.request: Request | None = None
        self.task_color = 0
        self.highlight: int | None = None
        self.drawing: PathDrawing | None = None

    def on_mount(self) -> None:
        self.watch(self.app, "theme", lambda: self.refresh(layout=True), init=False)

    def show(self, request: Request | None, *, task_color: int = 0, highlight: int | None = None) -> None:
        self.request, self.task_color, self.highlight = request, task_color, highlight
        self.refresh(layout=True)

    def _draw(self, width: int) -> PathDrawing | None:
        if self.request is None:
            return None
        self.drawing = PathDrawing(
            self.request,
            width,
            palette_of(self.app),
            task_color=self.task_color,
            highlight=self.highlight,
        )
        return self.drawing

    def render(self) -> Text:
        drawing = self._draw(self.content_size.width or 80)
        if drawing is None:
            return Text("No request selected: pick one in the list above.", style="dim")
        return drawing.text()

    def get_content_height(self, container: object, viewport: object, width: int) -> int:
        drawing = self._draw(width)
        return 1 if drawing is None else len(drawing.lines)

    def highlight_line(self) -> int | None:
        """The line of the highlighted hop, to scroll it into view."""
        if self.drawing is None or self.highlight is None:
            return None
        return self.drawing.hop_lines.get(self.highlight)
