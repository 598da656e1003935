"""A fixed-size text widget: new content repaints it without laying out the screen again."""

from __future__ import annotations

from rich.text import Text
from textual.widget import Widget


class TextBox(Widget):
    """Like Static, but update() only repaints (its size comes from CSS, not its content)."""

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.content: Text | str = ""

    def update(self, content: Text | str) -> None:
        if content != self.content:
            self.content = content
            self.refresh()

    def render(self) -> Text | str:
        return self.content
