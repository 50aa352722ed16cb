"""Progress output (pipeline/console.py) and the training line (pipeline/stages/train.py), with a
fake clock: in a pipe or a log, a plain line at the start, every few percent or every N seconds
(whichever first) and the last state at the end, also when the total is never reached or
unknown; an ETA smoothed over bursts of steps and evaluation pauses; the training line's
step/total, loss, tokens/s, MFU where the GPU's peak is published, and ETA."""

from __future__ import annotations

import re
from types import SimpleNamespace

import pytest

from folio import flops
from pipeline import console
from pipeline.console import Eta, Progress
from pipeline.stages import train


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def lines_of(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.strip()]


def test_piped_lines_every_few_percent_and_the_last_when_the_total_is_never_reached(capsys):
    """validate's case: bytes of text counted against the files' bytes (never reached), over in
    less than `every` seconds. Before, one line printed at the first update and none after."""
    clock = FakeClock()
    with Progress("validate (bytes of text)", total=31_758_701, every=10.0, percent=5.0, clock=clock) as bar:
        done = 0
        while done < 30_000_000:
            done += 5_218
            clock.now += 0.0005
            bar.update(done)
    lines = lines_of(capsys)
    assert lines[0].startswith("validate (bytes of text): 5,218/31,758,701 (0%)")
    percents = [int(re.search(r"\((\d+)%\)", line).group(1)) for line in lines]
    assert percents[:-1] == list(range(0, 95, 5))  # one line per 5% (the first at 0%)
    assert lines[-1].startswith(f"validate (bytes of text): {done:,}/31,758,701 (94%)")  # the end
    assert lines[-1].endswith("· 0:00:03 elapsed")


def test_piped_lines_every_n_seconds_without_a_total_and_the_last(capsys):
    clock = FakeClock()
    with Progress("download x", total=None, every=10.0, clock=clock) as bar:
        for second in range(36):
            clock.now = 1000.0 + second
            bar.update(second * 1000)
    lines = lines_of(capsys)
    assert [line.split(" · ")[0] for line in lines] == [
        "download x: 0", "download x: 10,000", "download x: 20,000", "download x: 30,000", "download x: 35,000"]
    assert lines[-1].endswith("0:00:35 elapsed")


def test_no_final_line_after_a_failure_and_none_twice_at_the_total(capsys):
    clock = FakeClock()
    with pytest.raises(RuntimeError):
        with Progress("prepare", total=100, every=10.0, clock=clock) as bar:
            bar.update(1)
            clock.now += 1
            bar.update(2)
            raise RuntimeError("boom")
    assert len(lines_of(capsys)) == 1
    with Progress("prepare", total=100, every=10.0, clock=clock) as bar:
        bar.update(100)
    assert len(lines_of(capsys)) == 1  # the update at the total was the last line
    with Progress("download", total=100, every=10.0, clock=clock) as bar:  # a total that was too low
        for done in range(95, 140):
            clock.now += 0.1
            bar.update(done)
    assert [line.split(" · ")[0] for line in lines_of(capsys)] == [
        "download: 95/100 (95%)", "download: 100/100 (100%)", "download: 139/100 (100%)"]


def simulate_training(eta: Eta, steps=3500, seconds_per_step=0.08, burst=10, eval_every=250,
                      eval_seconds=4.0):
    """Feed `eta` as training does: losses read back every `burst` steps (each step reported at
    the same moment), a pause for evaluation every `eval_every` steps. Returns (step, time,
    eta's seconds left, the true seconds left) at each read-back."""
    now, reports = 0.0, []
    for step in range(1, steps + 1):
        now += seconds_per_step
        if step % eval_every == 0:
            now += eval_seconds
        if step % burst == 0:
            for reported in range(step - burst + 1, step + 1):
                eta.update(reported, now)
            reports.append((step, now, eta.seconds_left(step, steps)))
    end = now
    return [(step, t, left, end - t) for step, t, left in reports]


def test_eta_is_a_smoothed_average_close_to_the_truth_and_steady():
    reports = simulate_training(Eta())
    late = [r for r in reports if r[0] >= 1000]  # after the first ~100 s
    for step, _, left, truth in late:
        if truth > 60:
            assert abs(left - truth) / truth < 0.08, (step, left, truth)
    # steady: from one read-back to the next the estimate falls by about the time that passed; an
    # evaluation pause raises it by well under a tenth (rich's 30 s average swung by a third)
    swings = [abs((a[2] - b[2]) - (b[1] - a[1])) / a[2] for a, b in zip(late, late[1:]) if a[2] > 60]
    assert max(swings) < 0.10
    assert sorted(swings)[len(swings) // 2] < 0.005  # between evaluations it hardly moves


def test_eta_has_no_estimate_before_a_window_of_work_and_restarts_when_work_goes_back():
    eta = Eta(window=5.0)
    eta.update(0, 0.0)
    eta.update(10, 1.0)
    assert eta.seconds_left(10, 100) is None  # 1 s seen: too little to say
    eta.update(50, 5.0)
    assert eta.seconds_left(50, 100) == pytest.approx(50 * 0.1)
    eta.update(20, 6.0)  # a resume from an earlier step: the estimate stays, the anchor moves
    eta.update(70, 11.0)
    assert eta.seconds_left(70, 100) == pytest.approx(30 * 0.1)


def test_training_line_shows_step_of_total_loss_tokens_per_second_and_eta(capsys):
    clock = FakeClock()
    run = SimpleNamespace(on_start=lambda info: None, on_step=lambda step, metrics: None)
    model = SimpleNamespace(config=SimpleNamespace(n_layer=4, n_head=4, n_embd=192, block_size=128))
    with Progress("train", total=3500, every=10.0, clock=clock) as bar:
        callback = train.StageCallback(run, bar, model)
        callback.on_start({"device": "cpu", "device_reason": "no GPU", "dtype": "bfloat16",
                           "dtype_reason": "AMX", "world_size": 1, "num_params": 1_816_896,
                           "size_fp32_mb": 6.9, "size_bf16_mb": 3.5, "resumed_from_step": None})
        for step in range(1, 1201):
            clock.now += 0.08
            callback.on_step(step, {"train_loss": 2.049, "tokens_per_sec": 25_600.0})
    lines = lines_of(capsys)
    assert callback.flops_per_token == flops.flops_per_token(1_816_896, 4, 4, 192, 128)
    periodic = lines[-2]  # the last line while training; then the end's, with no ETA
    step = int(re.match(r"train: ([\d,]+)/3,500 \(\d+%\) · loss 2\.049 · 25,600 tok/s · ", periodic)
               .group(1).replace(",", ""))
    elapsed, eta = (re.search(rf"{what}(\d+):(\d\d):(\d\d)", periodic).groups()
                    for what in ("· ", "ETA "))
    assert seconds(elapsed) == pytest.approx(step * 0.08, abs=1)
    assert seconds(eta) == pytest.approx((3500 - step) * 0.08, abs=1)
    assert lines[-1] == "train: 1,200/3,500 (34%) · loss 2.049 · 25,600 tok/s · 0:01:36 elapsed"
    assert not any("MFU" in line for line in lines)  # a CPU: no published peak


def seconds(clock: tuple[str, str, str]) -> int:
    return int(clock[0]) * 3600 + int(clock[1]) * 60 + int(clock[2])


def test_mfu_shows_where_the_gpu_peak_is_published():
    metrics = {"train_loss": 1.5, "tokens_per_sec": 100_000.0}
    per_token = 6e9  # 6e14 FLOP/s at 100k tokens/s
    assert train.step_info(metrics, per_token, 989.0) == "loss 1.500 · 100,000 tok/s · MFU 61%"
    assert train.step_info(metrics, per_token, None) == "loss 1.500 · 100,000 tok/s"
    assert flops.peak_tflops("NVIDIA H100 80GB HBM3", "bfloat16") == 989.0
    assert flops.peak_tflops("NVIDIA H100 PCIe", "torch.bfloat16") == 756.0
    assert flops.peak_tflops("NVIDIA A100-SXM4-80GB", "float16") == 312.0
    assert flops.peak_tflops("NVIDIA A10", "bfloat16") == 125.0
    assert flops.peak_tflops("NVIDIA A10G", "bfloat16") is None
    assert flops.peak_tflops("NVIDIA A100-SXM4-80GB", "float32") is None
    assert flops.peak_tflops("Some New GPU", "bfloat16") is None
    assert train.gpus_peak_tflops({"device": "cpu", "dtype": "bfloat16", "world_size": 1}) is None


def test_clock_and_duration_texts():
    assert console.clock_time(3725.4) == "1:02:05"
    assert [console.duration_text(s) for s in (43, 298, 7500)] == ["43s", "4m 58s", "2h 05m"]
