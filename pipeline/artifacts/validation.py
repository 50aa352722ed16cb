"""reports/validation/<suite>/<suite>.json: a data gate's verdict, and what it was passed on.

The corpus gate (stage validate) records the digest of the corpus it read (`corpus_sha256`); the
token gate (stage validate_tokens) the digest of data/prepared/meta.json it read
(`prepared_digest`). A stage that reads gated data calls `require_passed` before any work: the
verdict must exist, be about this very data, and be a pass — so running stages one by one
(`folio tokenize`, `folio train`) keeps the gates that `dvc repro` keeps.
"""

from __future__ import annotations

import json

from pipeline.artifacts import validation_report
from pipeline.errors import StageError

GATE_STAGE = {"corpus": "validate", "tokens": "validate_tokens"}
SUBJECT_KEY = {"corpus": "corpus_sha256", "tokens": "prepared_digest"}


class GateNotPassed(StageError):
    """The data a stage would read has not passed its gate (or the verdict is about other data)."""


def read_verdict(suite: str) -> dict | None:
    path = validation_report(suite)
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        return None


def require_passed(suite: str, digest: str, what: str) -> None:
    """Refuse, in one line naming the stage to run, unless `suite`'s verdict is a pass on the data
    whose digest is `digest` (`what` names that data for the message)."""
    report, stage, key = validation_report(suite), GATE_STAGE[suite], SUBJECT_KEY[suite]
    verdict = read_verdict(suite)
    if verdict is None:
        raise GateNotPassed(f"{what} has not been through the {suite} gate ({report} is missing or "
                            f"unreadable); run `folio {stage}` (or `dvc repro`) first")
    if verdict.get(key) != digest:
        other = verdict.get(key) or "not recorded: an older folio wrote it"
        raise GateNotPassed(f"{report} is the verdict on other data ({key} {other}), not on {what}; "
                            f"run `folio {stage}` (or `dvc repro`) first")
    if not verdict.get("success"):
        failed = [e["name"] for e in verdict.get("expectations", []) if not e.get("passed")]
        raise GateNotPassed(f"{what} failed the {suite} gate ({', '.join(failed) or 'see the report'}; "
                            f"{report}); fix it, or the thresholds, and run `folio {stage}` again")
