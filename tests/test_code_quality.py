"""The project's own checks: ruff, strict mypy, and the core never importing the TUI or BCC."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *argv], cwd=ROOT, capture_output=True,
                          text=True, check=False)


def test_ruff() -> None:
    r = _run("ruff", "check", "tracer", "tests", "scripts")
    assert r.returncode == 0, r.stdout + r.stderr


def test_mypy_strict() -> None:
    r = _run("mypy", "tracer")
    assert r.returncode == 0, r.stdout + r.stderr


def test_replay_and_correlation_load_neither_tui_nor_bcc() -> None:
    # Replay, export and correlation must run where Textual or BCC are missing.
    code = ("import sys, tracer.pipeline, tracer.tracefile, tracer.sinks.text, tracer.correlate;"
            "bad = [m for m in sys.modules if m.startswith(('textual', 'bcc', 'tracer.tui'))];"
            "print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stdout


def _tracer_imports(path: Path) -> set[str]:
    """Every tracer module that `path` imports, at any level: top, function or TYPE_CHECKING."""
    import ast

    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("tracer"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("tracer"):
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
    return found


def test_no_import_cycles() -> None:
    # A cycle, even one only a type checker or a lazy import sees, ties two floors together.
    modules = {
        ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p
        for p in (ROOT / "tracer").rglob("*.py")
    }
    graph = {m: {i for i in _tracer_imports(p) if i in modules and i != m}
             for m, p in modules.items()}
    # Importing a package's name from itself (tracer.x -> tracer) is not a dependency edge.
    graph = {m: {i for i in deps if not m.startswith(i + ".")} for m, deps in graph.items()}
    done: set[str] = set()
    cycles: list[list[str]] = []

    def visit(m: str, stack: list[str]) -> None:
        if m in stack:
            cycles.append([*stack[stack.index(m):], m])
            return
        if m in done:
            return
        for dep in sorted(graph[m]):
            visit(dep, [*stack, m])
        done.add(m)

    for m in sorted(graph):
        visit(m, [])
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)
