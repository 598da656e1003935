"""The enrichment snapshot as a tree: whatever keys it has (nodes, sandboxes, VIPs, IPVS...)."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.widgets import Tree
from textual.widgets.tree import TreeNode


def _leaf(key: str, value: Any) -> Text:
    t = Text(f"{key}: ", style="bold")
    t.append(str(value))
    return t


def _add(node: TreeNode[None], key: str, value: Any, depth: int) -> None:
    if isinstance(value, dict):
        branch = node.add(Text(str(key), style="bold"), expand=depth < 2)
        for k, v in value.items():
            _add(branch, str(k), v, depth + 1)
    elif isinstance(value, list | tuple) and any(isinstance(v, dict | list) for v in value):
        branch = node.add(Text(f"{key} ({len(value)})", style="bold"), expand=depth < 2)
        for i, v in enumerate(value):
            _add(branch, str(i), v, depth + 1)
    elif isinstance(value, list | tuple):
        node.add_leaf(_leaf(key, ", ".join(map(str, value))))
    else:
        node.add_leaf(_leaf(key, value))


class TopologyTree(Tree[None]):
    """Rebuilt from a snapshot dict; the shape is the enrichment's, not the TUI's."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("topology", id=id)
        self.show_root = False

    def load(self, snapshot: dict[str, Any] | None) -> None:
        self.clear()
        if not snapshot:
            self.root.add_leaf(Text("No topology yet: the source has not sent a snapshot.", style="dim"))
            return
        for key, value in snapshot.items():
            _add(self.root, str(key), value, 0)
        self.root.expand()
