"""Text generation: a pure `sample` over logits, and a decoding loop that yields token by token."""

from __future__ import annotations

from typing import Iterator

import torch

from folio.model import GPT


def sample(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """logits (B, V) -> next ids (B, 1). Temperature 0 means greedy."""
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if temperature == 0:
        return logits.argmax(dim=-1, keepdim=True)
    logits = logits / temperature
    if top_k is not None and top_k > 0:
        kth = torch.topk(logits, min(top_k, logits.size(-1))).values[:, [-1]]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits.float(), dim=-1)
    return torch.multinomial(probs, num_samples=1, generator=generator)


@torch.no_grad()
def generate_tokens(
    model: GPT,
    prompt_ids: list[int],
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    seed: int | None = None,
) -> Iterator[int]:
    """Yield new token ids one at a time; the context is cropped to the model's block size."""
    if not prompt_ids:
        raise ValueError("the prompt must hold at least one token")
    model.eval()
    device = next(model.parameters()).device
    generator = torch.Generator(device=device)
    if seed is not None:
        generator.manual_seed(seed)
    idx = torch.tensor([prompt_ids], dtype=torch.long, device=device)  # (1, T)
    for _ in range(max_new_tokens):
        context = idx[:, -model.config.block_size :]
        logits, _ = model(context)
        next_id = sample(logits[:, -1, :], temperature, top_k, generator)  # (1, 1)
        idx = torch.cat([idx, next_id], dim=1)
        yield int(next_id)


def generate_text(model: GPT, tokenizer, prompt: str, max_new_tokens: int, **kwargs) -> str:
    ids = generate_tokens(model, tokenizer.encode(prompt), max_new_tokens, **kwargs)
    return prompt + tokenizer.decode(list(ids))
