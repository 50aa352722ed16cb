"""Continuous batching for serving: many requests share one KV-cache decoder (folio.generate's
`Decoder`), each joining the running batch and leaving it at a token boundary.

A `Batcher` owns one model and one thread. `submit` queues a `Job` (one prompt, `n` samples, its
own sampling settings and seed), or raises `QueueFull` when more than `max_queue` jobs would wait
beyond the batch's free rows (jobs that arrive together and fit the batch do not count). Before
each decoding step the thread moves waiting jobs into the batch while it has room (`max_batch`
rows): their prompts are prefilled in a decoder of their own, which then joins the running one
(`Decoder.join`), so the next step is one batched forward for every row. After each step a row
leaves when it hits a stop string or its `max_new_tokens`, or when its job was cancelled (the
client went away): its cache rows are dropped (`Decoder.reorder`) and the batch goes on.

Each row samples with its own generator, seeded with the job's seed plus its index (so sample i
of seed s is the same whoever shares the batch, up to float rounding), and its own temperature,
top-k and top-p. Text is decoded per row by `folio.textstream.TextStream` (stop strings, whole
characters). Events go to the job's `emit(index, piece, finish_reason)` callback from the
batching thread: a text piece, then one call with the finish reason ("stop", "length", or
"error: <message>" if the step failed). Nothing here knows of HTTP or MLflow.
"""

from __future__ import annotations

import collections
import contextlib
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from folio.generate import Decoder, sample
from folio.model import GPT
from folio.textstream import TextStream


class QueueFull(Exception):
    """More jobs wait than the batcher's queue holds: ask the client to come back later."""


@dataclass
class Job:
    prompt_ids: list[int]
    max_new_tokens: int
    emit: Callable[[int, str, str | None], None]  # (sample index, text piece, finish reason)
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None
    n: int = 1
    cancelled: threading.Event = field(default_factory=threading.Event)
    generated: int = 0  # tokens made so far, over its samples
    submitted: float = field(default_factory=time.monotonic)

    def cancel(self) -> None:
        self.cancelled.set()


@dataclass
class _Row:
    job: Job
    index: int
    stream: TextStream
    generator: torch.Generator
    tokens: int = 0


class Batcher:
    """One model's decoding loop over the requests in flight (see the module docstring)."""

    def __init__(self, model: GPT, tokenizer, max_batch: int = 16, max_queue: int = 64, name: str = "batcher"):
        if max_batch < 1 or max_queue < 0:
            raise ValueError(f"max_batch must be >= 1 and max_queue >= 0, got {max_batch}, {max_queue}")
        self.model, self.tokenizer = model.eval(), tokenizer
        self.max_batch, self.max_queue = max_batch, max_queue
        self.device = next(model.parameters()).device
        self.waiting: collections.deque[Job] = collections.deque()
        self.rows: list[_Row] = []
        self.decoder: Decoder | None = None
        self.condition = threading.Condition()
        self.stopping = False
        self.cancelled = 0  # rows dropped because their job was cancelled
        self.thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self.thread.start()

    # ---- the caller's side

    def submit(self, job: Job) -> None:
        if job.n > self.max_batch:
            raise ValueError(f"n={job.n} exceeds the batch of {self.max_batch} rows this server runs")
        with self.condition:
            if self.stopping:
                raise RuntimeError("this batcher is stopping")
            queued = self._beyond_room([*self.waiting, job])
            if queued > self.max_queue:
                raise QueueFull(f"{queued - 1} requests already wait for room in the batch")
            self.waiting.append(job)
            self.condition.notify()

    def _beyond_room(self, jobs: list[Job]) -> int:
        """How many of `jobs` (in order) would wait: the batch takes them first come, first
        served while its free rows last; jobs that arrive together and fit do not queue."""
        room, queued = self.max_batch - len(self.rows), 0
        for job in jobs:
            if queued == 0 and job.n <= room:
                room -= job.n
            else:
                queued += 1
        return queued

    def load(self) -> dict[str, int]:
        """Rows decoding now, jobs waiting to join, rows cancelled so far."""
        with self.condition:
            return {"active": len(self.rows), "waiting": len(self.waiting), "cancelled": self.cancelled}

    def stop(self) -> None:
        """Finish the jobs in flight and waiting, take no new ones, then end the thread."""
        with self.condition:
            self.stopping = True
            self.condition.notify()

    # ---- the batching thread

    def _loop(self) -> None:
        while True:
            with self.condition:
                while not self.rows and not self.waiting and not self.stopping:
                    self.condition.wait()
                if self.stopping and not self.rows and not self.waiting:
                    return
                joining = []
                while self.waiting and len(self.rows) + sum(j.n for j in joining) + self.waiting[0].n <= self.max_batch:
                    joining.append(self.waiting.popleft())
            gone = [job for job in joining if job.cancelled.is_set()]
            if gone:
                joining = [job for job in joining if not job.cancelled.is_set()]
                with self.condition:
                    self.cancelled += sum(job.n for job in gone)
            try:
                self._step(joining)
            except Exception as err:  # a failed step fails its rows, not the batcher
                message = f"error: {type(err).__name__}: {err}"
                for row in self.rows:
                    with contextlib.suppress(Exception):  # a receiver that is gone too
                        row.job.emit(row.index, "", message)
                with self.condition:
                    self.rows, self.decoder = [], None

    def _new_rows(self, jobs: list[Job]) -> list[_Row]:
        rows = []
        for job in jobs:
            for i in range(job.n):
                generator = torch.Generator(device=self.device)
                if job.seed is None:
                    generator.seed()
                else:
                    generator.manual_seed(job.seed + i)
                rows.append(_Row(job, i, TextStream(self.tokenizer, job.stop), generator))
        return rows

    @torch.inference_mode()
    def _step(self, joining: list[Job]) -> None:
        parts = []
        if self.decoder is not None:
            parts.append(self.decoder.next_logits())
        if joining:
            new_rows = self._new_rows(joining)
            newcomers = Decoder(self.model, [row.job.prompt_ids for row in new_rows])
            parts.append(newcomers.next_logits())  # the prefill
            if self.decoder is None:
                self.decoder = newcomers
            else:
                self.decoder.join(newcomers)
            self.rows += new_rows
        if not parts:
            return
        logits = torch.cat(parts) if len(parts) > 1 else parts[0]  # (B, V)
        ids = [int(sample(logits[b : b + 1], row.job.temperature, row.job.top_k, row.job.top_p,
                          row.generator)) for b, row in enumerate(self.rows)]
        self.decoder.append(ids)
        keep, cancelled = [], 0
        for b, (row, token) in enumerate(zip(self.rows, ids)):
            if row.job.cancelled.is_set():
                cancelled += 1
                continue
            row.tokens += 1
            row.job.generated += 1
            piece = row.stream.push(token)
            if row.stream.stopped:
                row.job.emit(row.index, piece, "stop")
            elif row.tokens >= row.job.max_new_tokens:
                row.job.emit(row.index, piece + row.stream.finish(), "length")
            else:
                if piece:
                    row.job.emit(row.index, piece, None)
                keep.append(b)
        if len(keep) < len(self.rows):
            with self.condition:
                self.cancelled += cancelled
                self.rows = [self.rows[b] for b in keep]
            if keep:
                self.decoder.reorder(keep)
            else:
                self.decoder = None
