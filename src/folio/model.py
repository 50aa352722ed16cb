"""A decoder-only GPT, in the spirit of nanoGPT: one file, torch only.

By default: token + learned position embeddings, pre-LayerNorm blocks with a fused QKV projection
and causal attention through `scaled_dot_product_attention`, a GELU MLP, and a head tied to the
token embedding. Options (GPTConfig): rotary position embeddings, RMSNorm, QK-norm, SwiGLU or
ReLU² or GPT-2's tanh-GELU MLP, no biases, an untied head; and `kind="bigram"`, the baseline.
Shapes: B = batch, T = sequence length, C = n_embd, V = vocab_size, H = n_head,
D = head size (C // H), S = block_size.

For generation, `forward_cached` runs only the new tokens against a `KVCache` holding the keys
and values of the tokens before them; `attention_maps` returns every head's attention weights.
"""

from __future__ import annotations

import math
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from folio.config import GPTConfig

PAD_VOCAB_TO = 64


def pads_vocab(x: torch.Tensor) -> bool:
    """Whether the head's matmul pads the vocabulary: on CUDA (a CPU gains nothing from it)."""
    return x.is_cuda


class KVCache:
    """Keys and values of every layer, preallocated for block_size positions per row: for each
    layer, k[layer] and v[layer] (B, H, S, D). Row b holds its first `lengths[b]` positions; each
    cached forward writes its new tokens in place after them, so decoding allocates no cache memory.

    A forward attends over the slots filled so far; with `static=True` a decoding step (one new
    token per row) attends over all S slots instead, masking those past each row's position, so
    its shapes never change and `torch.compile` compiles it once."""

    def __init__(self, config: GPTConfig, batch_size: int, device=None, dtype=torch.float32,
                 static: bool = False):
        self.static = static
        shape = (batch_size, config.n_head, config.block_size, config.n_embd // config.n_head)
        self.k = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(config.n_layer)]
        self.v = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(config.n_layer)]
        self.lengths = torch.zeros(batch_size, dtype=torch.long, device=device)

    def row(self, b: int) -> KVCache:
        """Row b as a cache of batch size 1 sharing this cache's memory."""
        view = KVCache.__new__(KVCache)
        view.k, view.v = [k[b : b + 1] for k in self.k], [v[b : b + 1] for v in self.v]
        view.lengths, view.static = self.lengths[b : b + 1], self.static
        return view

    def select(self, rows: torch.Tensor) -> None:
        """Keep these rows, in this order (beam search: each surviving beam copies its parent's)."""
        self.k, self.v = [k[rows] for k in self.k], [v[rows] for v in self.v]
        self.lengths = self.lengths[rows]

    def extend(self, other: KVCache) -> None:
        """Append `other`'s rows after these (serving: requests join a running batch)."""
        self.k = [torch.cat([a, b]) for a, b in zip(self.k, other.k)]
        self.v = [torch.cat([a, b]) for a, b in zip(self.v, other.v)]
        self.lengths = torch.cat([self.lengths, other.lengths])

    def advance(self, T: int) -> torch.Tensor:
        """Reserve the next T positions of every row for one forward; returns them (B, T)."""
        block_size = self.k[0].size(2)
        lengths = self.lengths.tolist()
        first, last = min(lengths), max(lengths)
        if last + T > block_size:
            raise ValueError(f"{last} cached + {T} new tokens exceed block_size {block_size}")
        positions = self.lengths[:, None] + torch.arange(T, device=self.lengths.device)  # (B, T)
        # how this forward writes and attends (read by `update` and the attention)
        self.static_step = self.static and T == 1  # one token per row over all S slots
        self.end = block_size if self.static_step else last + T  # it attends to slots 0..end-1
        self.is_causal = T > 1 and first == last == 0  # a prefill from empty: plain causal
        every_slot_visible = T == 1 and first == last and not self.static
        self.mask = None
        if not (self.is_causal or every_slot_visible):  # slot j is visible at position p iff j <= p
            slots = torch.arange(self.end, device=positions.device)
            self.mask = (slots <= positions[..., None]).unsqueeze(1)  # (B, 1, T, end)
        if not self.static_step:
            B, H, _, D = self.k[0].shape
            self.write_index = positions[:, None, :, None].expand(B, H, T, D)
        self.lengths += T
        return positions

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor,
               positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store the new k, v (B, H, T, D) at `positions` (B, T); return the keys and values to
        attend over, (B, H, end, D)."""
        k_all, v_all = self.k[layer], self.v[layer]
        if self.static_step:  # an index_put compiles well, a scatter does not
            rows, slots = torch.arange(k.size(0), device=k.device), positions[:, 0]
            k_all[rows, :, slots] = k[:, :, 0]
            v_all[rows, :, slots] = v[:, :, 0]
        else:
            k_all.scatter_(2, self.write_index, k)
            v_all.scatter_(2, self.write_index, v)
        return k_all[:, :, : self.end], v_all[:, :, : self.end]


def make_norm(config: GPTConfig, dim: int) -> nn.Module:
    if config.norm == "rmsnorm":
        return nn.RMSNorm(dim, eps=config.norm_eps)
    return nn.LayerNorm(dim, eps=config.norm_eps, bias=config.bias)


class Rotary(nn.Module):
    """Rotary position embeddings: rotate pairs of q/k channels by position-dependent angles."""

    def __init__(self, head_dim: int, block_size: int, base: float = 10_000.0):
        super().__init__()
        inv_freq = base ** -(torch.arange(0, head_dim, 2).float() / head_dim)  # (D/2,)
        angles = torch.outer(torch.arange(block_size).float(), inv_freq)  # (S, D/2)
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)

    def forward(self, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """x (B, H, T, D) at positions (T,) or (B, T)."""
        cos, sin = self.cos[positions], self.sin[positions]  # (T, D/2) or (B, T, D/2)
        if positions.dim() == 2:
            cos, sin = cos[:, None], sin[:, None]  # (B, 1, T, D/2)
        x1, x2 = x.float().chunk(2, dim=-1)
        return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).type_as(x)


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, **options) -> torch.Tensor:
    """scaled_dot_product_attention, in float32 on a CPU under bf16/fp16 autocast: PyTorch's CPU
    attention backward is ~10x slower in bf16 than in fp32 (measured: 4.9 ms against 0.5 ms at
    nanoGPT's CPU config), while the matmuls around it gain 3-4x from bf16 (AMX)."""
    if q.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
        with torch.autocast("cpu", enabled=False):
            return F.scaled_dot_product_attention(q.float(), k.float(), v.float(), **options).to(q.dtype)
    return F.scaled_dot_product_attention(q, k, v, **options)


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.n_head = config.n_head
        self.dropout = config.dropout
        self.qk_norm = config.qk_norm
        self.qkv = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)
        head_dim = config.n_embd // config.n_head
        self.rotary = Rotary(head_dim, config.block_size) if config.pos_emb == "rope" else None

    def _heads(self, x: torch.Tensor, positions: torch.Tensor | None = None):
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)
        # (B, T, C) -> (B, H, T, D)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        if self.rotary is not None:
            positions = torch.arange(T, device=x.device) if positions is None else positions
            q, k = self.rotary(q, positions), self.rotary(k, positions)
        if self.qk_norm:  # unit-RMS queries and keys keep attention logits in range
            q, k = F.rms_norm(q, (q.size(-1),)), F.rms_norm(k, (k.size(-1),))
        return q, k, v

    def forward(self, x: torch.Tensor, positions: torch.Tensor | None = None,
                cache: KVCache | None = None, layer: int = 0) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self._heads(x, positions)
        if cache is None:
            y = attend(q, k, v, is_causal=True, dropout_p=self.dropout if self.training else 0.0)
        else:
            k, v = cache.update(layer, k, v, positions)  # the cached tokens and these
            y = attend(q, k, v, attn_mask=cache.mask, is_causal=cache.is_causal)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.proj(y))

    def attention_weights(self, x: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, T, C) -> causal softmax(q kᵀ / √D), (B, H, T, T): what SDPA computes inside."""
        q, k, _ = self._heads(x, positions)
        T = x.size(1)
        scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))  # (B, H, T, T)
        causal = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
        return scores.masked_fill(~causal, float("-inf")).softmax(dim=-1)


class MLP(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.kind = config.mlp
        hidden = 4 * config.n_embd
        if self.kind == "swiglu":  # two input projections: keep the parameter count of 4C
            hidden = 2 * hidden // 3
        n_in = 2 * hidden if self.kind == "swiglu" else hidden
        self.fc = nn.Linear(config.n_embd, n_in, bias=config.bias)
        self.proj = nn.Linear(hidden, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def activation(self, h: torch.Tensor) -> torch.Tensor:
        if self.kind == "swiglu":
            gate, up = h.chunk(2, dim=-1)
            return F.silu(gate) * up
        if self.kind == "relu2":
            return F.relu(h).square()
        return F.gelu(h, approximate="tanh" if self.kind == "gelu_tanh" else "none")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.proj(self.activation(self.fc(x))))


class Block(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.ln_1 = make_norm(config, config.n_embd)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = make_norm(config, config.n_embd)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, positions: torch.Tensor | None = None,
                cache: KVCache | None = None, layer: int = 0) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), positions, cache, layer)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    grad_checkpointing = False  # recompute block activations in backward instead of storing them

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.tok_emb = nn.Embedding(config.vocab_size, config.n_embd)
        self.pos_emb = nn.Embedding(config.block_size, config.n_embd) if config.pos_emb == "learned" else None
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = make_norm(config, config.n_embd)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        if config.tie_weights:
            self.lm_head.weight = self.tok_emb.weight
        self.apply(self._init_weights)
        # GPT-2's scaled init of the projections that write into the residual stream
        for name, p in self.named_parameters():
            if name.endswith("proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def num_params(self) -> int:
        """Parameters counted once (a tied head is the token embedding)."""
        return sum(p.numel() for p in self.parameters())

    def embed(self, idx: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        x = self.tok_emb(idx)  # (B, T, C)
        return x if self.pos_emb is None else x + self.pos_emb(positions)

    def forward(
        self, idx: torch.Tensor, targets: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """idx (B, T) -> logits (B, T, V); mean cross-entropy loss when targets (B, T) are given."""
        B, T = idx.shape
        if T > self.config.block_size:
            raise ValueError(f"sequence length {T} exceeds block_size {self.config.block_size}")
        positions = torch.arange(T, device=idx.device)
        x = self.drop(self.embed(idx, positions))  # (B, T, C)
        for block in self.blocks:
            if self.grad_checkpointing and self.training:
                x = checkpoint(block, x, positions, use_reentrant=False)
            else:
                x = block(x, positions)
        logits = self.logits(self.ln_f(x))  # (B, T, V)
        if targets is None:
            return logits, None
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), targets.view(-1))
        return logits, loss

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, T, C) -> logits (B, T, V). On CUDA the head's matmul runs over the vocabulary
        padded with zero rows to a multiple of PAD_VOCAB_TO (tensor-core tiles: 65 -> 128,
        GPT-2's 50257 -> 50304) and the pad ids' logits are cut off, so no probability can go to
        them and checkpoints keep the true vocabulary. Under torch.compile the padding fuses with
        autocast's cast of the weight, which runs anyway."""
        pad = -self.config.vocab_size % PAD_VOCAB_TO
        if pad and pads_vocab(x):
            weight = F.pad(self.lm_head.weight, (0, 0, 0, pad))  # (V + pad, C)
            return F.linear(x, weight)[..., : self.config.vocab_size]
        return self.lm_head(x)

    def forward_cached(self, idx: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """Inference on new tokens only: idx (B, T) continues each row after its `cache.lengths`
        cached tokens -> logits (B, T, V); their keys and values are added to the cache."""
        return self.forward_at(idx, cache.advance(idx.size(1)), cache)

    def forward_at(self, idx: torch.Tensor, positions: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """The body of `forward_cached`, once the cache has reserved `positions` (B, T): no
        Python-side decisions, so a decoding step can be compiled."""
        x = self.embed(idx, positions)  # (B, T, C)
        for layer, block in enumerate(self.blocks):
            x = block(x, positions, cache, layer)
        return self.logits(self.ln_f(x))

    @torch.no_grad()
    def attention_maps(self, idx: torch.Tensor) -> torch.Tensor:
        """idx (B, T) -> attention weights (n_layer, B, H, T, T); row t is what token t attends to."""
        positions = torch.arange(idx.size(1), device=idx.device)
        x = self.embed(idx, positions)
        maps = []
        for block in self.blocks:
            maps.append(block.attn.attention_weights(block.ln_1(x), positions))
            x = block(x, positions)
        return torch.stack(maps)


class Bigram(nn.Module):
    """The bigram baseline: the next token's logits are looked up from the current token alone."""

    grad_checkpointing = False

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.table = nn.Embedding(config.vocab_size, config.vocab_size)  # (V, V)
        nn.init.normal_(self.table.weight, std=0.02)

    def num_params(self) -> int:
        return self.table.weight.numel()

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        logits = self.table(idx)  # (B, T, V)
        if targets is None:
            return logits, None
        return logits, F.cross_entropy(logits.view(-1, logits.size(-1)).float(), targets.view(-1))

    def forward_cached(self, idx: torch.Tensor, cache: KVCache) -> torch.Tensor:
        return self.forward_at(idx, cache.advance(idx.size(1)), cache)  # keep the positions in step

    def forward_at(self, idx: torch.Tensor, positions: torch.Tensor, cache: KVCache) -> torch.Tensor:
        return self.table(idx)

    def attention_maps(self, idx: torch.Tensor) -> torch.Tensor:
        raise ValueError("the bigram model has no attention to show")


def create_model(config: GPTConfig, seed: int | None = None) -> nn.Module:
    """The model a config describes: a GPT, or the bigram baseline. With `seed`, its initial
    weights are a function of (config, seed) alone: drawn from a generator seeded for it, whatever
    the global RNG holds (which is left as it was)."""
    if seed is None:
        return Bigram(config) if config.kind == "bigram" else GPT(config)
    with torch.random.fork_rng(devices=[]):  # weights are initialised on the CPU
        torch.manual_seed(seed)
        return create_model(config)
