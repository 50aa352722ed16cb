"""The model's and the training's configs: frozen dataclasses whose defaults are folio's defaults
(the pipeline's params schema takes its model.* and train.* defaults from here). Torch-free, so
reading a config costs nothing."""

from __future__ import annotations

from dataclasses import asdict, dataclass

OPTIONS = {
    "kind": ("gpt", "bigram"),
    "pos_emb": ("learned", "rope"),
    "norm": ("layernorm", "rmsnorm"),
    "mlp": ("gelu", "gelu_tanh", "relu2", "swiglu"),
}


@dataclass(frozen=True)
class GPTConfig:
    vocab_size: int
    block_size: int = 128
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 192
    dropout: float = 0.0
    bias: bool = True
    kind: str = "gpt"
    pos_emb: str = "learned"
    norm: str = "layernorm"
    qk_norm: bool = False
    mlp: str = "gelu"
    tie_weights: bool = True
    norm_eps: float = 1e-5

    def __post_init__(self):
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        for name, allowed in OPTIONS.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class TrainConfig:
    max_iters: int = 3500
    max_seconds: float | None = None  # optimisation time budget (evaluation excluded)
    batch_size: int = 16
    grad_accum_steps: int = 1
    learning_rate: float = 2e-3
    min_lr: float = 1e-4
    warmup_iters: int = 50
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.99
    grad_clip: float = 1.0  # 0 disables clipping
    optimizer: str = "adamw"  # adamw | muon
    muon_lr: float = 0.02
    eval_interval: int = 250
    log_interval: int = 10  # steps between reads of the loss from the device (a host sync)
    eval_iters: int = 20
    checkpoint_every: int | None = None  # default: every evaluation
    keep_checkpoints: int = 2
    patience: int | None = None  # evaluations without improvement before stopping
    seed: int = 1337
    device: str = "auto"
    dtype: str = "auto"  # auto | float32 | bfloat16 | float16
    compile: bool | None = None  # None: compile on CUDA only
    grad_checkpointing: bool = False
    deterministic: bool = True  # CUDA's deterministic kernels (CPU kernels are already)
