"""The library's errors a caller can fix (a missing device, a corrupt checkpoint, a character
outside the vocabulary, a full disk, ...). Each message names the problem and what to do; an
application shows it as it is. Each class also derives from the builtin its case used to raise
(ValueError, RuntimeError, OSError), so `except ValueError` keeps working."""

from __future__ import annotations


class FolioError(Exception):
    """An error the caller can fix: the message says what is wrong and what to do."""


class MissingFile(FolioError, FileNotFoundError):
    """A file or directory the caller named is not there; the message says which, and what was
    expected there."""


def first_line(err: BaseException, width: int = 160) -> str:
    """The gist of an error from elsewhere (torch, MLflow) to quote inside a one-line message."""
    return (str(err).strip().splitlines() or [type(err).__name__])[0][:width]
