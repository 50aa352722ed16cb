"""Metrics and tags that survive a tracking server going away: sent in batches, spooled to disk
while the server does not answer, sent when it answers again or by the next run.

`RunLog` collects a run's metrics and tags and sends them with `flush()`. A failed send keeps
every record in `.folio/spool/<run id>.jsonl` (appended and fsynced), prints one warning line and
lets training go on; later flushes first ask the server's /health (a cheap, bounded probe, at
most every `retry_seconds`) and send the spool, oldest first, once it answers. `replay()` sends
what earlier processes left in the spool. Resending a record MLflow already stored is harmless:
the store keeps one copy of an identical metric.

A server that refuses the credentials or the action (401/403: a password changed or a grant
revoked mid-run) is not an outage: asking again will not help, so after one warning line the
records go to the spool untried until the last flush (`now`), which tries once more and raises
TrackingRefused if it is still refused. Nothing is lost: the next run sends the spool.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from folio.errors import first_line
from pipeline.tracking import access, store
from pipeline.artifacts import SPOOL_DIR

BATCH = 1000  # MLflow's log_batch limit for metrics


class RunLog:
    def __init__(self, run_id: str, log, spool_dir: Path = SPOOL_DIR, retry_seconds: float = 10.0):
        self.run_id, self.log, self.retry_seconds = run_id, log, retry_seconds
        self.spool = Path(spool_dir) / f"{run_id}.jsonl"
        self.pending: list[dict] = []
        self.down_since: float | None = None  # monotonic time of the first failed send
        self.last_try = 0.0
        self.refused: access.TrackingRefused | None = None  # a 401/403: no retries until `now`

    def metrics(self, step: int, values: dict[str, float]) -> None:
        now = int(time.time() * 1000)
        self.pending += [{"kind": "metric", "key": k, "value": float(v), "timestamp": now, "step": step}
                         for k, v in values.items()]

    def tags(self, values: dict[str, str]) -> None:
        self.pending += [{"kind": "tag", "key": k, "value": str(v)} for k, v in values.items()]

    def flush(self, now: bool = False) -> bool:
        """Send the spool, then what is pending; True if the server has everything. While the
        server is away, a send is tried only every retry_seconds, unless `now`; once it refused
        us, only when `now` — and a refusal then raises TrackingRefused."""
        if (self.refused is not None and not now) or (self.down_since is not None and not self._answers(now)):
            self._to_spool()
            return False
        try:
            self._send_spool()
            self._send(self.pending)
        except Exception as err:  # the server is down, restarting, or refuses: keep everything
            self._to_spool()
            if (refused := access.refusal(err)) is not None:
                return self._refused(refused, now)
            if self.down_since is None:
                self.down_since = time.monotonic()
                self.log(f"warning: MLflow at {store.tracking_uri()} does not answer "
                         f"({first_line(err)}); training goes on, and metrics wait in {self.spool} "
                         "until it answers")
            return False
        self.pending = []
        if self.down_since is not None:
            self.log(f"MLflow answers again after {time.monotonic() - self.down_since:.0f}s: "
                     "the spooled metrics are sent")
            self.down_since = None
        self.refused = None
        return True

    def _refused(self, refused: access.TrackingRefused, now: bool) -> bool:
        if self.refused is None:
            self.log(f"warning: {refused}; training goes on, and metrics wait in {self.spool}")
        self.refused = refused
        if now:
            raise access.TrackingRefused(
                f"{refused}; {self.spooled:,} metrics wait in {self.spool}: rerun `folio train` (or "
                "`dvc repro`) once it takes them — it sends them without training again")
        return False

    # -- the server ---------------------------------------------------------------------------

    def _answers(self, now: bool = False) -> bool:
        """At most every retry_seconds (or `now`), whether the server answers its health check."""
        if not now and time.monotonic() - self.last_try < self.retry_seconds:
            return False
        self.last_try = time.monotonic()
        try:
            store.check_server(store.tracking_uri(), timeout=2)
            return True
        except store.TrackingUnavailable:
            return False

    def _send(self, records: list[dict]) -> None:
        from mlflow.entities import Metric, RunTag

        client = store.mlflow().MlflowClient()
        for i in range(0, len(records), BATCH):
            batch = records[i:i + BATCH]
            metrics = [Metric(r["key"], r["value"], r["timestamp"], r["step"]) for r in batch if r["kind"] == "metric"]
            tags = [RunTag(r["key"], r["value"]) for r in batch if r["kind"] == "tag"]
            client.log_batch(self.run_id, metrics=metrics, tags=tags, synchronous=True)

    # -- the spool ----------------------------------------------------------------------------

    def _to_spool(self) -> None:
        if not self.pending:
            return
        self.spool.parent.mkdir(parents=True, exist_ok=True)
        with open(self.spool, "a", encoding="utf-8") as f:
            f.writelines(json.dumps(r) + "\n" for r in self.pending)
            f.flush()
            os.fsync(f.fileno())
        self.pending = []

    def _send_spool(self) -> None:
        if not self.spool.exists():
            return
        records = [json.loads(line) for line in self.spool.read_text(encoding="utf-8").splitlines() if line]
        self._send(records)
        self.spool.unlink()

    @property
    def spooled(self) -> int:
        """Records waiting on disk."""
        return len(self.spool.read_text(encoding="utf-8").splitlines()) if self.spool.exists() else 0


def replay(log, spool_dir: Path = SPOOL_DIR) -> None:
    """Send what earlier runs spooled (their server was down), one run at a time; what still
    cannot be sent stays for the next time."""
    for path in sorted(Path(spool_dir).glob("*.jsonl")):
        run = RunLog(path.stem, log, spool_dir)
        waiting = run.spooled
        try:
            run._send_spool()
        except Exception as err:
            why = access.refusal(err) or first_line(err)
            log(f"warning: {waiting:,} metrics of MLflow run {path.stem} wait in {path}: the server "
                f"still does not take them ({why})")
        else:
            log(f"sent {waiting:,} spooled metrics of MLflow run {path.stem} from {path}")
