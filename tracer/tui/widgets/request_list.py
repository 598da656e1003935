"""The live request list: a line-API view over the bounded RequestStore (not a DataTable)."""

from __future__ import annotations

from typing import ClassVar

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.strip import Strip

from tracer.model import Request
from tracer.tui.colors import palette_of, status_style
from tracer.tui.columns import Column, fit_columns, header_text, row_text
from tracer.tui.path_render import Palette
from tracer.tui.store import RequestStore, revision, task_of
from tracer.tui.widgets.line_view import LineView


class RequestList(LineView, can_focus=True):
    """Line 0 is the column header; line 1 + i shows store.at(i)."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {"request-list--header", "request-list--cursor"}
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up,k", "cursor(-1)", "Up", show=False, id="list.up"),
        Binding("down,j", "cursor(1)", "Down", show=False, id="list.down"),
        Binding("pageup", "page(-1)", "Page up", show=False, id="list.pageup"),
        Binding("pagedown", "page(1)", "Page down", show=False, id="list.pagedown"),
        Binding("home,g", "first", "First", show=False, id="list.first"),
        Binding("end,G", "last", "Last", show=False, id="list.last"),
    ]

    cursor: reactive[int] = reactive(0, always_update=True, init=False)
    follow: reactive[bool] = reactive(True, init=False)

    class Selected(Message):
        """The cursor moved to another request."""

        def __init__(self, request: Request | None) -> None:
            super().__init__()
            self.request = request

    def __init__(self, store: RequestStore, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.store = store
        self._cols: tuple[Column, ...] = ()
        self._palette = Palette()
        self._visible: tuple[tuple[int, int, int], list[Request]] = ((-1, -1, -1), [])
        self._selected_id: int | None = None
        self._position: tuple[int, int] | None = None
        self.clock_offset_ns = 0
        self._strips: dict[tuple[object, ...], Strip] = {}
        self._look = 0  # bumps when theme, columns or clock change what a row looks like
        self._drawn: tuple[int, int] = (-1, 0)  # store version and clock of the last repaint

    # -- data --------------------------------------------------------------------------------

    def store_changed(self) -> None:
        """New requests, updates or a new filter: resize, keep or follow the cursor, redraw."""
        n = len(self.store)
        self.set_content_size(Size(self.size.width, n + 1))
        if n == 0:
            cursor = 0
        elif self.follow:
            cursor = n - 1
        else:
            # Keep the same request under the cursor as old ones leave or the filter changes.
            at = None
            if self._selected_id is not None and self._position is not None:
                at = self.store.index_at(self._position, self._selected_id)
            cursor = min(at if at is not None else 0, n - 1)
        # The app calls this after every batch, also when none came (a paused replay): repaint
        # the rows only when they changed, and move the cursor (which repaints its lines) only
        # when it moves or the rows changed under it. Each batch of a paused replay cost a frame.
        drawn = (self.store.version, self.clock_offset_ns)
        if cursor != self.cursor or drawn != self._drawn:
            self.cursor = cursor
        if drawn != self._drawn:
            self._drawn = drawn
            self.refresh()

    @property
    def selected(self) -> Request | None:
        return self.store.at(self.cursor) if 0 <= self.cursor < len(self.store) else None

    def select_index(self, index: int) -> None:
        self.follow = index >= len(self.store) - 1
        self.cursor = max(0, min(index, len(self.store) - 1))

    def watch_cursor(self, old: int, cursor: int) -> None:
        request = self.selected
        new_id = request.id if request is not None else None
        self._position = self.store.position(cursor) if request is not None else None
        top = self.scroll_y
        self._scroll_to_cursor()
        # A new virtual size is applied on the next refresh: check again after it.
        self.call_after_refresh(self._scroll_to_cursor)
        if self.scroll_y == top:
            # Only the old and the new cursor rows changed (line 0 is the header).
            self.refresh_line(old - int(top) + 1)
            self.refresh_line(cursor - int(top) + 1)
        if new_id != self._selected_id:
            self._selected_id = new_id
            self.post_message(self.Selected(request))

    def _scroll_to_cursor(self) -> None:
        """Scroll only as far as needed to keep the cursor row in view (below the header)."""
        rows = max(self.size.height - 1, 1)
        if self.cursor < self.scroll_y:
            self.scroll_to(y=self.cursor, animate=False, immediate=True)
        elif self.cursor >= self.scroll_y + rows:
            self.scroll_to(y=self.cursor - rows + 1, animate=False, immediate=True)

    def on_mount(self) -> None:
        self._palette = palette_of(self.app)
        self.watch(self.app, "theme", self._theme_changed, init=False)

    def _theme_changed(self) -> None:
        self._palette = palette_of(self.app)
        self._look += 1
        self.refresh()

    def on_resize(self) -> None:
        self._cols = fit_columns(self.size.width)
        self._look += 1
        self.set_content_size(Size(self.size.width, len(self.store) + 1))

    # -- keys and mouse ----------------------------------------------------------------------

    def action_cursor(self, delta: int) -> None:
        self.select_index(self.cursor + delta)

    def action_page(self, direction: int) -> None:
        self.select_index(self.cursor + direction * max(self.size.height - 2, 1))

    def action_first(self) -> None:
        self.select_index(0)

    def action_last(self) -> None:
        self.select_index(len(self.store) - 1)

    def on_click(self, event: events.Click) -> None:
        if event.y >= 1:
            self.select_index(self.scroll_offset.y + event.y - 1)

    # -- drawing -----------------------------------------------------------------------------

    def _rows(self) -> list[Request]:
        top, height = self.scroll_offset.y, self.size.height
        key = (self.store.version, top, height)
        if self._visible[0] != key:
            self._visible = (key, list(self.store.window(top, height)))
        return self._visible[1]

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        base = self.line_style
        if y == 0:
            style = self.get_component_rich_style("request-list--header")
            return self._strip(header_text(self._cols), base + style, width)
        index = self.scroll_offset.y + y - 1
        rows = self._rows()
        if not 0 <= y - 1 < len(rows):
            return Strip.blank(width, base)
        r = rows[y - 1]
        at_cursor = index == self.cursor
        # Rows are redrawn on every scroll and cursor move: keep them rendered, per request and
        # its revision (the correlator may update a request in place) and look.
        key = (r.id, revision(r), at_cursor, width, self._look)
        strip = self._strips.get(key)
        if strip is None:
            if len(self._strips) > 4 * max(self.size.height, 50):
                self._strips.clear()
            p = self._palette
            task = Style(color=p.task(self.store.color_of(task_of(r))), bold=True)
            text = row_text(r, self._cols, task, status_style(p, r.status), self.clock_offset_ns)
            style = base
            if at_cursor:
                style = base + self.get_component_rich_style("request-list--cursor")
            strip = self._strips[key] = self._strip(text, style, width)
        return strip

    def _strip(self, text: Text, style: Style, width: int) -> Strip:
        segments = Segment.apply_style(text.render(self.app.console), style)
        return Strip(segments).crop_extend(0, width, style)
