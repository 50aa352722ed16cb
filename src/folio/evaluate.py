"""Loss over a split (every target counted once), or over evenly spaced windows holding about
max_tokens of it — deterministic, unlike random batches; bits per byte, the one place it is
computed; and a text's digest and score (`score_text`: a fixed held-out text, or a val split
rescored with another model), so two models are compared only on the same text."""

from __future__ import annotations

import hashlib
import math
from typing import Iterable

import numpy as np
import torch
import torch.nn.functional as F

from folio.data import sequential_windows
from folio.device import autocast_for
from folio.model import GPT
from folio.tokenizers import document_separator, end_of_text_id

DOCUMENT_MARK = b"\0"  # between two documents in a text digest (validated text holds no NUL)


def bits_per_byte(nats_per_token: float, tokens: int, text_bytes: int) -> float:
    """Bits per byte of text: the total bits over `tokens` predicted tokens at a mean loss of
    `nats_per_token`, over the `text_bytes` UTF-8 bytes those tokens stand for. Unlike the loss per
    token, it compares models with different tokenizers."""
    return nats_per_token * tokens / math.log(2) / max(text_bytes, 1)


def text_bytes(tokenizer):
    """ids -> the UTF-8 bytes of the text they stand for (an end-of-text token: none)."""
    eot = end_of_text_id(tokenizer)
    decode_bytes = getattr(tokenizer, "decode_bytes", None)

    def count(ids: list[int]) -> int:
        if decode_bytes is None:
            return len(tokenizer.decode(ids).encode("utf-8"))
        return len(decode_bytes([i for i in ids if i != eot]))

    return count


@torch.no_grad()
def split_loss(model: GPT, tokens, batch_size: int = 32, max_tokens: int | None = None,
               target_bytes=None) -> dict[str, float]:
    """Mean cross-entropy in nats per token over the whole split (or the fixed subset of about
    `max_tokens`, see sequential_windows), with bits per token and perplexity (for a character
    tokenizer, bits per token is bits per character). With `target_bytes(ids) -> int`, also the
    bytes of text the predicted targets stand for (`n_bytes`)."""
    model.eval()
    device = next(model.parameters()).device
    total_nats, n_targets, n_bytes = 0.0, 0, 0
    for x, y in sequential_windows(tokens, model.config.block_size, batch_size, max_tokens):
        if target_bytes is not None:
            n_bytes += sum(target_bytes(row) for row in y.tolist())
        x, y = x.to(device), y.to(device)
        with autocast_for(device):
            logits, _ = model(x)
        total_nats += F.cross_entropy(
            logits.float().view(-1, logits.size(-1)), y.view(-1), reduction="sum"
        ).item()
        n_targets += y.numel()
    loss = total_nats / n_targets
    return {
        "loss": loss,
        "bits_per_token": loss / math.log(2),
        "perplexity": math.exp(loss),
        "n_tokens": n_targets,
        "n_bytes": n_bytes,
    }


class TextDigest:
    """The digest of a text made of documents, fed in pieces: the sha256 of the documents' UTF-8
    bytes with a NUL between two documents, cut to 16 hex digits like the weights' digest. It is a
    function of the text alone, not of any tokenizer: two models scored on texts of one digest
    were scored on the same text."""

    def __init__(self):
        self._sha, self._started, self._pending_mark = hashlib.sha256(), False, False

    def add(self, text: str) -> None:
        """More of the current document."""
        if not text:
            return
        if self._pending_mark:
            self._sha.update(DOCUMENT_MARK)
        self._sha.update(text.encode("utf-8", "surrogatepass"))
        self._started, self._pending_mark = True, False

    def next_document(self) -> None:
        """What follows starts a new document."""
        self._pending_mark = self._started

    def hexdigest(self) -> str:
        return self._sha.hexdigest()[:16]


def text_digest(documents: Iterable[str]) -> str:
    """TextDigest of whole documents."""
    digest = TextDigest()
    for document in documents:
        digest.next_document()
        digest.add(document)
    return digest.hexdigest()


def encode_documents(tokenizer, documents: Iterable[str]) -> np.ndarray:
    """The ids of the documents with the tokenizer's document separator between two of them, as
    the prepare stage encodes a split (empty documents are left out)."""
    separator = None
    parts: list[np.ndarray] = []
    for document in documents:
        if not document:
            continue
        if parts:
            if separator is None:
                separator = np.array(document_separator(tokenizer), dtype=np.int64)
            parts.append(separator)
        parts.append(np.asarray(tokenizer.encode(document), dtype=np.int64))
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def score_text(model: GPT, tokenizer, documents: Iterable[str], batch_size: int = 32) -> dict:
    """A model's score on a whole text: its documents encoded as prepare encodes a split, every
    token but the first predicted once (split_loss without a subset). Bits per byte count the
    UTF-8 bytes of the predicted text (the first token's text and the separators between documents
    stand for none), so models with different tokenizers compare; `text_digest` names the text."""
    documents = [d for d in documents if d]
    ids = encode_documents(tokenizer, documents)
    if len(ids) < 2:
        raise ValueError("the text is too short to score: it encodes to fewer than 2 tokens")
    result = split_loss(model, ids, batch_size)
    count = text_bytes(tokenizer)
    predicted = sum(len(d.encode("utf-8", "surrogatepass")) for d in documents) - count(ids[:1].tolist())
    bpb = bits_per_byte(result["loss"], result["n_tokens"], predicted)
    return {"loss": result["loss"], "bits_per_token": result["bits_per_token"], "bits_per_byte": bpb,
            "perplexity": result["perplexity"], "tokens": result["n_tokens"], "bytes": predicted,
            "text_digest": text_digest(documents)}
