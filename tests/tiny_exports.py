"""Tiny folio models of GPT-2's shape with a tokenizer of each kind trained here, saved as a
checkpoint + tokenizer directory (tests/test_hf_tokenizer.py, tests/test_harness.py)."""

from __future__ import annotations

from pathlib import Path

import tiktoken
import torch

from folio import checkpoint
from folio.model import GPT, GPTConfig
from folio.tokenizers import BPETokenizer, TiktokenTokenizer, save_tokenizer, train_tokenizer

KINDS = ("char", "bpe", "word", "tiktoken")
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
TEXT = ("First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n"
        "First Citizen:\nYou are all resolved rather to die than to famish?\n\nAll:\nResolved. resolved.\n"
        "Café crème, naïve façade — 12 o'clock; 2026-12-06 at 3.14 pm. It's we'll they've I'd.\n"
        "\tTabbed\tline   with  spaces,  'quotes' and \"double quotes\" (brackets) [x] {y}!?\n") * 6


def tiktoken_stand_in() -> TiktokenTokenizer:
    """A `tiktoken:<name>` tokenizer as folio loads one from tiktoken's cache (a tiktoken.Encoding
    with GPT-2's split pattern and <|endoftext|>), over ranks trained here: the real encodings'
    files are not on this offline machine."""
    ranks = BPETokenizer.train(TEXT, 400).ranks
    encoding = tiktoken.Encoding("stand-in", pat_str=GPT2_PATTERN, mergeable_ranks=ranks,
                                 special_tokens={"<|endoftext|>": len(ranks)})
    return TiktokenTokenizer("tiktoken:stand-in", encoding, "stand-in")


def tokenizer_of(kind: str):
    if kind == "tiktoken":
        return tiktoken_stand_in()
    return train_tokenizer(kind, TEXT, {"char": 0, "bpe": 400, "word": 120}[kind])


def tiny_model(vocab_size: int, seed: int = 0, std: float = 0.3) -> GPT:
    """A 2-layer GPT-2-shaped model with weights drawn wide enough that greedy choices are clear
    (no near-ties for float rounding to flip)."""
    torch.manual_seed(seed)
    config = GPTConfig(vocab_size=vocab_size, block_size=64, n_layer=2, n_head=2, n_embd=32,
                       mlp="gelu_tanh", dropout=0.0)
    model = GPT(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, std)
    return model


def save_model(directory: Path, kind: str, seed: int = 0) -> tuple[Path, Path, GPT, object]:
    """(checkpoint file, tokenizer dir, model, tokenizer) of a tiny model of `kind`."""
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = tokenizer_of(kind)
    model = tiny_model(tokenizer.vocab_size, seed)
    tokenizer_dir = directory / "tokenizer"
    if kind != "tiktoken":
        save_tokenizer(tokenizer, tokenizer_dir)
    path = directory / "best.pt"
    checkpoint.save(path, {"model": model.state_dict(), "model_config": model.config.to_dict(), "step": 1,
                           "tokenizer": {"kind": tokenizer.kind, "vocab_size": tokenizer.vocab_size,
                                         "digest": tokenizer.digest}})
    return path, tokenizer_dir, model, tokenizer
