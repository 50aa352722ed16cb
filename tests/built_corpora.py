"""Corpora built on this machine, deterministically, for the tests of corpora of other kinds than
Tiny Shakespeare: Python source from the installed standard library, JSONL documents of very
different sizes, Parquet of short rows. Same machine, same bytes: files are taken in sorted order
and every random draw is seeded."""

from __future__ import annotations

import json
import random
import sysconfig
from pathlib import Path

STDLIB = Path(sysconfig.get_paths()["stdlib"])


def stdlib_sources(max_bytes: int | None = None, every: int = 1) -> list[tuple[str, str]]:
    """(path, text) of every `every`-th of the standard library's .py files (no site-packages, none
    that is empty or not UTF-8), sorted by path, until `max_bytes` of UTF-8 text."""
    files = sorted(p for p in STDLIB.rglob("*.py") if "site-packages" not in p.relative_to(STDLIB).parts)
    out, size = [], 0
    for path in files[::every]:
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        if not text.strip():
            continue
        if max_bytes is not None and size + len(text.encode()) > max_bytes:
            break
        out.append((path.relative_to(STDLIB).as_posix(), text))
        size += len(text.encode())
    return out


def ideograph_tables(modules: int = 12, per_module: int = 100, seed: int = 0) -> list[tuple[str, str]]:
    """Python modules each holding a table of `per_module` CJK ideographs with their code points,
    as the stdlib's own encoding tables do: 1,200 distinct characters, so that with the stdlib
    around them the corpus holds over 1,000 (a char vocabulary's limit), spread over several files."""
    rng = random.Random(seed)
    picked = rng.sample(range(0x4E00, 0x9FA5), modules * per_module)
    out = []
    for i in range(modules):
        rows = "".join(f"    {chr(c)!r}: 0x{c:04X},\n" for c in sorted(picked[i * per_module:(i + 1) * per_module]))
        out.append((f"ideographs/table_{i:02d}.py",
                    f'"""Ideographs and their code points, part {i} (generated)."""\n\nTABLE = {{\n{rows}}}\n'))
    return out


def write_jsonl(path: Path, documents: list[tuple[str, str]]) -> Path:
    """One {"path", "text"} record per document, in order."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as out:
        for name, text in documents:
            out.write(json.dumps({"path": name, "text": text}, ensure_ascii=False) + "\n")
    return path


def python_corpus(path: Path, max_bytes: int | None = None, every: int = 1) -> Path:
    """A JSONL of Python source files: the stdlib's (every `every`-th, up to `max_bytes`) and the
    ideograph tables among them, in path order."""
    return write_jsonl(path, sorted([*stdlib_sources(max_bytes, every), *ideograph_tables()]))


def uneven_documents(n_small: int = 300, n_large: int = 6, seed: int = 0) -> list[tuple[str, str]]:
    """Documents of very different sizes: many of a few hundred bytes, a few of ~60 kB."""
    rng = random.Random(seed)
    words = ("the of and to in is was for on are with as by at from this that have not but all "
             "river stone light paper window garden letter number market winter").split()

    def paragraph(n_words: int) -> str:
        return " ".join(rng.choice(words) for _ in range(n_words)).capitalize() + ".\n"

    docs = [(f"small-{i}", "".join(paragraph(rng.randint(8, 30)) for _ in range(rng.randint(2, 5))))
            for i in range(n_small)]
    docs += [(f"large-{i}", "".join(paragraph(rng.randint(40, 80)) for _ in range(180))) for i in range(n_large)]
    rng.shuffle(docs)
    return docs


def short_rows(n: int = 6000, seed: int = 0) -> list[str]:
    """Short texts, one per row, as from a table of posts or titles: 20 to 90 characters."""
    rng = random.Random(seed)
    words = ("new update release today great fix the a for with now why how what best guide notes "
             "data model city music film book week team game").split()
    return [" ".join(rng.choice(words) for _ in range(rng.randint(4, 14))).capitalize()
            + rng.choice([".", "!", "?", " :)", ""]) for _ in range(n)]


def write_parquet(path: Path, texts: list[str], column: str = "text") -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({column: texts}), path)
    return path
