"""The benchmarks' own logic, so that they compare like for like: reading nanoGPT's output; the
throughput report's comparisons (an fp32-vs-fp32 row, both sides timed alike); the speedrun and
GPU verdicts on two whole-val losses; the GPU check's settings held equal on both sides (dtype,
determinism, compilation, MFU peak), decided from faked hardware (a T4, an H100, a CPU) and
printed beside each ratio; nanoGPT's generate driven through folio's windows; bench_generate's
int8 quality lines from the sharded prepared data (or a named skip); bench_data's MB/s only for
stages that read the corpus; and benchmarks/gpu_check.sh run as the README writes it, from a
fresh checkout with its own .venv and nothing made absolute by the test: end to end in --dry-run
on the CPU (the real nanoGPT from ../shared/anchors and `folio train`), and its one-line errors."""

import contextlib
import dataclasses
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

from folio.device import Hardware
from pipeline import params as folio_params
from tests.conftest import PROJECT, record_gate_passes

sys.path.insert(0, str(PROJECT / "benchmarks"))
import bench_data  # noqa: E402
import bench_generate  # noqa: E402
import bench_nanogpt  # noqa: E402
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

needs_anchor = pytest.mark.skipif(not (nanogpt.ANCHOR / "train.py").exists() or not nanogpt.CORPUS.exists(),
                                  reason=f"nanoGPT or the corpus is missing under {nanogpt.SHARED}")


@pytest.fixture(scope="module")
def anchor():
    anchor = nanogpt.Anchor()
    yield anchor
    anchor.cleanup()


def test_nanogpt_output_is_parsed_into_steps_and_evaluations():
    log = nanogpt.parse_log(NANOGPT_OUTPUT)
    assert log["evals"] == [(0, 4.2874, 4.2823), (2000, 1.7648, 1.8857)]
    assert [i for i, _, _ in log["iters"]] == [0, 10, 20, 30, 2000]
    # warm-up (iteration 0) left out; the median drops the evaluation step's long time
    assert nanogpt.median_step_ms(log["iters"], skip=10) == pytest.approx((21.74 + 23.10) / 2)


def test_the_median_of_a_run_shorter_than_the_warm_up_leaves_out_only_iteration_0():
    assert nanogpt.median_step_ms([(0, 4.0, 900.0), (1, 3.9, 20.0), (2, 3.8, 22.0)], skip=10) == 21.0


# ---- throughput: like for like ----------------------------------------------------------------

def test_folio_and_nanogpt_step_times_give_the_same_tokens_per_sec_for_the_same_times():
    ms = [900.0] * bench_nanogpt.WARMUP_STEPS + [20.0, 25.0, 30.0]  # warm-up, then steady steps
    nano = [(i, 3.0, t) for i, t in enumerate(ms)]
    times = bench_nanogpt.StepTimes(tokens_per_step=bench_nanogpt.CPU_BATCH * bench_nanogpt.CPU_MODEL["block_size"])
    for step, t in enumerate(ms, start=1):  # folio counts steps from 1 and reports tokens/s per read
        times.on_step(step, {"train_loss": 3.0, "tokens_per_sec": times.tokens_per_step / (t / 1000)})
    assert [i for i, _, _ in times.iters] == [i for i, _, _ in nano]
    assert [t for _, _, t in times.iters] == pytest.approx(ms)
    tokens_per_sec = bench_nanogpt.steady_tokens_per_sec(nano)
    assert bench_nanogpt.steady_tokens_per_sec(times.iters) == pytest.approx(tokens_per_sec)
    assert tokens_per_sec == pytest.approx(times.tokens_per_step / 0.025)  # the warm-up is left out


ROUNDS = [{"nanogpt": 10_000.0, "folio_fp32": 11_000.0, "folio": 14_000.0, "folio_compiled": 16_000.0,
           "dtype": "bfloat16", "dtype_reason": "auto: the CPU has AMX", "params": 800_000},
          {"nanogpt": 9_000.0, "folio_fp32": 10_800.0, "folio": 13_000.0, "folio_compiled": 15_000.0,
           "dtype": "bfloat16", "dtype_reason": "auto: the CPU has AMX", "params": 800_000}]


def test_the_throughput_report_holds_an_fp32_vs_fp32_row_beside_defaults_vs_defaults():
    result = bench_nanogpt.summarize(ROUNDS, {"fp32": 200.0, "bf16": 600.0}, flops=5e6, steps=300)
    rows = {c["name"]: c for c in result["comparisons"]}
    assert list(rows) == ["fp32 vs fp32", "defaults vs defaults", "folio compiled vs nanoGPT's CPU recipe"]
    fp32, default = rows["fp32 vs fp32"], rows["defaults vs defaults"]
    assert fp32["folio_side"] == "folio_fp32" and fp32["ratio"] == pytest.approx((1.1 + 1.2) / 2)
    assert default["ratio"] == pytest.approx((1.4 + 13 / 9) / 2)
    # what still differs is said beside each ratio: the dtype only where it differs
    assert "both float32" in fp32["differences"] and "bfloat16" not in fp32["differences"]
    assert "folio bfloat16" in default["differences"] and "nanoGPT float32" in default["differences"]
    assert all("AdamW" in c["differences"] for c in rows.values())
    assert result["folio_fp32"]["tokens_per_sec"] == pytest.approx(10_900.0)
    line = bench_nanogpt.throughput_line(result)
    assert "fp32 vs fp32 10,900 (1.15x; differs: both float32 eager" in line
    assert f"after {bench_nanogpt.WARMUP_STEPS} warm-up steps" in line


def test_the_defaults_row_says_when_auto_chose_float32():
    rounds = [{**r, "dtype": "float32", "dtype_reason": "auto: no AMX"} for r in ROUNDS]
    default = bench_nanogpt.comparisons(rounds)[1]
    assert default["differences"].startswith("none in dtype: both float32 (train.dtype auto: no AMX)")


# ---- speedrun and gpu: two whole-val losses ----------------------------------------------------

def test_the_speedrun_verdict_compares_two_whole_val_losses_never_an_estimate():
    # nanoGPT's own 20-batch estimate (val_estimate_*) is lower than anyone's whole-val loss here
    nano = {"val_estimate_last": 1.80, "val_estimate_best": 1.80, "whole_val_loss": 1.90, "wall_s": 100.0}
    assert bench_nanogpt.goal_met(nano, {"whole_val_loss": 1.88, "wall_s": 50.0}, max_wall_ratio=0.5)
    assert not bench_nanogpt.goal_met(nano, {"whole_val_loss": 1.91, "wall_s": 50.0}, max_wall_ratio=0.5)
    assert not bench_nanogpt.goal_met(nano, {"whole_val_loss": 1.88, "wall_s": 51.0}, max_wall_ratio=0.5)


# ---- gpu: like for like on any GPU, decided from faked hardware ---------------------------------

T4, H100 = Hardware(gpu="Tesla T4", gpu_capability=(7, 5)), Hardware(gpu="NVIDIA H100", gpu_capability=(9, 0))


def test_gpu_settings_give_an_h100_bf16_on_both_sides_and_the_bf16_peak():
    settings = bench_nanogpt.gpu_settings(H100, "cuda")
    assert settings.dtype == "bfloat16" and settings.peak == "bf16" and settings.compile
    assert "--dtype=bfloat16" in settings.nanogpt_args() and "train.dtype=bfloat16" in settings.folio_overrides()
    assert "compute capability 9.0" in settings.dtype_reason and "emulated" not in settings.dtype_reason


def test_gpu_settings_give_a_t4_fp16_on_both_sides_where_nanogpt_alone_would_emulate_bf16():
    settings = bench_nanogpt.gpu_settings(T4, "cuda")
    # folio's auto rule, not nanoGPT's default (bf16 wherever torch can emulate it)
    assert settings.dtype == "float16" and settings.peak == "fp16"
    assert "--dtype=float16" in settings.nanogpt_args() and "train.dtype=float16" in settings.folio_overrides()
    assert "nanoGPT's own default here would be bfloat16, emulated" in settings.dtype_reason


def test_gpu_settings_measure_bf16_requested_on_a_t4_against_the_fp16_peak_not_an_emulated_one():
    settings = bench_nanogpt.gpu_settings(T4, "cuda", requested_dtype="bfloat16")
    assert settings.dtype == "bfloat16" and settings.peak == "fp16"
    assert "bf16 is emulated on this GPU (compute capability 7.5" in settings.peak_reason
    assert bench_nanogpt.gpu_settings(H100, "cuda", requested_dtype="float32").peak == "tf32"
    assert bench_nanogpt.gpu_settings(T4, "cuda", requested_dtype="float32").peak == "fp32"


def test_gpu_settings_train_both_in_float32_in_the_cpu_dry_run_as_nanogpt_autocasts_only_on_cuda():
    amx = Hardware(cpu_bf16_units=("AMX-BF16",))
    settings = bench_nanogpt.gpu_settings(amx, "cpu")
    assert (settings.dtype, settings.peak, settings.compile) == ("float32", "fp32", False)
    assert "its train.dtype auto would be bfloat16" in settings.dtype_reason
    assert "would be" not in bench_nanogpt.gpu_settings(Hardware(), "cpu").dtype_reason


@pytest.mark.parametrize("hw, device", [(H100, "cuda"), (T4, "cuda"), (Hardware(), "cpu")])
def test_both_sides_get_the_settings_on_their_command_lines(hw, device):
    """folio's overrides pass its params validation; nanoGPT's arguments name the same values."""
    settings = bench_nanogpt.gpu_settings(hw, device)
    train = folio_params.load(PROJECT / bench_nanogpt.GPU_PRESET, settings.folio_overrides()).train
    assert (train.device, train.dtype, train.compile, train.deterministic) == (device, settings.dtype,
                                                                               settings.compile, False)
    assert settings.nanogpt_args() == [f"--device={device}", f"--dtype={settings.dtype}",
                                       f"--compile={settings.compile}"]


def test_a_side_that_trained_otherwise_than_the_settings_is_named():
    settings = bench_nanogpt.gpu_settings(H100, "cuda")
    nano = {"trained_with": {"device": "cuda", "dtype": "bfloat16", "compile": True}}
    ours = {"trained_with": {"device": "cuda", "dtype": "bfloat16", "compile": True, "deterministic": False}}
    assert bench_nanogpt.settings_not_held(settings, nano, ours) == []
    nano["trained_with"]["dtype"] = "float16"
    ours["trained_with"]["deterministic"] = True
    assert bench_nanogpt.settings_not_held(settings, nano, ours) == [
        "nanoGPT trained with dtype=float16, not bfloat16", "folio trained with train.deterministic=True, not False"]


def test_the_gpu_report_prints_the_settings_held_equal_beside_each_ratio():
    settings = bench_nanogpt.gpu_settings(T4, "cuda")
    side = {"whole_val_bits_per_byte": 2.0, "mfu": 0.25, "warnings": []}
    result = {"device": "Tesla T4", "peak_gflops": 65_000.0, "not_held": [], "goal_met": False,
              "settings": {**dataclasses.asdict(settings), "held_equal": settings.held_equal(),
                           "reasons": settings.reasons()},
              "scored": {"checkpoints": "best vs best", "val_tokens": 111_539, "val_text": "folio's val split",
                         "function": "whole_split_loss, float32"},
              "nanogpt": {**side, "tokens_per_sec": 100_000.0, "wall_s": 200.0, "whole_val_loss": 1.47},
              "folio": {**side, "tokens_per_sec": 125_000.0, "wall_s": 150.0, "whole_val_loss": 1.46}}
    result["comparisons"] = bench_nanogpt.gpu_comparisons(result)
    report = bench_nanogpt.gpu_report(result)
    held = "cuda, float16, compiled, deterministic kernels off"
    assert f"| training tokens/s | 100,000 | 125,000 | 1.25x | {held} |" in report
    assert f"| wall time, whole process (s) | 200.0 | 150.0 | 0.75x | {held} |" in report
    assert f"| whole-val loss (nats/char) | 1.4700 | 1.4600 | -0.0100 | {held} |" in report
    assert "| run | tokens/s | MFU (fp16 peak) |" in report and "fp16 matmul peak 65,000 GFLOP/s" in report
    assert "deterministic kernels off on both: nanoGPT asks for none, folio runs with train.deterministic=false" \
        in report
    assert [c["held_equal"] for c in result["comparisons"]] == [held] * 3
    assert json.loads(json.dumps(result))["settings"]["dtype"] == "float16"  # the JSON report holds them too


# ---- gpu_check.sh run as the README writes it, from a fresh checkout ------------------------------

README_COMMAND = "benchmarks/gpu_check.sh --dry-run"


def fresh_checkout(tmp_path, venv=None):
    """The project as a user's checkout holds it: every file git tracks or would track (as they
    are in the working tree) under tmp_path/folio, ../shared beside it, and `.venv` either this
    project's environment (a link, as if `make setup` had made it there) or the folder `venv`."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=PROJECT,
                            capture_output=True, text=True, check=True).stdout.split("\0")
    root = tmp_path / "folio"
    for name in filter(None, listed):
        if (PROJECT / name).is_file():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(PROJECT / name, root / name)
    (tmp_path / "shared").symlink_to(PROJECT.parent / "shared")
    (root / ".venv").symlink_to(venv or PROJECT / ".venv")
    return root


def user_env():
    """This environment as a user's shell would have it: no PYTHON, and no virtual environment
    activated (this one's bin/ off PATH), so the script finds .venv/bin/python itself."""
    ours = (os.path.realpath(sys.prefix), os.path.realpath(PROJECT / ".venv"))
    path = [p for p in os.environ.get("PATH", "").split(os.pathsep)
            if p and not os.path.realpath(p).startswith(ours)]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHON", "VIRTUAL_ENV")}
    return {**env, "PATH": os.pathsep.join(path)}


def test_the_readme_and_the_benchmark_docs_write_the_command_the_tests_run():
    for doc in ("README.md", "docs/benchmarks.md"):
        assert "benchmarks/gpu_check.sh [--dry-run]" in (PROJECT / doc).read_text(encoding="utf-8"), doc


def test_gpu_check_puts_the_checkouts_own_venv_first_on_path_as_an_absolute_folder(tmp_path):
    """bench_nanogpt.py runs `folio` from temporary workspaces: a relative .venv/bin on PATH finds nothing."""
    stand_in = tmp_path / "venv" / "bin" / "python"  # prints what it was started with
    stand_in.parent.mkdir(parents=True)
    stand_in.write_text('#!/bin/sh\necho "${PATH%%:*}"\necho "$@"\n')
    stand_in.chmod(0o755)
    root = fresh_checkout(tmp_path, venv=stand_in.parent.parent)
    proc = subprocess.run(README_COMMAND, shell=True, cwd=root, env=user_env(), capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    first_on_path, args = proc.stdout.splitlines()
    assert first_on_path == str(root / ".venv" / "bin")
    assert args == "benchmarks/bench_nanogpt.py gpu --dry-run"


def test_gpu_check_says_in_one_line_what_is_wrong_with_the_interpreter(tmp_path):
    bare = tmp_path / "bare-venv"  # a .venv made, but `make setup` never run in it
    subprocess.run(["/usr/bin/env", "python3", "-m", "venv", "--without-pip", str(bare)], check=True, timeout=60)
    root = fresh_checkout(tmp_path, venv=bare)
    proc = subprocess.run(README_COMMAND, shell=True, cwd=root, env=user_env(), capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: ")
    assert f"is not installed for {root / '.venv' / 'bin' / 'python'}" in proc.stderr
    proc = subprocess.run(README_COMMAND, shell=True, cwd=root, env={**user_env(), "PYTHON": "no-such-python"},
                          capture_output=True, text=True, timeout=60)
    assert (proc.returncode, proc.stderr) == (1, "error: no no-such-python on PATH; set PYTHON to the "
                                                 "interpreter that has folio installed\n")


@needs_anchor
def test_gpu_check_dry_run_from_a_fresh_checkout_trains_both_alike_and_scores_both_best_checkpoints(tmp_path):
    root = fresh_checkout(tmp_path)
    proc = subprocess.run(README_COMMAND, shell=True, cwd=root, env=user_env(), capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    assert "| run | tokens/s | MFU (fp32 peak) | wall | whole-val loss (best checkpoint) | bits/byte |" in out
    rows = [line for line in out.splitlines() if line.startswith(("| nanogpt |", "| folio |"))]
    assert len(rows) == 2
    for row in rows:
        tokens_per_sec, mfu, wall, whole, bpb = (c.strip() for c in row.strip("|").split("|")[1:])
        assert float(tokens_per_sec.replace(",", "")) > 0 and mfu.endswith("%") and wall.endswith(" s")
        assert 2.0 < float(whole) < 5.0  # a few steps from 4.17 (ln 65)
        assert float(bpb) == pytest.approx(float(whole) / 0.6931, rel=0.01)  # one byte a character
    # both sides trained as the settings say (each checkpoint's record checked), each ratio beside them
    assert "warning:" not in out
    assert "- dtype float32: the CPU dry run: nanoGPT's train.py autocasts only on CUDA" in out
    compared = [line for line in out.splitlines() if line.startswith("| training tokens/s |")
                or line.startswith(("| wall time, whole process (s) |", "| whole-val loss (nats/char) |"))]
    assert len(compared) == 3
    assert all(" | cpu, float32, eager, deterministic kernels off | " in line for line in compared)
    assert "scored: best vs best" in out and "tokens of folio's val split" in out
    assert "benchmarks/nanogpt.py whole_split_loss" in out
    assert ("goal (whole-val loss <= nanoGPT's in less wall time; best checkpoints, the same val text, "
            "one function): ") in out


# ---- generation: the same windows, warm against warm; int8 quality from the prepared shards -----

@needs_anchor
def test_nanogpt_generate_called_per_window_computes_folio_windows(anchor):
    module = anchor.model_module()
    torch.manual_seed(0)
    nano = module.GPT(module.GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=8, vocab_size=11,
                                       dropout=0.0)).eval()
    ours = bench_generate.GPT(bench_generate.GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2,
                                                       n_embd=16)).eval()
    windows = {"nanogpt": [], "folio": []}
    nano.register_forward_pre_hook(lambda m, args: windows["nanogpt"].append(args[0].shape[1]))
    ours.register_forward_pre_hook(lambda m, args: windows["folio"].append(args[0].shape[1]))
    bench_generate.nanogpt_run(nano, torch.zeros(1, 1, dtype=torch.long), 30)()
    bench_generate.folio_run(ours, [[0]], 30, use_cache=False)()
    assert windows["nanogpt"] == windows["folio"]
    assert windows["folio"][:10] == [1, 2, 3, 4, 5, 6, 7, 8, 4, 5]  # full at 8: restart from the last 4
    means = bench_generate.mean_windows(1, 30, 8)
    assert means["restart"] == pytest.approx(sum(windows["folio"]) / 30)
    assert means["sliding"] == pytest.approx((36 + 22 * 8) / 30)  # 1..8, then 8 every token


def test_every_generation_row_gets_one_warm_up_and_the_same_repeats():
    calls = []
    first, best, median = bench_generate.warm_timed(lambda: calls.append(1), repeats=3)
    assert len(calls) == 4 and first >= 0 and best <= median


@pytest.fixture
def trained_workspace(tmp_path, monkeypatch):
    """A workspace whose corpus went through the real tokenize and prepare stages (sharded
    data/prepared/), with a tiny checkpoint in models/best.pt."""
    from folio.config import GPTConfig, TrainConfig
    from folio.model import create_model
    from folio.train import Trainer
    from pipeline import artifacts
    from pipeline.artifacts import prepared, tokenizer as tokenizer_files
    from pipeline.params import validate
    from pipeline.stages import prepare, tokenize

    text = "".join(f"Line {i}: the quick brown fox jumps over the lazy dog, {i * 7 % 13} times.\n" for i in range(300))
    monkeypatch.chdir(tmp_path)
    artifacts.raw_dir("t").mkdir(parents=True)
    (artifacts.raw_dir("t") / "t.txt").write_text(text, encoding="utf-8")
    params = validate({"data": {"name": "t", "url": "t.txt", "sha256": ""}, "model": {"block_size": 16},
                       "prepare": {"workers": 1, "shard_tokens": 1024}})
    record_gate_passes(params)  # the corpus gate is not what this test is about
    tokenize.main(params)
    prepare.main(params)
    tok = tokenizer_files.load()
    model = create_model(GPTConfig(vocab_size=tok.vocab_size, n_layer=1, n_head=2, n_embd=16, block_size=16), seed=0)
    cfg = TrainConfig(max_iters=2, batch_size=4, eval_interval=2, eval_iters=1, device="cpu", dtype="float32")
    Trainer(model, prepared.load_split("train"), prepared.load_split("val"), cfg, artifacts.MODELS,
            tokenizer_info={"kind": tok.kind, "vocab_size": tok.vocab_size, "digest": tok.digest},
            log=lambda m: None).fit()
    monkeypatch.chdir(PROJECT)
    return tmp_path


def test_bench_generate_scores_the_sharded_prepared_val_split_in_float32_and_int8(trained_workspace):
    from folio.evaluate import bits_per_byte
    from pipeline.artifacts import BEST_CKPT, prepared

    section = bench_generate.quality(trained_workspace, BEST_CKPT, new_tokens=4, repeats=1)
    assert "skipped" not in section
    float32, int8, change = section["rows"]
    with contextlib.chdir(trained_workspace):
        meta, val = prepared.read_meta(), prepared.load_split("val")
    assert len(meta["shards"]["val"]) > 1  # several shards, all of them read
    predicted = sum(n - 1 for n in val.lengths)  # each shard's windows predict all its tokens but the first
    assert float32["tokens"] == int8["tokens"] == predicted
    # a character tokenizer over ASCII text: one byte a predicted token
    assert float32["bytes"] == predicted
    assert float32["bits_per_byte"] == pytest.approx(bits_per_byte(float32["val_loss"], predicted, predicted))
    assert change["val_loss"] == pytest.approx(int8["val_loss"] - float32["val_loss"])
    assert abs(change["val_loss"]) < 0.05
    report = "\n".join(bench_generate.quality_markdown(section))
    assert "| float32 |" in report and "| int8 |" in report and "| change (int8 - float32) |" in report


def test_bench_generate_names_what_is_missing_instead_of_the_quality_lines(tmp_path):
    from pipeline.artifacts import BEST_CKPT

    section = bench_generate.quality(tmp_path, BEST_CKPT, new_tokens=4, repeats=1)
    assert "data/tokenizer/tokenizer.json not found; run `folio tokenize`" in section["skipped"]
    report = "\n".join(bench_generate.quality_markdown(section))
    assert "**int8 on a trained checkpoint: skipped.** data/tokenizer/tokenizer.json not found" in report


# ---- data at scale: MB/s of corpus only where a stage reads it ----------------------------------

def test_bench_data_reports_mb_per_s_only_for_the_stages_that_read_the_corpus(tmp_path):
    readers = bench_data.corpus_stages()
    assert {"download", "validate", "tokenize", "prepare", "validate_tokens"} <= readers
    assert not readers & {"train", "evaluate", "sample", "register"}  # evaluate: only with suites
    with_suites = tmp_path / "dvc.yaml"
    shutil.copyfile(PROJECT / "dvc.yaml", with_suites)
    (tmp_path / "params.yaml").write_text("evaluate:\n  suites:\n  - {name: x, url: data/suites/x.txt}\n")
    assert "evaluate" in bench_data.corpus_stages(with_suites)  # the train split, for contamination
    results = {stage: {"seconds": 2.0, "peak_rss_mb": 100, "last_line": ""} for stage in bench_data.STAGES}
    bench_data.corpus_throughput(results, corpus_bytes=10**9, readers=readers)
    assert results["prepare"]["mb_per_s"] == 500.0
    assert results["train"]["mb_per_s"] is None and results["register"]["mb_per_s"] is None
    assert "MB/s" in bench_data.stage_line("train", results["train"])
    assert "500.0 MB/s" not in bench_data.stage_line("train", results["train"])
