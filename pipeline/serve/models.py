"""What `folio serve` serves: a registered version (`models:/<name>@<alias>`, `models:/<name>/<version>`)
or a checkpoint file, loaded (pipeline.commands.generate.load, on the chosen device) with a
folio.batching.Batcher of its own.

A `Served` model names itself `<name>/<version>` (a registered version) or by its checkpoint path:
that id is what /v1/models lists and what a request's `model` field may name.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from folio.batching import Batcher
from pipeline.commands.generate import load
from pipeline.errors import StageError
from pipeline.tracking import registry

# models:/ optional; name@alias, name/version, or (of the served model's name) @alias, version, latest
MODEL_SPEC = re.compile(r"(?:models:/)?(?P<name>[^/@]*)(?:@(?P<alias>[\w-]+)|/(?P<version>\d+|latest))?")


class ServeError(StageError):
    """A setting or start-up problem the user can fix: one line, exit 1."""


@dataclass
class BatchSettings:
    max_batch: int = 16
    max_queue: int = 64
    device: str = "auto"


@dataclass
class Served:
    id: str  # <name>/<version>, or the checkpoint path
    source: str  # models:/<name>/<version>, or the checkpoint path
    tokenizer: object
    block_size: int
    batcher: Batcher
    name: str | None = None
    version: int | None = None
    created: int = field(default_factory=lambda: int(time.time()))

    def describe(self, aliases: list[str]) -> dict:
        """The /v1/models entry."""
        return {"id": self.id, "object": "model", "created": self.created, "owned_by": "folio",
                "root": self.source, "version": self.version, "aliases": aliases}


def is_registry_uri(target: str) -> bool:
    return target.startswith("models:/")


def load_version(name: str, version: int, settings: BatchSettings) -> Served:
    """Version `version` of the registered model `name`, ready to serve."""
    source = f"models:/{name}/{version}"
    model, tokenizer = load(Path(), Path(), source, None, settings.device)
    return _served(f"{name}/{version}", source, model, tokenizer, settings, name, version)


def load_checkpoint(path: Path, tokenizer_dir: Path, settings: BatchSettings) -> Served:
    model, tokenizer = load(path, tokenizer_dir, None, None, settings.device)
    return _served(str(path), str(path), model, tokenizer, settings)


def _served(id_: str, source: str, model, tokenizer, settings: BatchSettings, name=None, version=None) -> Served:
    batcher = Batcher(model, tokenizer, settings.max_batch, settings.max_queue, name=f"batcher {id_}")
    return Served(id_, source, tokenizer, model.config.block_size, batcher, name, version)


def parse_spec(spec: str, default_name: str) -> tuple[str, str | None, str | None]:
    """(name, alias, version) named by a request's `model` field; version may be "latest"."""
    match = MODEL_SPEC.fullmatch(spec.strip())
    if match is None:
        raise LookupError(spec)
    name, alias, version = match["name"], match["alias"], match["version"]
    if alias is None and version is None:
        if name.isdigit() or name == "latest":  # a bare version of the served model
            return default_name, None, name
        raise LookupError(f"model {spec!r} names no version: use {spec}@<alias>, {spec}/<version> "
                          f"or {spec}/latest")
    return name or default_name, alias, version


def resolve_version(name: str, alias: str | None, version: str | None) -> int:
    """The version number behind an alias, a version or `latest`; LookupError when there is none."""
    try:
        if alias is not None:
            holder = registry.holder(name, alias)
            if holder is None:
                raise LookupError(f"{name} has no version with alias @{alias}")
            return holder
        if version == "latest":
            found = registry.versions(name)
            if not found:
                raise LookupError(f"{name} has no versions")
            return int(found[0].version)
        return int(registry.get_version(name, version).version)
    except registry.RegistryError as err:
        raise LookupError(str(err)) from None


def aliases_by_version(name: str) -> dict[int, list[str]]:
    aliases: dict[int, list[str]] = {}
    for alias, version in registry.registered_model(name).aliases.items():
        aliases.setdefault(int(version), []).append(alias)
    return aliases


def version_choices(name: str) -> list[dict]:
    """Every version of `name`, newest first, as {id, label} (the label names its aliases)."""
    aliases = aliases_by_version(name)
    return [{"id": f"{name}/{v.version}",
             "label": " ".join([f"version {v.version}", *(f"@{a}" for a in aliases.get(int(v.version), []))])}
            for v in registry.versions(name)]
