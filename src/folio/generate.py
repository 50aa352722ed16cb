"""Text generation: one engine for `folio generate` and the sample stage, in three layers.

- Sampling: pure functions over next-token logits (B, V) — `penalize_repetition`, then `sample`
  (temperature, `top_k_filter`, `top_p_filter`); temperature 0 is greedy; the seed is explicit.
- Decoding: `Decoder` turns growing token sequences into next-token logits, with a KV cache or by
  recomputing every step (the reference the cache is tested against); `generate_ids` is the loop.
- Text: `complete` and `stream` go from prompts to text with stop strings (`folio.textstream`),
  several samples per prompt in one batch, or beam search (`folio.beam`).

Device and dtype: generation runs where the model is. `for_generation` puts its weights (and so
its KV cache) in folio.device.inference_dtype for that device — bfloat16 on a CUDA GPU that has
it, where each decoding step reads every weight and half the bytes is nearly twice the speed;
float32 on a CPU, where nothing changes.

Context beyond block_size: the model has block_size learned absolute positions, so a cache cannot
slide (every cached key would sit at a shifted position). When a sequence's window would outgrow
block_size, it restarts from the sequence's last block_size // 2 tokens, which the cache
re-prefills in one batched forward. Between restarts every step is one cached token; the restarts
cost one prefill per block_size // 2 tokens. The uncached path sees exactly the same windows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import torch

from folio.beam import beam_search
from folio.device import inference_dtype
from folio.model import GPT, KVCache
from folio.textstream import TextStream


@dataclass(frozen=True)
class GenerationConfig:
    max_new_tokens: int = 500
    temperature: float = 1.0  # 0 = greedy
    top_k: int | None = None  # sample among the k likeliest tokens
    top_p: float | None = None  # nucleus: the likeliest tokens holding this much probability
    repetition_penalty: float = 1.0  # > 1 makes tokens already in the sequence less likely
    stop: tuple[str, ...] = ()  # end the text before the first of these strings
    seed: int | None = None  # None draws a fresh seed
    num_samples: int = 1  # samples per prompt (beams: best hypotheses returned)
    beams: int = 1  # > 1: beam search instead of sampling
    length_penalty: float = 1.0  # beam score = log-probability / length ** length_penalty
    compile: bool = False  # torch.compile the cached decoding step (pays off on long generations)

    def __post_init__(self):
        checks = [
            (self.max_new_tokens >= 1, f"max_new_tokens must be >= 1, got {self.max_new_tokens}"),
            (self.temperature >= 0, f"temperature must be >= 0, got {self.temperature}"),
            (self.top_k is None or self.top_k >= 1, f"top_k must be >= 1, got {self.top_k}"),
            (self.top_p is None or 0 < self.top_p <= 1, f"top_p must be in (0, 1], got {self.top_p}"),
            (self.repetition_penalty > 0, f"repetition_penalty must be > 0, got {self.repetition_penalty}"),
            (self.num_samples >= 1, f"num_samples must be >= 1, got {self.num_samples}"),
            (self.beams >= 1, f"beams must be >= 1, got {self.beams}"),
            (self.beams == 1 or self.num_samples <= self.beams,
             f"beam search returns at most beams={self.beams} hypotheses, not num_samples={self.num_samples}"),
        ]
        problems = [message for ok, message in checks if not ok]
        if problems:
            raise ValueError("; ".join(problems))


# ---------------------------------------------------------------- sampling: pure functions


def penalize_repetition(logits: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    """CTRL's repetition penalty: the logit of every token already in the sequence (seen (B, V),
    bool) is divided by `penalty` when positive and multiplied by it when negative, so for
    penalty > 1 a repeat is less likely either way. penalty 1 changes nothing."""
    if penalty == 1.0:
        return logits
    penalized = torch.where(logits > 0, logits / penalty, logits * penalty)
    return torch.where(seen, penalized, logits)


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the k largest logits of each row (and any tied with the k-th); the rest become -inf."""
    kth = torch.topk(logits, min(k, logits.size(-1))).values[:, [-1]]  # (B, 1)
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus filter: keep the likeliest tokens, in order, until their probability reaches p
    (the most likely token always stays); the rest become -inf."""
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    probs = sorted_logits.float().softmax(dim=-1)
    mass_before = probs.cumsum(dim=-1) - probs  # probability of the strictly likelier tokens
    drop_sorted = mass_before >= p
    drop = drop_sorted.scatter(-1, order, drop_sorted)  # back to vocabulary order
    return logits.masked_fill(drop, float("-inf"))


def sample(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """logits (B, V) -> next ids (B, 1). Temperature 0 means greedy (top-k and top-p are moot)."""
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if temperature == 0:
        return logits.argmax(dim=-1, keepdim=True)
    logits = logits / temperature
    if top_k is not None and 0 < top_k < logits.size(-1):
        logits = top_k_filter(logits, top_k)
    if top_p is not None and top_p < 1.0:
        logits = top_p_filter(logits, top_p)
    probs = torch.softmax(logits.float(), dim=-1)
    return torch.multinomial(probs, num_samples=1, generator=generator)


# ---------------------------------------------------------------- decoding


def for_generation(model: GPT) -> GPT:
    """`model` in eval mode, its weights in the dtype generation computes in on its device
    (folio.device.inference_dtype). Weights, activations and the KV cache then share one dtype, so
    no autocast is needed. A float32 device (a CPU) leaves the model as it is, int8 layers included."""
    dtype = inference_dtype(next(model.parameters()).device)
    return (model if dtype == torch.float32 else model.to(dtype=dtype)).eval()


def _right_padded(rows: list[list[int]], device) -> torch.Tensor:
    """Rows of different lengths as one (B, T) batch, padded at the end with token 0. Under a
    causal mask no real token sees the padding after it."""
    batch = torch.zeros(len(rows), max(map(len, rows)), dtype=torch.long)
    for b, row in enumerate(rows):
        batch[b, : len(row)] = torch.tensor(row, dtype=torch.long)
    return batch.to(device)


class Decoder:
    """Next-token logits for a batch of growing token sequences (`tokens`), each seen through a
    window of at most block_size tokens that restarts from its last block_size // 2 tokens when
    full (see the module docstring). With `use_cache` the window lives in a KVCache and each step
    runs one new token per row; without, each step recomputes the windows (nanoGPT's loop).
    `compile` compiles the one-token step (a static-shape cache; see `compiled_step`)."""

    def __init__(self, model: GPT, prompts: Sequence[Sequence[int]], use_cache: bool = True,
                 compile: bool = False):
        if not prompts or any(len(p) == 0 for p in prompts):
            raise ValueError("every prompt must hold at least one token")
        if compile and not use_cache:
            raise ValueError("compile speeds up the cached decoding step: it needs the KV cache")
        self.model, self.block_size = model, model.config.block_size
        self.keep = max(1, self.block_size // 2)  # tokens a full window restarts from
        weights = next(model.parameters())  # float even in an int8 model: the embedding
        self.device = weights.device
        self.tokens = [list(p) for p in prompts]
        self.starts = [max(0, len(p) - self.block_size) for p in prompts]  # window = tokens[start:]
        self.cache, self.step = None, model.forward_at
        if use_cache:
            self.cache = KVCache(model.config, len(prompts), self.device, weights.dtype, static=compile)
            if compile:
                self.step = compiled_step(model)
        self.stale = set(range(len(prompts)))  # rows whose cache does not hold their window yet

    def windows(self) -> list[list[int]]:
        return [tokens[start:] for tokens, start in zip(self.tokens, self.starts)]

    def next_logits(self) -> torch.Tensor:
        """Logits for the next token of every row, (B, V)."""
        windows = self.windows()
        if self.cache is None:
            logits, _ = self.model(_right_padded(windows, self.device))  # (B, T, V)
            return self._at_last_token(logits, windows)
        if len(self.stale) == len(windows):  # the first step, or every row restarting at once
            self.stale.clear()
            return self._at_last_token(self._prefill(self.cache, windows), windows)
        for b in self.stale:  # a row restarting alone: refill its cache, all but the last token
            self._prefill(self.cache.row(b), [windows[b][:-1]])
        self.stale.clear()
        # every cache holds its window but the last token: run those as one (B, 1) step
        last_tokens = torch.tensor([[w[-1]] for w in windows], device=self.device)
        return self.step(last_tokens, self.cache.advance(1), self.cache)[:, -1]

    def _at_last_token(self, logits: torch.Tensor, windows: list[list[int]]) -> torch.Tensor:
        """(B, T, V) logits of right-padded windows -> (B, V) at each window's last token."""
        last = torch.tensor([len(w) - 1 for w in windows], device=self.device)
        return logits[torch.arange(len(windows), device=self.device), last]

    def _prefill(self, cache: KVCache, contexts: list[list[int]]) -> torch.Tensor | None:
        """Fill `cache` (emptied first) with `contexts`; their logits (B, T, V)."""
        cache.lengths.zero_()
        if max(map(len, contexts)) == 0:
            return None
        logits = self.model.forward_cached(_right_padded(contexts, self.device), cache)
        # the padding's keys lie beyond each row's length: masked, then overwritten
        cache.lengths.copy_(torch.tensor([len(c) for c in contexts]))
        return logits

    def append(self, next_ids: Sequence[int]) -> None:
        """Add one token to every row."""
        for b, token in enumerate(next_ids):
            self.tokens[b].append(int(token))
            if len(self.tokens[b]) - self.starts[b] > self.block_size:
                self.starts[b] = len(self.tokens[b]) - self.keep
                self.stale.add(b)

    def reorder(self, rows: Sequence[int]) -> None:
        """Continue with these rows, in this order (rows may repeat: beam search)."""
        self.tokens = [list(self.tokens[r]) for r in rows]
        self.starts = [self.starts[r] for r in rows]
        self.stale = {i for i, r in enumerate(rows) if r in self.stale}
        if self.cache is not None:
            self.cache.select(torch.tensor(list(rows), device=self.device))

    def join(self, other: Decoder) -> None:
        """Append `other`'s rows after these: a decoder for newly arrived prompts joins a running
        batch between two steps (folio.batching). Both must have computed the same step's logits."""
        if (self.cache is None) != (other.cache is None):
            raise ValueError("a cached and an uncached decoder cannot share a batch")
        self.stale |= {len(self.tokens) + b for b in other.stale}
        self.tokens += other.tokens
        self.starts += other.starts
        if self.cache is not None:
            self.cache.extend(other.cache)


def compiled_step(model: GPT):
    """`model.forward_at` compiled for one-token steps against a static KVCache: one graph with
    fused elementwise kernels instead of ~200 eager operations, called through inductor's C++
    wrapper (less Python per call). Compiling takes ~10 s on a 2-core CPU, once per model and
    batch size; inductor caches it on disk. The weights stay inputs, so later updates are seen."""
    return torch.compile(model.forward_at, fullgraph=True, dynamic=False, options={"cpp_wrapper": True})


def _generator(seed: int | None, device) -> torch.Generator:
    generator = torch.Generator(device=device)
    if seed is None:
        generator.seed()  # a fresh, non-deterministic seed
    else:
        generator.manual_seed(seed)
    return generator


@torch.inference_mode()
def generate_ids(
    model: GPT, prompts: Sequence[Sequence[int]], config: GenerationConfig, use_cache: bool = True
) -> Iterator[list[int]]:
    """The sampling loop: yield the next token of every row, up to max_new_tokens times (stop
    iterating to end early). Rows are independent; one seeded generator draws for all of them."""
    model.eval()
    decoder = Decoder(model, prompts, use_cache, config.compile)
    generator = _generator(config.seed, decoder.device)
    seen = torch.zeros(len(prompts), model.config.vocab_size, dtype=torch.bool, device=decoder.device)
    for b, prompt in enumerate(prompts):
        seen[b, list(prompt)] = True
    for _ in range(config.max_new_tokens):
        logits = decoder.next_logits()  # (B, V)
        logits = penalize_repetition(logits, seen, config.repetition_penalty)
        next_ids = sample(logits, config.temperature, config.top_k, config.top_p, generator)  # (B, 1)
        if config.repetition_penalty != 1.0:
            seen.scatter_(1, next_ids, True)
        ids = next_ids[:, 0].tolist()
        decoder.append(ids)
        yield ids


# ---------------------------------------------------------------- text


@dataclass(frozen=True)
class Completion:
    prompt: str
    text: str  # the continuation alone: no prompt, no stop string
    token_ids: list[int]  # the new tokens, up to the one that completed a stop string
    finish_reason: str  # "stop" (a stop string) or "length" (max_new_tokens)
    score: float | None = None  # beam search: log-probability / length ** length_penalty


def _pieces(model, rows: list[TextStream], prompt_ids, config, use_cache) -> Iterator[tuple[int, str]]:
    """(row, text piece) in generation order until every row stops or runs out of tokens."""
    for ids in generate_ids(model, prompt_ids, config, use_cache):
        for b, (row, token) in enumerate(zip(rows, ids)):
            if not row.stopped:
                yield b, row.push(token)
        if all(row.stopped for row in rows):
            break
    for b, row in enumerate(rows):
        yield b, row.finish()


def stream(model: GPT, tokenizer, prompt: str, config: GenerationConfig,
           use_cache: bool = True) -> Iterator[str]:
    """Yield the continuation of `prompt` in pieces as tokens are sampled; multi-byte characters
    split across tokens come out whole. One sample, no beams (beams only know the best at the end)."""
    if config.beams > 1 or config.num_samples > 1:
        raise ValueError("stream() makes one sample: use complete() for beams or several samples")
    row = TextStream(tokenizer, config.stop)
    for _, piece in _pieces(model, [row], [tokenizer.encode(prompt)], config, use_cache):
        if piece:
            yield piece


def complete(model: GPT, tokenizer, prompts: Sequence[str], config: GenerationConfig,
             use_cache: bool = True) -> list[Completion]:
    """`config.num_samples` completions of each prompt (prompt-major order), all sampled in one
    batch, or the best hypotheses of a beam search when config.beams > 1."""
    if config.beams > 1:
        return [c for p in prompts for c in beam_complete(model, tokenizer, p, config, use_cache)]
    batch = [p for p in prompts for _ in range(config.num_samples)]
    rows = [TextStream(tokenizer, config.stop) for _ in batch]
    for _ in _pieces(model, rows, [tokenizer.encode(p) for p in batch], config, use_cache):
        pass
    return [Completion(p, row.text, row.token_ids, "stop" if row.stopped else "length")
            for p, row in zip(batch, rows)]


@torch.inference_mode()
def beam_complete(model: GPT, tokenizer, prompt: str, config: GenerationConfig,
                  use_cache: bool = True) -> list[Completion]:
    """The config.num_samples best beam-search completions of `prompt` (`folio.beam`); a
    hypothesis finishes when its text holds one of config.stop."""
    model.eval()
    stop = [s for s in config.stop if s]
    # A hypothesis is checked at every step, so only a stop string completed by its last token
    # is new: decoding a tail long enough to hold the longest one (4 bytes a character) will do.
    tail = 4 * max(map(len, stop), default=0) + 4
    is_finished = (lambda ids: any(s in tokenizer.decode(ids[-tail:]) for s in stop)) if stop else None
    decoder = Decoder(model, [tokenizer.encode(prompt)], use_cache, config.compile)
    hypotheses = beam_search(decoder, config.beams, config.max_new_tokens, config.length_penalty, is_finished)
    completions = []
    for h in hypotheses[: config.num_samples]:
        row = TextStream(tokenizer, stop)
        for token in h.token_ids:
            if not row.stopped:
                row.push(token)
        row.finish()
        completions.append(Completion(prompt, row.text, h.token_ids,
                                      "stop" if row.stopped else "length", h.score))
    return completions


def generate_text(model: GPT, tokenizer, prompt: str, max_new_tokens: int, **options) -> str:
    """The prompt and its continuation (`options`: GenerationConfig fields)."""
    config = GenerationConfig(max_new_tokens=max_new_tokens, **options)
    (completion,) = complete(model, tokenizer, [prompt], config)
    return prompt + completion.text
