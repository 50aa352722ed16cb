"""folio models in EleutherAI's lm-evaluation-harness (lm-eval 0.4; the `eval` extra:
`pip install -e '.[eval]'`, which `make setup` installs): the one adapter between the two.

`FolioLM` is lm-eval's model type `folio` (`lm_eval --model folio --model_args
model=models/best.pt,tokenizer=data/tokenizer` works too): a checkpoint with its tokenizer
directory, or a registered `models:/<name>@<alias>` (its own tokenizer), scored in batches with
the model's own tokenizer. It follows lm-eval's Hugging Face backend (`hf`) step for step, so the
two give the same numbers on the same weights (tests/test_harness.py): context and continuation
are encoded together and split (`TemplateLM._encode_pair`), an empty context is the end-of-text
token (char and word models, which have none: the last token of the document separator), inputs
longer than the context keep their last block_size tokens, and log-probabilities are float32.

`evaluate` runs tasks offline: the HF datasets/hub offline switches are on unless set (on import
of this module, before lm-eval imports `datasets`), a task
that lm-eval does not know or whose data is not in the datasets cache is refused in one line
(naming it and what to do: docs/evaluation.md), and tasks found under `include_path` load
without indexing lm-eval's thousands of built-in ones. `log_results` puts the metrics and the
harness's JSON on an MLflow run; each task's digest is lm-eval's own hash of its documents
(`task_hashes`). `folio harness` (pipeline/commands/harness.py) and the evaluate
stage (`evaluate.harness.tasks`) call it.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections import defaultdict
from pathlib import Path

import torch

from folio import checkpoint
from folio.errors import first_line
from folio.generate import GenerationConfig, complete
from folio.tokenizers import META_FILE as TOKENIZER_FILE, document_separator, end_of_text_id, load_tokenizer
from pipeline.errors import StageError

MODEL_TYPE = "folio"
OFFLINE = ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE")
DOCS = "docs/evaluation.md"


class HarnessError(StageError, ValueError):
    """A task, its data or a model the harness cannot use: reported as one line."""


# Offline unless told otherwise: `datasets` and `huggingface_hub` read these when imported, which
# lm-eval does next.
for _switch in OFFLINE:
    os.environ.setdefault(_switch, "1")

try:
    from lm_eval.api.model import TemplateLM
    from lm_eval.api.registry import register_model
except ImportError:
    raise HarnessError("lm-evaluation-harness is not installed; install the eval extra: "
                       "pip install -e '.[eval]' (make setup does)") from None


def load(model: str, tokenizer_dir: Path, device: str):
    """(model in float32 on `device`, tokenizer) of a checkpoint file and its tokenizer directory,
    or of a registered `models:/...` URI (which brings its tokenizer)."""
    from folio.device import pick_device

    if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", device):
        raise HarnessError(f"--device {device!r} is not a device; use auto, cpu, cuda, cuda:N or mps")
    on = pick_device(device).device
    if model.startswith("models:/"):
        from pipeline.tracking.registry import load_generator

        module, tokenizer = load_generator(model, on)
        return module.float().eval(), tokenizer
    if not Path(model).is_file():
        raise HarnessError(f"no checkpoint at {model}; pass --model with a checkpoint file or "
                           "models:/<name>@<alias>")
    if not (Path(tokenizer_dir) / TOKENIZER_FILE).is_file():
        raise HarnessError(f"{tokenizer_dir} holds no tokenizer; pass --tokenizer DIR (the tokenizer "
                           f"{model} was trained with)")
    tokenizer = load_tokenizer(tokenizer_dir)
    _, module = checkpoint.load_model(model, on, tokenizer.digest)
    return module.float().eval(), tokenizer


def _batch_size(value) -> int:
    try:
        size = int(value)
    except (TypeError, ValueError):
        size = 0
    if size < 1:
        raise HarnessError(f"batch size {value!r} is not a whole number >= 1; pass --batch-size N")
    return size


@register_model(MODEL_TYPE)
class FolioLM(TemplateLM):
    """A folio model for lm-eval: `model` is a checkpoint path or models:/ URI (with `tokenizer`
    its tokenizer directory), or a loaded model with its tokenizer object (the evaluate stage)."""

    def __init__(self, model="models/best.pt", tokenizer="data/tokenizer", batch_size=8,
                 device="auto", max_batch_size=None, **unused):
        super().__init__()
        if isinstance(model, str):
            model, tokenizer = load(model, Path(tokenizer), str(device or "auto"))
        self.model, self.folio_tokenizer = model.eval(), tokenizer
        self.batch_size = _batch_size(batch_size if batch_size is not None else 8)
        self.max_length = model.config.block_size
        self._device = next(model.parameters()).device
        eot = end_of_text_id(tokenizer)
        self.end_of_text = tokenizer.decode([eot]) if eot is not None else None
        self._prefix = eot if eot is not None else document_separator(tokenizer)[-1]

    @property
    def eot_token_id(self) -> int:
        return self._prefix

    def tok_encode(self, string: str, add_special_tokens=None, **kwargs) -> list[int]:
        return self.folio_tokenizer.encode(string)

    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, **kwargs) -> list[tuple[float, bool]]:
        """(sum of log p(continuation | context), whether greedy decoding gives the continuation)
        for each (key, context ids, continuation ids), longest first in batches, in request order."""
        results: list = [None] * len(requests)
        order = sorted(range(len(requests)), key=lambda i: -(len(requests[i][1]) + len(requests[i][2])))
        for start in range(0, len(order), self.batch_size):
            rows = order[start : start + self.batch_size]
            inputs = []
            for i in rows:
                _, context, continuation = requests[i]
                if not continuation or len(continuation) > self.max_length:
                    raise HarnessError(f"a continuation of {len(continuation)} tokens does not fit the "
                                       f"model's context of {self.max_length} tokens; score a shorter task")
                inputs.append((context + continuation)[-(self.max_length + 1) :][:-1])
            batch = torch.zeros(len(rows), max(map(len, inputs)), dtype=torch.long)
            for b, ids in enumerate(inputs):
                batch[b, : len(ids)] = torch.tensor(ids)
            with torch.inference_mode():
                logits, _ = self.model(batch.to(self._device))
                logprobs = torch.log_softmax(logits.float(), dim=-1)  # (B, T, V)
            for b, i in enumerate(rows):
                key, _, continuation = requests[i]
                end = len(inputs[b])
                scores = logprobs[b, end - len(continuation) : end]  # (n, V)
                target = torch.tensor(continuation, device=scores.device)
                answer = (float(scores.gather(1, target[:, None]).sum()),
                          bool((scores.argmax(-1) == target).all()))
                results[i] = answer
                if key is not None:
                    self.cache_hook.add_partial("loglikelihood", key, answer)
        return results

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        """The log-likelihood of each whole text, in disjoint windows of the model's context
        (lm-eval's rolling windows, as its Hugging Face backend cuts them)."""
        from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

        windows, owners = [], []
        for n, request in enumerate(requests):
            (text,) = request.args
            for window in get_rolling_token_windows(token_list=self.tok_encode(text), prefix_token=self._prefix,
                                                    max_seq_len=self.max_length, context_len=1):
                windows.append((None, *make_disjoint_window(window)))
                owners.append(n)
        totals = [0.0] * len(requests)
        for owner, (logprob, _) in zip(owners, self._loglikelihood_tokens(windows)):
            totals[owner] += logprob
        for request, total in zip(requests, totals):
            self.cache_hook.add_partial("loglikelihood_rolling", request.args, total)
        return totals

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        """Each continuation up to the first of its `until` strings (and the end-of-text token),
        greedy unless the task asks to sample; requests with the same settings run as one batch."""
        results: list = [None] * len(requests)
        groups = defaultdict(list)
        for i, request in enumerate(requests):
            groups[json.dumps(request.args[1], sort_keys=True, default=str)].append(i)
        for settings, members in groups.items():
            config = self._generation_config(json.loads(settings))
            for start in range(0, len(members), self.batch_size):
                rows = members[start : start + self.batch_size]
                contexts = [requests[i].args[0] for i in rows]
                for i, done in zip(rows, complete(self.model, self.folio_tokenizer, contexts, config)):
                    results[i] = done.text
                    self.cache_hook.add_partial("generate_until", requests[i].args, done.text)
        return results

    def _generation_config(self, settings: dict) -> GenerationConfig:
        until = settings.get("until") or []
        until = [until] if isinstance(until, str) else list(until)
        if self.end_of_text is not None and self.end_of_text not in until:
            until.append(self.end_of_text)
        sample = bool(settings.get("do_sample", False)) and float(settings.get("temperature", 1.0)) > 0
        return GenerationConfig(max_new_tokens=int(settings.get("max_gen_toks", 256)),
                                temperature=float(settings.get("temperature", 1.0)) if sample else 0.0,
                                top_p=settings.get("top_p") if sample else None,
                                top_k=settings.get("top_k") if sample else None, stop=tuple(until), seed=1234)


# ---- tasks and runs ------------------------------------------------------------------------

def task_manager(tasks: list[str], include_path: Path | None):
    """lm-eval's TaskManager: over `include_path` alone when it holds every task named (a
    second or two), else over lm-eval's own tasks too (tens of seconds: thousands of YAMLs)."""
    from lm_eval.tasks import TaskManager

    if include_path is not None:
        if not Path(include_path).is_dir():
            raise HarnessError(f"--include-path {include_path} is not a directory; pass the folder "
                               "that holds your task YAMLs")
        local = TaskManager(include_path=str(include_path), include_defaults=False)
        if set(tasks) <= set(local.all_tasks):
            return local
    return TaskManager(include_path=str(include_path) if include_path else None)


def load_tasks(names: list[str], manager) -> list:
    """Each named task, group or tag built with its data (a group whole, a tag as its tasks), one
    at a time so that a failure names it: unknown to lm-eval, or its data not in the Hugging Face
    datasets cache."""
    built = []
    for name in names:
        try:
            loaded = manager.load([name])
        except KeyError:
            raise HarnessError(f"task {name!r} is not an lm-eval task, group or tag, nor in --include-path; "
                               f"check the name (`lm_eval ls tasks`) or pass --include-path DIR with its "
                               f"YAML ({DOCS})") from None
        except (ConnectionError, OSError) as err:  # datasets' offline misses, a data file not there
            raise HarnessError(f"task {name!r}: its data is not available offline ({first_line(err)}); "
                               f"pre-fetch it into the Hugging Face datasets cache on a machine with "
                               f"internet and copy it here ({DOCS}), or point data_files at a local "
                               "file") from None
        built += [loaded["groups"][name]] if name in loaded["groups"] else list(loaded["tasks"].values())
    return built


def evaluate(lm: FolioLM, tasks: list[str], include_path: Path | None = None, limit: int | None = None,
             num_fewshot: int | None = None) -> dict:
    """lm-eval's results (its `simple_evaluate` dict: results, higher_is_better, configs, n-samples,
    versions) of `lm` on `tasks` (offline unless the HF offline switches say otherwise: see OFFLINE)."""
    from lm_eval import simple_evaluate

    if not tasks:
        raise HarnessError("no task given; pass --tasks NAME[,NAME...] (e.g. hellaswag, or a task of "
                           "your own with --include-path DIR)")
    manager = task_manager(tasks, include_path)
    results = simple_evaluate(model=lm, tasks=load_tasks(tasks, manager), task_manager=manager, limit=limit,
                              num_fewshot=num_fewshot, log_samples=True)  # the samples name the documents
    return {**{key: value for key, value in results.items() if key != "samples"},
            "task_hashes": task_hashes(results)}


def task_hashes(results: dict) -> dict[str, str]:
    """{task: the digest of what it was scored on}: lm-eval's own task hash (what its evaluation
    tracker writes as `task_hashes`: the sha256 of each logged sample's document, prompt and target
    hashes, in order), so it changes with the documents, the prompt format, num_fewshot and limit.
    A group's is the sha256 of its tasks' hashes, in lm-eval's order."""
    from lm_eval.utils import hash_string

    hashes = {task: hash_string("".join(s["doc_hash"] + s["prompt_hash"] + s["target_hash"] for s in samples))
              for task, samples in (results.get("samples") or {}).items()}
    for group, members in (results.get("group_subtasks") or {}).items():
        if members and group not in hashes and all(m in hashes for m in members):
            hashes[group] = hash_string("".join(hashes[m] for m in members))
    return hashes


def scores(results: dict) -> dict[str, dict[str, float]]:
    """{task: {metric: value}} of every number in lm-eval's results: its "acc,none" becomes
    `acc`, "exact_match,strict-match" `exact_match.strict-match` (a filter other than none)."""
    out = {}
    for task, values in results["results"].items():
        out[task] = {}
        for key, value in values.items():
            name, _, kind = key.partition(",")
            if kind and isinstance(value, (int, float)) and not isinstance(value, bool):
                out[task][name if kind == "none" else f"{name}.{kind}"] = float(value)
    return out


def metrics(results: dict) -> dict[str, float]:
    """The MLflow metrics of lm-eval's results: `harness.<task>.<metric>` -> value."""
    return {f"harness.{task}.{name}": value for task, values in scores(results).items()
            for name, value in values.items()}


def table(results: dict) -> str:
    from lm_eval.utils import make_table

    return make_table(results)


def stage_scores(settings, model, tokenizer, run_id: str) -> dict[str, dict]:
    """The evaluate stage's harness scores, {task: {metric: value, ..., "text_digest": its task
    hash}}, of the loaded `model` (`settings`: params' evaluate.harness), logged to the training
    run as `folio harness --log` does."""
    include_path = Path(settings.include_path) if settings.include_path else None
    results = evaluate(FolioLM(model=model, tokenizer=tokenizer), list(settings.tasks), include_path, settings.limit)
    log_results(run_id, results)
    hashes = results["task_hashes"]
    return {task: {**values, **({"text_digest": hashes[task]} if task in hashes else {})}
            for task, values in scores(results).items()}


def log_results(run_id: str, results: dict) -> None:
    """The metrics and the harness's JSON (artifact `harness/results.json`) on MLflow run `run_id`."""
    from lm_eval.utils import handle_non_serializable

    from pipeline.tracking import store

    store.setup()
    store.log_metrics(run_id, metrics(results))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "results.json"
        path.write_text(json.dumps(results, indent=2, default=handle_non_serializable), encoding="utf-8")
        store.log_artifact(run_id, path, "harness")
