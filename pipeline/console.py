"""Terminal output: rich progress bars on a terminal, plain log lines otherwise (CI, DVC logs)."""

from __future__ import annotations

import time

from rich.console import Console

console = Console(stderr=True, highlight=False, soft_wrap=True)


def log(message: str) -> None:
    console.print(message, markup=False)


def is_interactive() -> bool:
    return console.is_terminal


class Progress:
    """`update(done)` moves a bar on a terminal; elsewhere it prints a line every `every` seconds."""

    def __init__(self, description: str, total: float | None, every: float = 10.0):
        self.description, self.total, self.every = description, total, every
        self._bar = None
        self._last_line = 0.0

    def __enter__(self) -> "Progress":
        if is_interactive():
            from rich.progress import BarColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
            from rich.progress import Progress as RichProgress

            self._bar = RichProgress(
                TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[info]}"),
                TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=False,
            )
            self._bar.start()
            self._task = self._bar.add_task(self.description, total=self.total, info="")
        return self

    def update(self, done: float, total: float | None = None, info: str = "") -> None:
        if total is not None:
            self.total = total
        if self._bar is not None:
            self._bar.update(self._task, completed=done, total=self.total, info=info)
        elif time.monotonic() - self._last_line >= self.every or (self.total and done >= self.total):
            self._last_line = time.monotonic()
            of = f"/{self.total:,.0f}" if self.total else ""
            log(f"{self.description}: {done:,.0f}{of} {info}".rstrip())

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.stop()
