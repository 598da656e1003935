#!/usr/bin/env python3
"""The README's TUI pictures, taken from the real TUI: `swarmtrace replay` built as the command
builds it, run headless at a fixed size, keys pressed as a user would, the screen printed as
text. Paste the output into the README's "The TUI" section after a change to the TUI's look.
usage: .venv/bin/python scripts/readme_pictures.py [lab | sample | present]...
"""

from __future__ import annotations

import asyncio
import io
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402

from tracer.commands.replay import sample_path  # noqa: E402
from tracer.pipeline import Pipeline  # noqa: E402
from tracer.tracefile.replay import ReplaySource  # noqa: E402
from tracer.tracefile.topology import trace_names  # noqa: E402
from tracer.tui.app import SwarmtraceApp  # noqa: E402
from tracer.tui.pipeline_feed import replay_feed  # noqa: E402


@dataclass(frozen=True)
class Picture:
    trace: Path
    size: tuple[int, int]
    keys: tuple[str, ...]  # pressed once the whole trace is in


PICTURES = {
    # `swarmtrace replay tests/fixtures/lab_mesh_vip.swt --speed 64`, request #2 selected.
    "lab": Picture(ROOT / "tests/fixtures/lab_mesh_vip.swt", (100, 30), ("home", "down")),
    # `swarmtrace replay --sample --speed 64`, request #2: the mesh entering node2.
    "sample": Picture(sample_path(), (100, 46), ("home", "down")),
    # `swarmtrace replay --sample`, then talk mode (t) in the presentation layout (p): `: 2 Enter`
    # and → five times, to request #2's LB hop.
    "present": Picture(sample_path(), (100, 30),
                       ("t", "p", "colon", "2", "enter", *["right"] * 5)),
}


def screen_text(app: SwarmtraceApp) -> str:
    width, height = app.size
    console = Console(width=width, height=height, file=io.StringIO(), record=True)
    console.print(app.screen._compositor.render_update(full=True))
    return "\n".join(line.rstrip() for line in console.export_text().splitlines())


async def take(picture: Picture) -> str:
    with ReplaySource(picture.trace) as source:
        pipe = Pipeline(source, trace_names(picture.trace), source.header.lb_note)
        feed = replay_feed(pipe, speed=64.0)
        app = SwarmtraceApp(feed, title=f"swarmtrace replay {picture.trace.name}")
        async with app.run_test(size=picture.size) as pilot:
            for _ in range(600):  # the whole trace, at 64x
                if app.state.finished:
                    break
                await pilot.pause(0.05)
            else:
                raise SystemExit(f"{picture.trace.name}: the replay did not finish in 30 s")
            await pilot.press(*picture.keys)
            await pilot.pause(0.5)  # the last key's redraw
            return screen_text(app)


def main(names: list[str]) -> int:
    for name in names or list(PICTURES):
        if name not in PICTURES:
            print(f"no picture {name!r}: one of {', '.join(PICTURES)}", file=sys.stderr)
            return 2
        print(f"--- {name}\n{asyncio.run(take(PICTURES[name]))}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
