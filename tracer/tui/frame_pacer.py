"""A screen's repaint timer that paints a key's frames at once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from textual.message_pump import MessagePump
from textual.timer import Timer, TimerCallback

# For this long after a key or click, frames are not held back by the cap. Longer than one
# frame: a batch's frame painted between the key's arrival and its handling must not make the
# key's own frame wait for the next slot (measured: up to 16 ms more while streaming).
INPUT_FRAMES_S = 0.1


class FramePacer(Timer):
    """Textual's screen repaint timer keeps frames one interval apart (60 fps), and when
    resumed after a pause it first sleeps to the second frame slot ahead: a key's frame waited
    up to 33 ms with nothing to do whenever a batch had repainted the status bar just before
    (measured, pinned textual==8.2.8). This one paints at once shortly after a key or click,
    and otherwise waits only until the last frame is an interval old, so bursts of updates
    from the feed still coalesce."""

    def __init__(
        self,
        target: MessagePump,
        interval: float,
        callback: TimerCallback,
        input_at: Callable[[], float],
    ) -> None:
        super().__init__(target, interval, name="screen_update", callback=callback, pause=True)
        self._input_at = input_at  # time.monotonic() of the last key or click

    async def _run(self) -> None:
        last = float("-inf")
        while True:
            await self._active.wait()  # resumed when a widget needs repainting
            now = time.monotonic()
            wait = last + self._interval - now
            if wait > 0 and now - self._input_at() > INPUT_FRAMES_S:
                await asyncio.sleep(wait)
                continue  # still wanted? A layout pass may have painted and paused meanwhile
            last = now
            await self._tick(next_timer=last, count=0)
            # The repaint pauses this timer; when it does not (the app is exiting, the callback
            # failed) the loop must still let the event loop run.
            await asyncio.sleep(0)
