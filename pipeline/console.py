"""Terminal output: rich progress bars on a terminal, plain log lines otherwise (CI, DVC logs)."""

from __future__ import annotations

import math
import time

from rich.console import Console

console = Console(stderr=True, highlight=False, soft_wrap=True)


def log(message: str) -> None:
    console.print(message, markup=False)


def is_interactive() -> bool:
    return console.is_terminal


def clock_time(seconds: float) -> str:
    """h:mm:ss, as rich prints elapsed time."""
    seconds = max(int(round(seconds)), 0)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def duration_text(seconds: float) -> str:
    """43s, 4m 58s, 2h 05m: a duration for people."""
    seconds = max(int(round(seconds)), 0)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"


class Eta:
    """Time left from seconds per unit of work averaged over about the last `tau` seconds, so that
    it moves smoothly rather than with each slow or fast stretch (rich's own estimate, over the
    last 30 s, swung between 37 and 52 minutes with the evaluation pauses of one training).

    A sample is taken once at least `window` seconds have passed since the last one: the seconds
    and the work since. Work reported in bursts (training reads its losses back every log_interval
    steps) is counted in full, if not in this sample then in the next. Seconds and work are summed
    with weights that fall by e every `tau` seconds, and divided: a pause weighs what it lasted."""

    def __init__(self, window: float = 5.0, tau: float = 120.0):
        self.window, self.tau = window, tau
        self.seconds_per_unit: float | None = None
        self._seconds = self._units = 0.0  # the decayed sums
        self._anchor: tuple[float, float] | None = None  # (done, time) of the last sample

    def update(self, done: float, now: float) -> None:
        if self._anchor is None or done < self._anchor[0]:  # the first report, or work went back
            self._anchor = (done, now)
            return
        since, then = self._anchor
        seconds = now - then
        if seconds < self.window or done <= since:
            return
        decay = math.exp(-seconds / self.tau)
        self._seconds = self._seconds * decay + seconds
        self._units = self._units * decay + (done - since)
        self.seconds_per_unit = self._seconds / self._units
        self._anchor = (done, now)

    def seconds_left(self, done: float, total: float | None) -> float | None:
        if not total or self.seconds_per_unit is None:
            return None
        return max(total - done, 0) * self.seconds_per_unit


def count(done: float, total: float | None) -> str:
    """`done/total (pct%)`, or `done` where the total is unknown."""
    if not total:
        return f"{done:,.0f}"
    return f"{done:,.0f}/{total:,.0f} ({min(done / total, 1):.0%})"


def status_line(description: str, done: float, total: float | None, info: str, elapsed: float,
                eta: float | None) -> str:
    """The plain progress line logs get: what, how far, the caller's info, time spent and left."""
    parts = [count(done, total), info, f"{clock_time(elapsed)} elapsed"]
    if eta is not None:
        parts.append(f"ETA {clock_time(eta)}")
    return f"{description}: " + " · ".join(part for part in parts if part)


class Progress:
    """`update(done)` moves a bar on a terminal; elsewhere (a pipe, a CI log) it prints a plain line
    at the first update, whenever `percent` more of the total is done or `every` seconds have
    passed since the last line, whichever comes first, and at the end, the last state (also when
    the total was never reached: the total was an estimate). Both show done/total, the caller's
    info, the time spent and a smoothed ETA (`Eta`)."""

    def __init__(self, description: str, total: float | None, every: float = 10.0, percent: float = 5.0,
                 clock=time.monotonic):
        self.description, self.total, self.every, self.percent = description, total, every, percent
        self.clock, self.eta = clock, Eta()
        self._bar = None
        self._started = clock()
        self._last_line: float | None = None  # when the last plain line was printed
        self._last_bucket = -1  # the `percent` step of the total the last line was in
        self._done: float | None = None  # the last update's
        self._info = ""
        self._printed: float | None = None  # the done value of the last plain line

    def __enter__(self) -> "Progress":
        self._started = self.clock()
        if is_interactive():
            from rich.progress import BarColumn, TextColumn, TimeElapsedColumn
            from rich.progress import Progress as RichProgress

            self._bar = RichProgress(
                TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[count]}"),
                TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TextColumn("{task.fields[eta]}"),
                console=console, transient=False,
            )
            self._bar.start()
            self._task = self._bar.add_task(self.description, total=self.total, info="",
                                            count=count(0, self.total), eta="")
        return self

    def update(self, done: float, total: float | None = None, info: str = "") -> None:
        if total is not None:
            self.total = total
        now = self.clock()
        self.eta.update(done, now)
        self._done, self._info = done, info
        eta = self.eta.seconds_left(done, self.total)
        if self._bar is not None:
            self._bar.update(self._task, completed=done, total=self.total, info=info,
                             count=count(done, self.total), eta="" if eta is None else f"ETA {clock_time(eta)}")
            return
        bucket = int(min(done / self.total, 1) * 100 // self.percent) if self.total else -1
        reached = bool(self.total) and done >= self.total and (self._printed or 0) < self.total
        if self._last_line is None or now - self._last_line >= self.every or bucket > self._last_bucket or reached:
            self._line(now, eta)
            self._last_bucket = max(bucket, self._last_bucket)

    def _line(self, now: float, eta: float | None) -> None:
        self._last_line, self._printed = now, self._done
        log(status_line(self.description, self._done, self.total, self._info, now - self._started, eta))

    def __exit__(self, exc_type, *exc) -> None:
        if self._bar is not None:
            self._bar.stop()
        elif exc_type is None and self._done is not None and self._printed != self._done:
            self._line(self.clock(), None)
