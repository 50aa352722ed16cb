"""The data stages at scale: build a corpus of a given size on this machine, run every data stage
and a short training on it as `folio` processes, and report wall time and the peak resident
memory of each stage's process tree (workers included), MB/s of corpus for the stages that read
the corpus (those whose dvc.yaml deps or outs hold the corpus folder: download, validate,
tokenize, prepare, and validate_tokens for its round-trip check; the others read tokens,
checkpoints or the manifest, so corpus bytes over their time would mean nothing), then the time
of a `dvc repro` with nothing changed.

    python benchmarks/bench_data.py --size 1GB            # -> reports/bench_data_1GB.json
    python benchmarks/bench_data.py --size 4GB --keep     # keep the workspace to look around

The corpus is built offline and deterministically from the Python sources installed with this
interpreter (the standard library and site-packages, in sorted order): one JSONL record per source
file, in shards of about 256 MB. Pass k over the sources rotates the letters by k, so lines do not
repeat from one pass to the next. The workspace is a copy of this project's code, pipeline and
params (with the corpus, `tokenizer.kind: bpe` at --vocab) under git and DVC, so the stages run
exactly as `dvc repro` would run them; `dvc commit` then records them and the no-op `dvc repro` is
timed. In the same run, tiktoken encoding a sample of the corpus on one core is the anchor
prepare's MB/s is compared with.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import string
import subprocess
import sys
import time
from pathlib import Path

import psutil
import yaml

PROJECT = Path(__file__).resolve().parents[1]
SHARD_BYTES = 256 * 10**6
BENCH_VALIDATE = {"max_distinct_chars": 20000, "max_duplicate_fraction": 0.8, "max_long_line_fraction": 0.01,
                  "max_control_char_fraction": 0.001, "min_printable_fraction": 0.99}
STAGES = ("download", "validate", "tokenize", "prepare", "validate_tokens", "train", "evaluate", "sample", "register")


CORPUS_DIR = "data/raw/${data.name}"  # the corpus files, as dvc.yaml names them


# a stage with the corpus among its deps that reads it only when a param asks: evaluate reads the
# train split for the contamination of evaluate.suites, and not at all without suites
READS_ONLY_WITH = {"evaluate": ("evaluate", "suites")}


def corpus_stages(dvc_yaml: Path = PROJECT / "dvc.yaml") -> set[str]:
    """The stages that go through the corpus files (download writes them, the others read them):
    dvc.yaml names the corpus folder among their deps or outs, and, for those of READS_ONLY_WITH,
    the params.yaml beside it sets what makes them read it."""
    stages = yaml.safe_load(dvc_yaml.read_text())["stages"]
    params_file = dvc_yaml.with_name("params.yaml")
    params = yaml.safe_load(params_file.read_text()) if params_file.exists() else {}

    def reads(name: str) -> bool:
        if name not in READS_ONLY_WITH:
            return True
        section, key = READS_ONLY_WITH[name]
        return bool((params.get(section) or {}).get(key))

    return {name for name, stage in stages.items()
            if CORPUS_DIR in [*stage.get("deps", []), *stage.get("outs", [])] and reads(name)}


def corpus_throughput(results: dict, corpus_bytes: int, readers: set[str]) -> None:
    """Adds mb_per_s (corpus MB over wall seconds) to each stage that reads the corpus; the other
    stages get None."""
    for stage, result in results.items():
        result["mb_per_s"] = round(corpus_bytes / 1e6 / result["seconds"], 1) if stage in readers else None


def stage_line(stage: str, result: dict) -> str:
    mb_per_s = f"{result['mb_per_s']:7.1f} MB/s" if result["mb_per_s"] is not None else f"{'—':>7} MB/s"
    return (f"{stage:16} {result['seconds']:8.1f} s {mb_per_s} {result['peak_rss_mb']:7,} MB peak RSS   "
            f"{result['last_line'][:90]}")


def parse_size(text: str) -> int:
    units = {"KB": 10**3, "MB": 10**6, "GB": 10**9}
    for unit, factor in units.items():
        if text.upper().endswith(unit):
            return int(float(text[:-2]) * factor)
    return int(text)


def python_sources() -> list[Path]:
    roots = {Path(sys.base_prefix) / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}",
             *map(Path, __import__("site").getsitepackages())}
    files = set()
    for root in roots:
        files |= {p for p in root.rglob("*.py") if p.is_file()}
    return sorted(files)


def rotate(k: int):
    lower, upper = string.ascii_lowercase, string.ascii_uppercase
    shift = k % 26
    return str.maketrans(lower + upper, lower[shift:] + lower[:shift] + upper[shift:] + upper[:shift])


def build_corpus(directory: Path, size: int) -> dict:
    """JSONL shards of one record per source file until `size` bytes; the digest of what was written."""
    directory.mkdir(parents=True, exist_ok=True)
    sources = python_sources()
    written, shard, out, digest, k = 0, 0, None, hashlib.sha256(), 0
    while written < size:
        table = rotate(k)
        for path in sources:
            try:
                text = path.read_text(encoding="utf-8")
            except (UnicodeDecodeError, OSError):
                continue
            if not text.strip():
                continue
            line = (json.dumps({"text": text.translate(table) if k else text,
                                "path": f"{k}/{path.name}"}, ensure_ascii=False) + "\n").encode()
            if out is None or out.tell() >= SHARD_BYTES:
                if out:
                    out.close()
                out = open(directory / f"code-{shard:05d}.jsonl", "wb")
                shard += 1
            out.write(line)
            digest.update(line)
            written += len(line)
            if written >= size:
                break
        k += 1
    out.close()
    return {"bytes": written, "files": shard, "passes": k, "sha256": digest.hexdigest(), "sources": len(sources)}


def make_workspace(root: Path, corpus: Path, vocab: int, train_iters: int) -> None:
    for name in ("pipeline", "src"):
        shutil.copytree(PROJECT / name, root / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copy(PROJECT / "dvc.yaml", root / "dvc.yaml")
    params = yaml.safe_load((PROJECT / "params.yaml").read_text())
    params["data"].update({"name": "code", "url": str(corpus), "sha256": ""})
    params["tokenizer"].update({"kind": "bpe", "vocab_size": vocab})
    params["train"].update({"max_iters": train_iters, "eval_interval": train_iters, "eval_iters": 5})
    # installed sources hold some minified lines, escape codes and unusual characters
    params["validate"].update(BENCH_VALIDATE)
    params["validate_tokens"]["max_unseen_val_fraction"] = 0.001
    params["sample"].update({"prompts": ["def "], "attention_prompt": "def main():"})
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (root / ".gitignore").write_text("/mlflow.db\n/mlruns/\n/.folio/\n")
    run(["git", "init", "-q"], root)
    run([sys.executable, "-m", "dvc", "init", "-q"], root)
    run([sys.executable, "-m", "dvc", "config", "core.analytics", "false"], root)
    run(["git", "add", "-A"], root)
    run(["git", "-c", "user.name=bench", "-c", "user.email=bench@localhost", "commit", "-qm", "bench"], root)


def run(cmd: list[str], cwd: Path) -> None:
    subprocess.run(cmd, cwd=cwd, check=True, env=environment(cwd))


def environment(root: Path) -> dict:
    return {**os.environ, "PYTHONPATH": f"{root}{os.pathsep}{root / 'src'}", "GX_ANALYTICS_ENABLED": "false",
            "MLFLOW_DISABLE_TELEMETRY": "true", "DVC_NO_ANALYTICS": "1",
            "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}"}


def tree_rss(process: psutil.Process) -> int:
    total = 0
    for p in [process, *process.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def measured(cmd: list[str], cwd: Path) -> dict:
    """Wall time and the peak summed RSS of the process and its descendants (sampled every 50 ms)."""
    started = time.perf_counter()
    child = subprocess.Popen(cmd, cwd=cwd, env=environment(cwd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    watched, peak = psutil.Process(child.pid), 0
    while child.poll() is None:
        peak = max(peak, tree_rss(watched))
        time.sleep(0.05)
    output = child.stdout.read().decode(errors="replace")
    if child.returncode:
        sys.exit(f"{' '.join(cmd)} failed ({child.returncode}):\n{output[-3000:]}")
    return {"seconds": round(time.perf_counter() - started, 2), "peak_rss_mb": round(peak / 2**20),
            "last_line": output.strip().splitlines()[-1] if output.strip() else ""}


def tiktoken_anchor(root: Path, corpus: Path) -> float:
    """MB/s of the trained BPE's tiktoken encoder on one thread, over ~32 MB of the corpus."""
    sys.path[:0] = [str(root / "src")]
    from folio.tokenizers import load_tokenizer

    tokenizer = load_tokenizer(root / "data/tokenizer")
    with open(sorted(corpus.glob("*.jsonl"))[0], encoding="utf-8") as f:
        texts, size = [], 0
        for line in f:
            texts.append(json.loads(line)["text"])
            size += len(texts[-1].encode())
            if size > 32 * 10**6:
                break
    started = time.perf_counter()
    for text in texts:
        tokenizer.encoding.encode_ordinary(text)
    return size / 1e6 / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="1GB", help="corpus size, e.g. 200MB, 1GB, 4GB")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/folio-bench-data"))
    parser.add_argument("--vocab", type=int, default=4096)
    parser.add_argument("--train-iters", type=int, default=50)
    parser.add_argument("--keep", action="store_true", help="keep the workspace afterwards")
    args = parser.parse_args()
    size = parse_size(args.size)
    root = args.workdir / f"ws-{args.size}"
    shutil.rmtree(root, ignore_errors=True)
    corpus = args.workdir / f"corpus-{args.size}"
    if not (corpus / "built.json").exists():
        shutil.rmtree(corpus, ignore_errors=True)
        built = build_corpus(corpus, size)
        (corpus / "built.json").write_text(json.dumps(built))
    built = json.loads((corpus / "built.json").read_text())
    (corpus / "built.json").rename(corpus / ".built.json")  # not a corpus file: hidden while download runs
    try:
        root.mkdir(parents=True)
        make_workspace(root, corpus, args.vocab, args.train_iters)
        results, readers = {}, corpus_stages(root / "dvc.yaml")
        for stage in STAGES:
            results[stage] = measured([str(Path(sys.executable).parent / "folio"), stage], root)
            corpus_throughput({stage: results[stage]}, built["bytes"], readers)
            print(stage_line(stage, results[stage]), flush=True)
        anchor = tiktoken_anchor(root, corpus)
        commit = measured([sys.executable, "-m", "dvc", "commit", "-f", "-q"], root)
        noop = measured([sys.executable, "-m", "dvc", "repro"], root)
        status = subprocess.run([sys.executable, "-m", "dvc", "status"], cwd=root, env=environment(root),
                                capture_output=True, text=True).stdout.strip()
    finally:
        (corpus / ".built.json").rename(corpus / "built.json")
    report = {
        "date": time.strftime("%Y-%m-%d"), "machine": f"{os.cpu_count()} cores, "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB", "corpus": built, "vocab_size": args.vocab,
        "validate_thresholds": BENCH_VALIDATE, "corpus_stages": sorted(readers),
        "stages": results, "tiktoken_one_thread_mb_per_s": round(anchor, 1),
        "prepare_vs_tiktoken_one_thread": round(results["prepare"]["mb_per_s"] / anchor, 2),
        "dvc_commit_seconds": commit["seconds"], "dvc_repro_noop_seconds": noop["seconds"],
        "dvc_repro_noop_output": noop["last_line"], "dvc_status": status,
        "prepared_meta": json.loads((root / "data/prepared/meta.json").read_text()),
    }
    report["prepared_meta"].pop("shards")
    out = PROJECT / "reports" / f"bench_data_{args.size}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"tiktoken alone, one thread: {anchor:.1f} MB/s; prepare {results['prepare']['mb_per_s']} MB/s "
          f"({report['prepare_vs_tiktoken_one_thread']}x)")
    print(f"dvc commit {commit['seconds']} s; dvc repro with nothing changed: {noop['seconds']} s "
          f"({noop['last_line']}); wrote {out}")
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
