"""The models a `folio serve` process holds, and the thread that follows the alias it serves.

The primary model is what the server was started with. Named by an alias
(`models:/<name>@champion`), it follows it: every `poll_seconds` the registry is asked who holds
the alias; when that changed, the new version is loaded beside the old one and takes the new
requests, while the requests in flight finish on the old one (its batcher drains, then stops).
The switch is logged and /v1/models shows it. A registry that does not answer (or an alias that
was removed) leaves the loaded version serving: one warning, then a retry every poll, and one
line when it answers again.

A request's `model` field may name another version of the same registered model (`3`,
`@challenger`, `<name>/latest`, `models:/<name>/3`): the server holds one such second model at
a time (the playground's second column), loaded on first use.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from pipeline.console import log
from pipeline.serve.models import (BatchSettings, Served, ServeError, aliases_by_version, is_registry_uri,
                                   load_checkpoint, load_version, parse_spec, resolve_version,
                                   version_choices)
from pipeline.tracking import store

SUBMIT_TRIES = 3  # a batcher may stop (a switch) between picking it and submitting to it


class Models:
    def __init__(self, target: str, tokenizer_dir: Path, settings: BatchSettings, poll_seconds: float):
        self.target, self.settings, self.poll_seconds = target, settings, poll_seconds
        self.lock = threading.Lock()  # guards primary and other
        self.loading = threading.Lock()  # one load of a second model at a time
        self.other: Served | None = None
        self.resolved: dict[tuple, tuple[int, float]] = {}
        self.warned: str | None = None  # the warning given for the current outage
        self.stopped = threading.Event()
        self.name = self.alias = None
        if is_registry_uri(target):
            store.setup()  # TrackingUnavailable: one line
            self.name, self.alias, version = parse_spec(target, "")
            try:
                number = resolve_version(self.name, self.alias, version)
            except LookupError as err:
                raise ServeError(f"{err}; check the model URI (`folio runs` lists the versions)") from None
            self.primary = load_version(self.name, number, settings)
        else:
            self.primary = load_checkpoint(Path(target), tokenizer_dir, settings)
        if self.alias is not None:
            threading.Thread(target=self._follow, name="alias follower", daemon=True).start()

    # ---- requests

    def submit(self, spec: str | None, make_job):
        """Pick the model `spec` names and submit `make_job(served)` to its batcher; returns
        (served, job). LookupError: no such model; folio.batching.QueueFull: too busy."""
        for _ in range(SUBMIT_TRIES):
            served = self.pick(spec)
            job = make_job(served)
            with self.lock:
                if served.batcher.stopping:
                    continue
                served.batcher.submit(job)
                return served, job
        raise RuntimeError(f"{spec or self.target} kept switching; retry")

    def pick(self, spec: str | None) -> Served:
        with self.lock:
            primary = self.primary
        if not spec or spec in (primary.id, primary.source, self.target, self.target.removeprefix("models:/")):
            return primary
        if self.name is None:
            raise LookupError(f"this server serves {primary.id} only; leave `model` out or name it")
        name, alias, version = parse_spec(spec, self.name)
        if name != self.name:
            raise LookupError(f"this server serves versions of {self.name}, not {name}")
        number = self._resolved(name, alias, version)
        found = self._held(number)
        if found is not None:
            return found
        with self.loading:
            found = self._held(number)
            if found is None:
                log(f"loading {name} version {number} (named by a request as {spec!r})")
                found = load_version(name, number, self.settings)
                with self.lock:
                    old, self.other = self.other, found
                if old is not None:
                    old.batcher.stop()
        return found

    def _held(self, number: int) -> Served | None:
        with self.lock:
            for served in (self.primary, self.other):
                if served is not None and served.version == number:
                    return served
        return None

    def _resolved(self, name: str, alias: str | None, version: str | None) -> int:
        """Version numbers behind aliases and `latest`, asked of the registry once a poll."""
        if alias is None and version != "latest":
            key = (name, None, version)
            if key not in self.resolved:
                self.resolved[key] = (resolve_version(name, None, version), float("inf"))
        key = (name, alias, version)
        cached = self.resolved.get(key)
        if cached is None or time.monotonic() - cached[1] > self.poll_seconds:
            self.resolved[key] = (resolve_version(name, alias, version), time.monotonic())
        return self.resolved[key][0]

    def describe(self) -> list[dict]:
        with self.lock:
            held = [s for s in (self.primary, self.other) if s is not None]
        try:
            aliases = aliases_by_version(self.name) if self.name else {}
        except Exception:  # the registry is down: what this process knows
            aliases = {self.primary.version: [self.alias]} if self.alias else {}
        return [s.describe(aliases.get(s.version, [])) for s in held]

    def choices(self) -> list[dict]:
        """What a request's `model` may name: every version of the registered model (or the one file)."""
        if self.name is None:
            return [{"id": self.primary.id, "label": self.primary.id}]
        return version_choices(self.name)

    def load(self) -> dict:
        with self.lock:
            return self.primary.batcher.load()

    # ---- following the alias

    def _follow(self) -> None:
        while not self.stopped.wait(self.poll_seconds):
            self.follow_once()

    def _warn(self, message: str) -> None:
        if self.warned != message:
            log(f"warning: {message}")
            self.warned = message

    def follow_once(self) -> None:
        current = self.primary.version
        try:
            number = resolve_version(self.name, self.alias, None)
        except LookupError as err:
            self._warn(f"{err}; still serving version {current}, asking again every {self.poll_seconds:g}s")
            return
        except Exception as err:
            reason = str(err).splitlines()[0][:200] if str(err) else type(err).__name__
            self._warn(f"the registry at {store.tracking_uri()} does not answer ({reason}); still serving "
                       f"version {current}, retrying every {self.poll_seconds:g}s")
            return
        if self.warned is not None:
            log(f"the registry answers again: @{self.alias} is version {number}")
            self.warned = None
        if number == current:
            return
        log(f"{self.name}@{self.alias} moved to version {number}: loading it")
        try:
            new = self._held(number) or load_version(self.name, number, self.settings)
        except Exception as err:
            self._warn(f"cannot load {self.name} version {number} ({err}); still serving version {current}")
            return
        with self.lock:
            old, self.primary = self.primary, new
            if self.other is new:
                self.other = None
        old.batcher.stop()
        log(f"switched {self.name}@{self.alias} from version {current} to version {number} "
            f"(requests in flight finish on version {current})")

    def close(self) -> None:
        self.stopped.set()
        with self.lock:
            for served in (self.primary, self.other):
                if served is not None:
                    served.batcher.stop()
