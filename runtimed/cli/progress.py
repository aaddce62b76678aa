"""Pull and push progress as docker shows it: one line per layer, redrawn in place on a terminal.

Without a terminal, a layer's line is printed only when its status changes,
so logs and pipes get a readable record rather than a flood of byte counts.
"""

from __future__ import annotations

from typing import TextIO

from runtimed.cli.format import human_size

BAR_WIDTH = 50
# Statuses that carry a byte count worth a bar (pull and push).
BAR_STATUSES = frozenset({"Downloading", "Pushing"})


def bar(current: int, total: int) -> str:
    if total <= 0:
        return human_size(current)
    filled = min(BAR_WIDTH, int(BAR_WIDTH * current / total))
    arrow = ">" if filled < BAR_WIDTH else ""
    body = "=" * filled + arrow
    return f"[{body.ljust(BAR_WIDTH)}]  {human_size(current)}/{human_size(total)}"


class PullDisplay:
    def __init__(self, out: TextIO, *, tty: bool) -> None:
        self.out = out
        self.tty = tty
        self.order: list[str] = []
        self.last_status: dict[str, str] = {}

    def status(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def layer(self, layer_id: str, status: str, current: int, total: int) -> None:
        text = f"{layer_id}: {status}"
        if status in BAR_STATUSES:
            text += " " + bar(current, total)
        if not self.tty:
            if self.last_status.get(layer_id) != status:
                self.last_status[layer_id] = status
                self.status(text)
            return
        if layer_id not in self.order:
            self.order.append(layer_id)
            self.out.write(text + "\n")
        else:
            up = len(self.order) - self.order.index(layer_id)
            # Up to the layer's line, clear it, write, and come back down.
            self.out.write(f"\x1b[{up}A\r\x1b[2K{text}\x1b[{up}B\r")
        self.out.flush()
