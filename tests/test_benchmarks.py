"""The side-by-side benchmarks' own logic: reading nanoGPT's output, and benchmarks/gpu_check.sh
end to end in --dry-run on the CPU (the real nanoGPT from ../shared/anchors and `folio train`)."""

import os
import subprocess
import sys

import pytest

from tests.conftest import PROJECT

sys.path.insert(0, str(PROJECT / "benchmarks"))
import nanogpt  # noqa: E402

NANOGPT_OUTPUT = """\
tokens per iteration will be: 768
step 0: train loss 4.2874, val loss 4.2823
iter 0: loss 4.2654, time 812.51ms, mfu -100.00%
iter 10: loss 3.2458, time 21.74ms, mfu 0.01%
iter 20: loss 2.7942, time 19.98ms, mfu 0.01%
iter 30: loss 2.6100, time 23.10ms, mfu 0.01%
step 2000: train loss 1.7648, val loss 1.8857
iter 2000: loss 1.6958, time 730.71ms, mfu 0.02%
"""


def test_nanogpt_output_is_parsed_into_steps_and_evaluations():
    log = nanogpt.parse_log(NANOGPT_OUTPUT)
    assert log["evals"] == [(0, 4.2874, 4.2823), (2000, 1.7648, 1.8857)]
    assert [i for i, _, _ in log["iters"]] == [0, 10, 20, 30, 2000]
    # warm-up (iteration 0) left out; the median drops the evaluation step's long time
    assert nanogpt.median_step_ms(log["iters"], skip=10) == pytest.approx((21.74 + 23.10) / 2)


def test_the_median_of_a_run_shorter_than_the_warm_up_leaves_out_only_iteration_0():
    assert nanogpt.median_step_ms([(0, 4.0, 900.0), (1, 3.9, 20.0), (2, 3.8, 22.0)], skip=10) == 21.0


def test_gpu_check_dry_run_trains_both_on_the_cpu_and_prints_the_table():
    if not (nanogpt.ANCHOR / "train.py").exists() or not nanogpt.CORPUS.exists():
        pytest.skip(f"nanoGPT or the corpus is missing under {nanogpt.SHARED}")
    proc = subprocess.run([str(PROJECT / "benchmarks" / "gpu_check.sh"), "--dry-run"], capture_output=True,
                          text=True, timeout=600, env={**os.environ, "PYTHON": sys.executable})
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    assert "| run | tokens/s | MFU (bf16 peak) | wall | val loss | whole-val loss |" in out
    rows = [line for line in out.splitlines() if line.startswith(("| nanogpt |", "| folio |"))]
    assert len(rows) == 2
    for row in rows:
        tokens_per_sec, mfu, wall, val, whole = (c.strip() for c in row.strip("|").split("|")[1:])
        assert float(tokens_per_sec.replace(",", "")) > 0 and mfu.endswith("%") and wall.endswith(" s")
        assert 2.0 < float(val) < 5.0 and 2.0 < float(whole) < 5.0  # a few steps from 4.17 (ln 65)
    assert "goal (val <= 1.47 in less wall time than nanoGPT): not met" in out
