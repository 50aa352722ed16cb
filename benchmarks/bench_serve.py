"""`folio serve` under load on loopback: 1, 4, 8 and 16 concurrent clients, each sending a fixed
number of streamed completions one after another, against one server on the default model.

    python benchmarks/bench_serve.py [--model models/best.pt] [--clients 1 4 8 16]
        [--requests 6] [--max-tokens 64] [--threads N]

Each level starts from an idle server; its clients start together. Per request: time to first
token (the first event carrying text), latency (to `data: [DONE]`), and the completion tokens of
its usage chunk. Per level: p50/p95 of both, aggregate tokens/s (all completion tokens over the
level's wall time), failed or lost requests (an error status, an error event, no [DONE], fewer
tokens than asked). Every request asks for exactly --max-tokens tokens (no stop strings), at
temperature 0.8 from the prompt "ROMEO:", seeded by client and request.

Targets (issue 23): aggregate tokens/s at 8 clients >= 2.5x one client's; no request lost or
failed at 16. The server runs with its defaults (a batch of 16 rows, a queue of 64) as
`python -m pipeline.cli serve` in its own process; this script's clients are threads using
http.client. Writes reports/bench_serve.md and reports/bench_serve.json.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from timing import cpu_name

ROOT = Path(__file__).resolve().parents[1]
PROMPT = "ROMEO:"
TARGET_SPEEDUP_AT_8 = 2.5


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model: str, port: int, threads: int | None, log: Path) -> subprocess.Popen:
    args = [sys.executable, "-m", "pipeline.cli", "serve", model, "--port", str(port)]
    if threads:
        args += ["--threads", str(threads)]
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
    with open(log, "wb") as out:
        proc = subprocess.Popen(args, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"folio serve exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).close()
            return proc
        except OSError:
            time.sleep(0.5)
    stop_server(proc)
    raise SystemExit(f"folio serve did not answer within 180 s: {log.read_text()[-2000:]}")


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def one_request(port: int, max_tokens: int, seed: int) -> dict:
    """Stream one completion; its timings, tokens and whether it failed."""
    body = json.dumps({"prompt": PROMPT, "max_tokens": max_tokens, "temperature": 0.8, "seed": seed,
                       "stream": True, "stream_options": {"include_usage": True}})
    started = time.perf_counter()
    first, tokens, done, error = None, 0, False, None
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    try:
        connection.request("POST", "/v1/completions", body, {"Content-Type": "application/json"})
        response = connection.getresponse()
        if response.status != 200:
            return {"failed": f"status {response.status}: {response.read()[:200]!r}"}
        for line in response:
            if not line.startswith(b"data: "):
                continue
            data = line[6:].strip()
            if data == b"[DONE]":
                done = True
                break
            chunk = json.loads(data)
            if "error" in chunk:
                error = chunk["error"]["message"]
                break
            if first is None and any(c["text"] for c in chunk["choices"]):
                first = time.perf_counter() - started
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
    except OSError as err:
        error = f"{type(err).__name__}: {err}"
    finally:
        connection.close()
    latency = time.perf_counter() - started
    if error or not done or tokens != max_tokens:
        return {"failed": error or ("no [DONE]" if not done else f"{tokens} tokens, not {max_tokens}")}
    return {"ttft": first, "latency": latency, "tokens": tokens}


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def level(port: int, clients: int, requests: int, max_tokens: int) -> dict:
    results: list[dict] = []
    lock = threading.Lock()
    barrier = threading.Barrier(clients)

    def client(c: int) -> None:
        barrier.wait()
        for r in range(requests):
            result = one_request(port, max_tokens, seed=1000 * c + r)
            with lock:
                results.append(result)

    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    ok = [r for r in results if "failed" not in r]
    failed = [r["failed"] for r in results if "failed" in r]
    lost = clients * requests - len(results)
    row = {"clients": clients, "requests": clients * requests, "failed": len(failed) + lost,
           "failures": failed[:5], "wall_s": round(wall, 2),
           "tokens_per_s": round(sum(r["tokens"] for r in ok) / wall, 1)}
    if ok:
        for key in ("ttft", "latency"):
            row[f"{key}_p50_ms"] = round(1000 * percentile([r[key] for r in ok], 50), 1)
            row[f"{key}_p95_ms"] = round(1000 * percentile([r[key] for r in ok], 95), 1)
    return row


def report(rows: list[dict], args, machine: str) -> str:
    base = rows[0]["tokens_per_s"] if rows and rows[0]["clients"] == 1 else None
    lines = [f"# folio serve under load ({time.strftime('%Y-%m-%d')})", "",
             f"machine: {machine}; model: {args.model}; {args.requests} requests per client, "
             f"{args.max_tokens} tokens each, streamed; server defaults (batch 16, queue 64)", "",
             "| clients | requests | failed | TTFT p50 | TTFT p95 | latency p50 | latency p95 | tokens/s | vs 1 client |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ratio = f"{r['tokens_per_s'] / base:.2f}x" if base else "-"
        lines.append(f"| {r['clients']} | {r['requests']} | {r['failed']} | {r.get('ttft_p50_ms', '-')} ms | "
                     f"{r.get('ttft_p95_ms', '-')} ms | {r.get('latency_p50_ms', '-')} ms | "
                     f"{r.get('latency_p95_ms', '-')} ms | {r['tokens_per_s']:,.0f} | {ratio} |")
    by_clients = {r["clients"]: r for r in rows}
    if base and 8 in by_clients:
        speedup = by_clients[8]["tokens_per_s"] / base
        lines += ["", f"8 clients: {speedup:.2f}x one client's tokens/s (target >= {TARGET_SPEEDUP_AT_8}x): "
                      f"{'met' if speedup >= TARGET_SPEEDUP_AT_8 else 'NOT met'}"]
    if 16 in by_clients:
        failed = by_clients[16]["failed"]
        lines.append(f"16 clients: {failed} of {by_clients[16]['requests']} requests failed or lost "
                     f"(target 0): {'met' if failed == 0 else 'NOT met'}")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="models/best.pt", help="what `folio serve` serves")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 8, 16])
    parser.add_argument("--requests", type=int, default=6, help="requests per client, one after another")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=None, help="the server's torch threads")
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "bench_serve")
    args = parser.parse_args()
    port = free_port()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    log = Path(tempfile.mkstemp(prefix="bench_serve-", suffix=".log")[1])  # the server's output
    proc = start_server(args.model, port, args.threads, log)
    try:
        one_request(port, args.max_tokens, seed=0)  # warm-up
        rows = []
        for clients in args.clients:
            rows.append(level(port, clients, args.requests, args.max_tokens))
            print(json.dumps(rows[-1]), flush=True)
    finally:
        stop_server(proc)
    machine = f"{cpu_name()} ({platform.machine()}), {os.cpu_count()} CPUs, no GPU used"
    text = report(rows, args, machine)
    args.out.with_suffix(".md").write_text(text)
    args.out.with_suffix(".json").write_text(json.dumps({"machine": machine, "args": {
        k: str(v) for k, v in vars(args).items()}, "rows": rows}, indent=2))
    print(text)


if __name__ == "__main__":
    main()
