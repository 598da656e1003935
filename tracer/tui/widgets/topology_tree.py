"""The enrichment snapshot as a tree: whatever keys it has (nodes, sandboxes, VIPs, IPVS...)."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.widgets import Tree
from textual.widgets.tree import TreeNode


def _leaf(key: str, value: Any) -> Text:
    return Text.assemble((f"{key}: ", "bold"), str(value))


def _add(node: TreeNode[None], key: str, value: Any, depth: int) -> None:
    if isinstance(value, dict) and value and _flat(value) and len(value) <= 6:
        # A small record reads best on one line: "node1  addr=192.168.199.1 role=manager".
        node.add_leaf(_leaf(key, "  ".join(f"{k}={_words(v)}" for k, v in value.items())))
    elif isinstance(value, dict):
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


def current_state(snapshot: dict[str, Any]) -> dict[str, Any]:
    """A names change log ({"changes": [{src, kind, key, value}, ...]}) folded into what holds
    now, per source and kind; any other snapshot is shown as it is."""
    changes = snapshot.get("changes")
    if not isinstance(changes, list):
        return snapshot
    state: dict[str, Any] = {}
    for c in changes:
        key = c.get("key")
        key = "/".join(map(str, key)) if isinstance(key, list) else str(key)
        kinds = state.setdefault(str(c.get("src", "?")), {}).setdefault(str(c.get("kind", "?")), {})
        if c.get("value") is None:
            kinds.pop(key, None)
        else:
            kinds[key] = c["value"]
    return state


def _scalar(v: Any) -> bool:
    return not isinstance(v, dict | list | tuple)


def _flat(value: dict[str, Any]) -> bool:
    """Only scalars and lists of scalars."""
    return all(
        _scalar(v) or (isinstance(v, list | tuple) and all(map(_scalar, v))) for v in value.values()
    )


def _words(v: Any) -> str:
    return ",".join(map(str, v)) if isinstance(v, list | tuple) else str(v)


class TopologyTree(Tree[None]):
    """Rebuilt from a snapshot dict; the shape is the enrichment's, not the TUI's."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("topology", id=id)
        self.show_root = False

    def load(self, snapshot: dict[str, Any] | None) -> None:
        self.clear()
        if not snapshot:
            empty = "No topology yet: the source has not sent a snapshot."
            self.root.add_leaf(Text(empty, style="dim"))
            return
        for key, value in current_state(snapshot).items():
            _add(self.root, str(key), value, 0)
        self.root.expand()
