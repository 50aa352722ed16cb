"""New token ids to text as they arrive: characters split across tokens come out whole, and
stop strings end the text (they are not part of it)."""

from __future__ import annotations

import codecs
from typing import Sequence


class Detokenizer:
    """Decodes one token at a time. Byte-level tokenizers (`decode_bytes`: BPE, tiktoken) go
    through an incremental UTF-8 decoder that holds a partial multi-byte character until its last
    byte arrives; char and word tokenizers decode each token on its own."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.utf8 = None
        if hasattr(tokenizer, "decode_bytes"):
            # "replace", like tiktoken's decode: invalid bytes become U+FFFD, not an error
            self.utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def push(self, token_id: int) -> str:
        if self.utf8 is None:
            return self.tokenizer.decode([token_id])
        return self.utf8.decode(self.tokenizer.decode_bytes([token_id]))

    def flush(self) -> str:
        """Whatever is still held (an unfinished character becomes U+FFFD)."""
        return "" if self.utf8 is None else self.utf8.decode(b"", final=True)


class TextStream:
    """One sequence's text, piece by piece. `push` takes each new token and returns the text
    that is now certain; `finish` returns the rest. A stop string ends the stream and the text
    stops right before it; text that may be the start of a stop string is held back until the
    next tokens decide, so a streamed piece is never taken back."""

    def __init__(self, tokenizer, stop: Sequence[str] = ()):
        self.detokenizer = Detokenizer(tokenizer)
        self.stop = [s for s in stop if s]
        self.token_ids: list[int] = []
        self.text = ""  # released so far
        self.held = ""  # decoded, not yet released
        self.stopped = False

    def push(self, token_id: int) -> str:
        if self.stopped:
            raise ValueError("the stream has stopped")
        self.token_ids.append(token_id)
        return self._release(self.detokenizer.push(token_id), final=False)

    def finish(self) -> str:
        if self.stopped:
            return ""
        return self._release(self.detokenizer.flush(), final=True)

    def _release(self, new_text: str, final: bool) -> str:
        pending = self.held + new_text
        # text released earlier can hold no stop string and no start of one: search pending only
        found = [i for i in (pending.find(s) for s in self.stop) if i >= 0]
        if found:
            piece, self.held, self.stopped = pending[: min(found)], "", True
        else:
            keep = 0 if final else self._stop_prefix_length(pending)
            piece, self.held = pending[: len(pending) - keep], pending[len(pending) - keep :]
        self.text += piece
        return piece

    def _stop_prefix_length(self, text: str) -> int:
        """Length of the longest end of `text` that is the beginning of a stop string."""
        return max((k for s in self.stop for k in range(1, min(len(s), len(text) + 1))
                    if text.endswith(s[:k])), default=0)
