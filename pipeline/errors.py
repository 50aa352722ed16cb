"""The errors a user can cause and fix, and how the CLI turns them into one line.

Every stage, gate and command raises a `StageError` subclass (the library raises
`folio.errors.FolioError`) whose message says what is wrong and what to do: `<what>; <what to do>`.
The CLI prints `error: <stage>: <message>` and exits 1 — no traceback (FOLIO_DEBUG=1 shows it).
Anything else escaping a stage is a bug, and keeps its traceback.
"""

from __future__ import annotations


class StageError(Exception):
    """A problem the user can fix; the message names it and what to do about it."""
