"""Talk mode for a plain terminal (`replay --step --no-tui`): one hop and its sentence per Enter."""

from __future__ import annotations

from collections.abc import Callable
from typing import TextIO

from tracer.model import Request
from tracer.sinks.hop_order import causal_hops
from tracer.sinks.narrate import narrate_hop, outcome
from tracer.sinks.text import hop_line, summary

PROMPT = "  [Enter] next hop  [n] next request  [q] quit "


class StepSink:
    """Writes a request hop by hop; `ask` waits for the speaker (None: do not wait)."""

    def __init__(self, out: TextIO, ask: Callable[[str], str] | None = None) -> None:
        self._out = out
        self._ask = ask
        self.quit = False

    def write(self, req: Request) -> None:
        if self.quit:
            return
        self._out.write(f"\n#{req.id} {summary(req)}\n")
        prev = None
        for hop in causal_hops(req):
            self._out.write(hop_line(req, hop) + "\n")
            self._out.write(f"        {narrate_hop(req, hop, prev)}\n")
            self._out.flush()
            prev = hop
            answer = self._ask(PROMPT).strip().lower() if self._ask is not None else ""
            if answer == "q":
                self.quit = True
                return
            if answer == "n":
                break
        self._out.write(f"  => {outcome(req)}\n")
        self._out.flush()

    def close(self) -> None:
        self._out.flush()
