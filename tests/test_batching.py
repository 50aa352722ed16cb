"""folio.batching, the loop `folio serve` decodes with, on a tiny GPT built here (block 16, so
windows restart): a decoder joined to a running batch gives the logits each gives alone
(`Decoder.join`), requests that join and leave a running batch at different tokens get the text
they get alone (greedy, and seeded sampling), stop strings and max_new_tokens end a row, a full
queue refuses (requests that arrive together and fit the batch do not queue), a cancelled job
leaves the batch, and a batcher told to stop finishes its work."""

from __future__ import annotations

import threading

import pytest
import torch

from folio.batching import Batcher, Job, QueueFull
from folio.generate import Decoder
from folio.model import GPT, GPTConfig
from folio.tokenizers import CharTokenizer

TEXT = "ROMEO: the quick brown fox jumps over the lazy dog.\nJULIET: PACK MY BOX!\n" * 5


@pytest.fixture(scope="module")
def tiny():
    tokenizer = CharTokenizer.train(TEXT)
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tokenizer.vocab_size, n_layer=2, n_head=2, n_embd=32, block_size=16)).eval()
    return model, tokenizer


@torch.inference_mode()
def test_a_joined_decoder_gives_each_row_the_logits_it_has_alone(tiny):
    model, tokenizer = tiny
    first, second = tokenizer.encode("ROMEO: the"), tokenizer.encode("JULIET:")
    alone = [Decoder(model, [first]), Decoder(model, [second])]
    running = Decoder(model, [first])
    running.next_logits()
    running.append([5])
    alone[0].next_logits()
    alone[0].append([5])
    for step in range(30):  # past block_size: both windows restart
        logits = running.next_logits()
        if step == 0:
            newcomer = Decoder(model, [second])
            logits = torch.cat([logits, newcomer.next_logits()])
            running.join(newcomer)
        expected = torch.cat([d.next_logits() for d in alone])
        torch.testing.assert_close(logits, expected, atol=1e-5, rtol=1e-5)
        ids = [3 + step % 7, 4 + step % 5]
        running.append(ids)
        for d, token in zip(alone, ids):
            d.append([token])


class Collector:
    """A job's events: text per sample and its finish reason, and an event when all are done."""

    def __init__(self, n: int = 1):
        self.texts, self.reasons, self.done = [""] * n, [None] * n, threading.Event()

    def emit(self, index: int, piece: str, finish: str | None) -> None:
        self.texts[index] += piece
        if finish is not None:
            self.reasons[index] = finish
            if all(r is not None for r in self.reasons):
                self.done.set()


def _job(tokenizer, prompt: str, collector: Collector, **settings) -> Job:
    return Job(tokenizer.encode(prompt), emit=collector.emit, **settings)


def _run_alone(batcher, tokenizer, prompt, **settings) -> tuple[str, str]:
    collector = Collector()
    batcher.submit(_job(tokenizer, prompt, collector, **settings))
    assert collector.done.wait(30)
    return collector.texts[0], collector.reasons[0]


def test_requests_joining_and_leaving_a_running_batch_get_the_text_they_get_alone(tiny):
    model, tokenizer = tiny
    batcher = Batcher(model, tokenizer, max_batch=8, max_queue=8)
    requests = [("ROMEO:", dict(max_new_tokens=40, temperature=0)),
                ("JULIET: PACK", dict(max_new_tokens=25, temperature=0.9, seed=3)),
                ("the quick", dict(max_new_tokens=33, temperature=1.0, top_k=5, seed=8)),
                ("R", dict(max_new_tokens=50, temperature=0.7, top_p=0.8, seed=1))]
    alone = [_run_alone(batcher, tokenizer, prompt, **settings) for prompt, settings in requests]
    assert [len(text) for text, _ in alone] == [40, 25, 33, 50]  # a char model: a token a character

    collectors = [Collector() for _ in requests]
    progress = threading.Event()
    for i, ((prompt, settings), collector) in enumerate(zip(requests, collectors)):
        if i:  # each joins while the others are mid-way
            progress.clear()
            previous = collectors[i - 1]
            emit = previous.emit

            def watch(index, piece, finish, emit=emit, previous=previous):
                emit(index, piece, finish)
                if len(previous.texts[0]) >= 7:
                    progress.set()

            previous.emit = watch
            assert progress.wait(30)
        batcher.submit(Job(tokenizer.encode(prompt), emit=lambda *event, c=collector: c.emit(*event), **settings))
    for collector in collectors:
        assert collector.done.wait(30)
    assert [(c.texts[0], c.reasons[0]) for c in collectors] == alone
    batcher.stop()
    batcher.thread.join(10)
    assert not batcher.thread.is_alive()


def test_stop_strings_n_samples_and_the_queue_bound(tiny):
    model, tokenizer = tiny
    batcher = Batcher(model, tokenizer, max_batch=2, max_queue=1)
    text, reason = _run_alone(batcher, tokenizer, "ROMEO:", max_new_tokens=200, temperature=1.0, seed=2, stop=(" ",))
    assert reason == "stop" and " " not in text
    several = Collector(2)
    batcher.submit(_job(tokenizer, "ROMEO:", several, max_new_tokens=12, seed=4, n=2))
    assert several.done.wait(30) and several.texts[0] != several.texts[1]
    with pytest.raises(ValueError, match="n=3 exceeds the batch of 2"):
        batcher.submit(_job(tokenizer, "x", Collector(3), max_new_tokens=5, n=3))

    long = [Collector(2) for _ in range(3)]
    jobs = [_job(tokenizer, "ROMEO:", c, max_new_tokens=100_000, n=2) for c in long]
    batcher.submit(jobs[0])
    for _ in range(300):
        if batcher.load()["active"] == 2:  # decoding: both rows
            break
        threading.Event().wait(0.1)
    batcher.submit(jobs[1])  # waiting: the queue's one place
    with pytest.raises(QueueFull):
        batcher.submit(jobs[2])
    for job in jobs[:2]:
        job.cancel()
    deadline = threading.Event()
    for _ in range(300):
        load = batcher.load()
        if load["active"] == load["waiting"] == 0:
            break
        deadline.wait(0.1)
    assert batcher.load() == {"active": 0, "waiting": 0, "cancelled": 4}
    assert long[0].reasons == [None, None] and 0 < jobs[0].generated < 200_000  # it stopped early


def test_requests_that_arrive_together_and_fit_the_batch_do_not_queue(tiny):
    model, tokenizer = tiny
    batcher = Batcher(model, tokenizer, max_batch=4, max_queue=0)
    jobs = [_job(tokenizer, "ROMEO:", Collector(), max_new_tokens=100_000) for _ in range(5)]
    for job in jobs[:4]:
        batcher.submit(job)  # the batch's 4 rows, taken or about to be
    with pytest.raises(QueueFull):
        batcher.submit(jobs[4])  # no room, and no queue
    for job in jobs[:4]:
        job.cancel()
    batcher.stop()
    batcher.thread.join(30)
    assert not batcher.thread.is_alive() and batcher.load()["cancelled"] == 4
