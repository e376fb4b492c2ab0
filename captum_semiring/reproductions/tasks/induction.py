"""Induction heads: a validation task with a known circuit.

A small attention-only transformer (no MLPs, no layer norm inside the blocks) is
trained on sequences whose second half repeats the first. It learns the two-head
induction circuit of Olsson et al. (2022): a *previous-token head* in layer 0 writes
each position's previous token into the residual stream, and an *induction head* in
layer 1 matches the current token against that (K-composition), attends to the
position right after the token's previous occurrence and copies the token found there
into the logits. :func:`known_circuit` names this circuit's edges in the component
graph that :mod:`captum_semiring.analysis.circuits` scores, so that edge attributions
(EAP, EAP-IG, semiring edge scores) can be checked against a ground truth.

**Data.** :func:`repeated_sequences` gives ``[BOS, r_1..r_L, r_1..r_L]`` (``BOS = 0``,
``r_j`` distinct tokens from ``1..vocab_size-1``, so every token's previous occurrence
is unique), ``T = 2L + 1`` positions. Position ``t`` of the second half
(``L+1 <= t <= 2L``) holds ``r_{t-L}``; its next token, ``r_{t-L+1}``, sits right
after the previous occurrence, at ``t-L+1``.

**Training** (:func:`train_induction_model`) differs from the analysis data in one
way, on purpose. With a fixed ``L`` the answer always sits at the fixed offset
``t-L+1``, and a single layer-0 head attending by position alone solves the task: we
saw layer-0 heads with induction scores of 0.7-0.8 and no previous-token head. So
training sequences (:func:`training_batch`) repeat a segment of random length
``m in [min_repeat, L]`` after ``2(L-m)`` distinct filler tokens, which keeps ``T``
fixed and makes content matching (the induction circuit) the only solution. The loss
is the next-token cross-entropy on the repeat's predictable positions only (the
random tokens cannot be predicted; with the loss on every position the model stayed
on the plateau of "not a token seen before" for 800 steps). A group lasso on each
head's weights (its rows of ``q``, ``k``, ``v`` and columns of ``o``), switched on after
a warm-up, prunes the heads the task does not need: without it both layer-1 heads
became partial induction heads, and ablating either alone left 87-99% accuracy, so no
single head was *the* induction head. With it each layer ends with one live head and
the others near zero.

**Components and edges** (the names :mod:`~captum_semiring.analysis.circuits` uses):
``"embed"`` (token + position embedding, the residual stream before block 0),
``"blocks.{i}.attn.head{h}"`` (one attention head; ``o`` has no bias, so the residual
stream is exactly ``embed`` plus the heads' outputs), ``"logits"``. An edge
``(upstream, downstream, slot)`` feeds an upstream output into a head's ``"q"``, ``"k"``
or ``"v"`` input, or into the logits' ``"in"``. See :func:`circuit_edges` for the
known edges and which are essential.

Examples::

    >>> from captum_semiring.reproductions.tasks.induction import repeated_sequences
    >>> ids = repeated_sequences(2, half_length=4, vocab_size=10, seed=0)
    >>> ids.shape
    torch.Size([2, 9])
    >>> bool((ids[:, 1:5] == ids[:, 5:]).all()), ids[:, 0].tolist()
    (True, [0, 0])
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .determinism import deterministic

__all__ = [
    "BOS",
    "EMBED",
    "LOGITS",
    "Edge",
    "InductionConfig",
    "SMALL_CONFIG",
    "FULL_CONFIG",
    "CausalSelfAttention",
    "AttentionBlock",
    "AttentionOnlyTransformer",
    "repeated_sequences",
    "training_batch",
    "corrupt",
    "target_logit",
    "second_half_accuracy",
    "evaluate",
    "TrainedInductionModel",
    "train_induction_model",
    "induction_model",
    "HeadScores",
    "head_scores",
    "InductionHeads",
    "identify_heads",
    "head_name",
    "all_edges",
    "circuit_edges",
    "known_circuit",
    "run_with_edges",
    "ablate_heads",
]

#: The beginning-of-sequence token, at position 0 of every sequence.
BOS = 0
#: The component name of the embeddings (the residual stream before block 0).
EMBED = "embed"
#: The component name of the logits.
LOGITS = "logits"
#: ``(upstream, downstream, slot)``, e.g. ``("embed", "blocks.1.attn.head0", "v")``.
Edge = tuple[str, str, str]

# Bump when the recipe (data, model, training) changes: it names the cache entry.
INDUCTION_MODEL_VERSION = 1


# --------------------------------------------------------------------------- config


@dataclass(frozen=True)
class InductionConfig:
    """The model and training recipe.

    Attributes:
        vocab_size: tokens ``0..vocab_size-1``; 0 is :data:`BOS`.
        half_length: ``L``, the length of each half; sequences have ``2L + 1`` tokens.
        d_model: the residual stream's width.
        n_heads: heads per layer.
        d_head: each head's width.
        n_layers: attention blocks.
        ln_final: a ``LayerNorm`` before ``unembed`` (off: trains reliably without).
        steps: optimizer steps.
        batch_size: sequences per step (fresh ones every step).
        lr: Adam's learning rate.
        min_repeat: training repeats have a length drawn from
            ``min_repeat..half_length`` (see the module docstring).
        head_lasso: the weight of the group-lasso penalty on each head's weights.
        lasso_warmup: steps before the penalty is switched on.
    """

    vocab_size: int = 24
    half_length: int = 10
    d_model: int = 64
    n_heads: int = 2
    d_head: int = 16
    n_layers: int = 2
    ln_final: bool = False
    steps: int = 1000
    batch_size: int = 64
    lr: float = 3e-3
    min_repeat: int = 5
    head_lasso: float = 2e-2
    lasso_warmup: int = 300

    @property
    def seq_len(self) -> int:
        """``2 * half_length + 1``: BOS and the two halves."""
        return 2 * self.half_length + 1

    def to_dict(self) -> dict[str, Any]:
        """The fields, JSON-ready."""
        return asdict(self)


#: The test configuration: 2 layers of 2 heads, d_model 64; about 5-10 s on one core.
SMALL_CONFIG = InductionConfig()
#: The reproduction's configuration: 2 layers of 4 heads, d_model 128, vocabulary 32,
#: half length 16; about 1-1.5 min on one core.
FULL_CONFIG = InductionConfig(
    vocab_size=32,
    half_length=16,
    d_model=128,
    n_heads=4,
    d_head=32,
    steps=2000,
    min_repeat=8,
    lasso_warmup=500,
)


# --------------------------------------------------------------------------- model


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention with separate ``q``, ``k``, ``v`` projections
    and a bias-free output projection ``o`` (so a head's contribution to the
    residual stream is exactly its slice of ``o``).

    Args:
        d_model: input and output width.
        n_heads: heads.
        d_head: each head's width.
        max_len: the longest sequence (the size of the causal mask).
    """

    def __init__(self, d_model: int, n_heads: int, d_head: int, max_len: int) -> None:
        super().__init__()
        self.n_heads, self.d_head = n_heads, d_head
        self.q = nn.Linear(d_model, n_heads * d_head)
        self.k = nn.Linear(d_model, n_heads * d_head)
        self.v = nn.Linear(d_model, n_heads * d_head)
        self.o = nn.Linear(n_heads * d_head, d_model, bias=False)
        causal = torch.tril(torch.ones(max_len, max_len, dtype=torch.bool))
        self.register_buffer("causal", causal, persistent=False)

    def _heads(self, y: Tensor) -> Tensor:
        B, T, _ = y.shape
        return y.view(B, T, self.n_heads, self.d_head).transpose(1, 2)

    def attend(self, q: Tensor, k: Tensor) -> Tensor:
        """Attention weights ``(B, H, T, T)`` from queries and keys laid out as
        ``(B, H, T, d_head)``."""
        T = q.shape[-2]
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.d_head)
        causal: Tensor = self.causal  # type: ignore[assignment]
        scores = scores.masked_fill(~causal[:T, :T], float("-inf"))
        return torch.softmax(scores, dim=-1)

    def pattern(self, x: Tensor) -> Tensor:
        """The attention weights ``(B, H, T, T)`` for the input ``x``."""
        return self.attend(self._heads(self.q(x)), self._heads(self.k(x)))

    def forward(self, x: Tensor) -> Tensor:
        B, T, _ = x.shape
        weights = self.pattern(x)
        z = weights @ self._heads(self.v(x))
        return self.o(z.transpose(1, 2).reshape(B, T, self.n_heads * self.d_head))


class AttentionBlock(nn.Module):
    """``x + attn(x)``: attention only, no MLP, no layer norm."""

    def __init__(self, d_model: int, n_heads: int, d_head: int, max_len: int) -> None:
        super().__init__()
        self.attn = CausalSelfAttention(d_model, n_heads, d_head, max_len)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.attn(x)


class AttentionOnlyTransformer(nn.Module):
    """A decoder-only transformer of attention blocks: ``embed`` + ``pos_embed``,
    ``blocks.{i}`` (each ``x + attn(x)``), optionally ``ln_final``, ``unembed``.

    Args:
        config: the sizes (:class:`InductionConfig`); kept as ``self.config``.

    Examples::

        >>> import torch
        >>> from captum_semiring.reproductions.tasks.induction import *
        >>> torch.manual_seed(0) and None
        >>> model = AttentionOnlyTransformer(SMALL_CONFIG)
        >>> ids = repeated_sequences(3, 10, 24, seed=0)
        >>> model(ids).shape
        torch.Size([3, 21, 24])
        >>> emb = model.embed(ids)          # run from the token embeddings instead
        >>> torch.equal(model(inputs_embeds=emb), model(ids))
        True
        >>> model.attention_patterns(ids).shape
        torch.Size([2, 3, 2, 21, 21])
    """

    def __init__(self, config: InductionConfig = SMALL_CONFIG) -> None:
        super().__init__()
        self.config = config
        c = config
        self.embed = nn.Embedding(c.vocab_size, c.d_model)
        self.pos_embed = nn.Embedding(c.seq_len, c.d_model)
        self.blocks = nn.ModuleList(
            AttentionBlock(c.d_model, c.n_heads, c.d_head, c.seq_len)
            for _ in range(c.n_layers)
        )
        self.ln_final = nn.LayerNorm(c.d_model) if c.ln_final else None
        self.unembed = nn.Linear(c.d_model, c.vocab_size)

    def residual_input(
        self, input_ids: Tensor | None = None, inputs_embeds: Tensor | None = None
    ) -> Tensor:
        """The residual stream before block 0 (the ``"embed"`` component): token
        embeddings (or ``inputs_embeds``, ``(B, T, d_model)``, in their place) plus
        the positional embeddings."""
        if inputs_embeds is None:
            if input_ids is None:
                raise ValueError("pass input_ids or inputs_embeds")
            inputs_embeds = self.embed(input_ids)
        positions = torch.arange(inputs_embeds.shape[1], device=inputs_embeds.device)
        return inputs_embeds + self.pos_embed(positions)

    def attention(self, layer: int) -> CausalSelfAttention:
        """The attention module of block ``layer`` (``blocks.{layer}.attn``)."""
        attn = self.blocks[layer].attn
        assert isinstance(attn, CausalSelfAttention)
        return attn

    def unembed_residual(self, x: Tensor) -> Tensor:
        """Logits from the final residual stream (``ln_final`` if any, ``unembed``)."""
        if self.ln_final is not None:
            x = self.ln_final(x)
        return self.unembed(x)

    def forward(
        self, input_ids: Tensor | None = None, inputs_embeds: Tensor | None = None
    ) -> Tensor:
        """Logits ``(B, T, vocab_size)``.

        Args:
            input_ids: ``(B, T)`` token ids.
            inputs_embeds: ``(B, T, d_model)`` in place of the token embedding lookup
                (the positional embeddings are still added): the attribution source.
        """
        x = self.residual_input(input_ids, inputs_embeds)
        for block in self.blocks:
            x = block(x)
        return self.unembed_residual(x)

    @torch.no_grad()
    def attention_patterns(self, input_ids: Tensor) -> Tensor:
        """Every head's attention weights, ``(n_layers, B, n_heads, T, T)``; row ``t``
        of a pattern is position ``t``'s distribution over the keys ``0..t``."""
        x = self.residual_input(input_ids)
        patterns = []
        for layer, block in enumerate(self.blocks):
            patterns.append(self.attention(layer).pattern(x))
            x = block(x)
        return torch.stack(patterns)


# --------------------------------------------------------------------------- data


def _permutations(n: int, vocab_size: int, gen: torch.Generator) -> Tensor:
    """``(n, vocab_size - 1)``: a random order of the tokens ``1..vocab_size-1`` per
    row, so any prefix of a row has distinct tokens."""
    return torch.rand(n, vocab_size - 1, generator=gen).argsort(dim=-1) + 1


def repeated_sequences(
    n: int, half_length: int, vocab_size: int, seed: int = 0
) -> Tensor:
    """``n`` sequences ``[BOS, r_1..r_L, r_1..r_L]``, the ``r_j`` of a row distinct
    tokens drawn uniformly from ``1..vocab_size-1``.

    Args:
        n: sequences.
        half_length: ``L``; needs ``L <= vocab_size - 1``.
        vocab_size: the vocabulary, :data:`BOS` included.
        seed: equal seeds give equal sequences.

    Returns:
        ``(n, 2L + 1)`` long tensor.

    Examples::

        >>> from captum_semiring.reproductions.tasks.induction import repeated_sequences
        >>> repeated_sequences(1, 3, 8, seed=1).tolist()
        [[0, 5, 2, 7, 5, 2, 7]]
        >>> bool((repeated_sequences(4, 3, 8, 1) == repeated_sequences(4, 3, 8, 1)).all())
        True
    """
    if not 1 <= half_length <= vocab_size - 1:
        raise ValueError(
            f"need 1 <= half_length <= vocab_size - 1, got {half_length}, {vocab_size}"
        )
    gen = torch.Generator().manual_seed(seed)
    r = _permutations(n, vocab_size, gen)[:, :half_length]
    return torch.cat([torch.full((n, 1), BOS, dtype=torch.long), r, r], dim=1)


def training_batch(
    n: int, half_length: int, vocab_size: int, min_repeat: int, gen: torch.Generator
) -> tuple[Tensor, Tensor]:
    """Training sequences of :func:`train_induction_model`: ``[BOS, f_1..f_k,
    r_1..r_m, r_1..r_m]`` with ``m`` uniform in ``min_repeat..half_length`` and
    ``k = 2(L - m)`` filler tokens, all of ``f`` and ``r`` distinct, so every row has
    ``2L + 1`` tokens but the repeat's offset varies.

    Args:
        n: sequences.
        half_length: ``L``.
        vocab_size: the vocabulary; needs ``2L - min_repeat <= vocab_size - 1``.
        min_repeat: the shortest repeat.
        gen: the random generator.

    Returns:
        ``(ids, mask)``, both ``(n, 2L + 1)``: ``mask[b, t]`` is True where the next
        token ``ids[b, t + 1]`` is predictable, from the repeat's first token to the
        second-to-last position.

    Examples::

        >>> import torch
        >>> from captum_semiring.reproductions.tasks.induction import training_batch
        >>> ids, mask = training_batch(2, 4, 12, 2, torch.Generator().manual_seed(0))
        >>> ids.shape, mask.shape
        (torch.Size([2, 9]), torch.Size([2, 9]))
        >>> int(mask[:, -1].sum())
        0
    """
    if not 1 <= min_repeat <= half_length or 2 * half_length - min_repeat >= (
        vocab_size
    ):
        raise ValueError(
            f"need 1 <= min_repeat <= half_length and 2 * half_length - min_repeat "
            f"<= vocab_size - 1, got {min_repeat}, {half_length}, {vocab_size}"
        )
    L, T = half_length, 2 * half_length + 1
    m = torch.randint(min_repeat, L + 1, (n, 1), generator=gen)
    first = 2 * (L - m) + m  # the second occurrence's first index among ids[:, 1:]
    tokens = _permutations(n, vocab_size, gen)
    p = torch.arange(2 * L)[None]
    # the second occurrence copies the m tokens before it
    ids = tokens.gather(1, torch.where(p < first, p, p - m))
    ids = torch.cat([torch.full((n, 1), BOS, dtype=torch.long), ids], dim=1)
    t = torch.arange(T)[None]
    return ids, (t >= 1 + first) & (t <= T - 2)


def _half_length(ids: Tensor) -> int:
    T = ids.shape[-1]
    if T < 3 or T % 2 == 0:
        raise ValueError(f"expected [BOS, half, half] with an odd length, got {T}")
    return (T - 1) // 2


def corrupt(
    ids: Tensor,
    seed: int = 0,
    vocab_size: int | None = None,
    keep_second_half: bool = True,
) -> Tensor:
    """The corrupted input for patching and EAP-IG: ``ids`` with the first half
    resampled (fresh distinct tokens), so the repeated half no longer repeats anything
    and induction cannot find the answer.

    With ``keep_second_half`` (the default) the second half, and so every query
    position of the target, is the clean one: the clean and corrupted runs then agree
    at the target position, and a patching score of any edge into a head's ``"q"``
    there is exactly 0 (the ``embed -> induction q`` edge is invisible to EAP with
    this corruption, though essential). Pass False for a whole fresh repeated
    sequence, in which every edge can show.

    Args:
        ids: ``(B, 2L + 1)`` sequences of :func:`repeated_sequences`.
        seed: the seed of the new tokens.
        vocab_size: the vocabulary; default ``ids.max() + 1``.
        keep_second_half: resample only the first half.

    Returns:
        A new ``(B, 2L + 1)`` tensor.

    Examples::

        >>> from captum_semiring.reproductions.tasks.induction import *
        >>> ids = repeated_sequences(5, 6, 16, seed=0)
        >>> bad = corrupt(ids, seed=1, vocab_size=16)
        >>> bool((bad[:, 7:] == ids[:, 7:]).all()), bool((bad[:, 1:7] != ids[:, 1:7]).any())
        (True, True)
    """
    L = _half_length(ids)
    V = int(ids.max()) + 1 if vocab_size is None else vocab_size
    fresh = repeated_sequences(ids.shape[0], L, V, seed=seed)
    if not keep_second_half:
        return fresh
    out = ids.clone()
    out[:, 1 : L + 1] = fresh[:, 1 : L + 1]
    return out


def _position(ids: Tensor, position: int | None) -> int:
    T = ids.shape[-1]
    p = T - 2 if position is None else position % T
    if not _half_length(ids) + 1 <= p <= T - 2:
        raise ValueError(f"position {position} is not a predictable second-half one")
    return p


def target_logit(
    model: AttentionOnlyTransformer,
    ids: Tensor,
    position: int | None = None,
    inputs_embeds: Tensor | None = None,
) -> Tensor:
    """The attribution target: per example, the logit of the correct next token
    ``ids[:, position + 1]`` at ``position`` of the second half.

    Args:
        model: the model.
        ids: ``(B, 2L + 1)`` clean sequences (they give the answers).
        position: in ``L+1 .. 2L-1`` (negative counts from the end); default
            ``2L - 1``, the last position with a next token.
        inputs_embeds: run the model from these token embeddings (the recording's
            source) instead of ``model.embed(ids)``.

    Returns:
        ``(B,)``.

    Examples::

        >>> import torch
        >>> from captum_semiring.reproductions.tasks.induction import *
        >>> model = AttentionOnlyTransformer(SMALL_CONFIG)
        >>> ids = repeated_sequences(2, 10, 24, seed=0)
        >>> out = target_logit(model, ids)
        >>> torch.equal(out, model(ids)[torch.arange(2), 19, ids[:, 20]])
        True
    """
    p = _position(ids, position)
    if inputs_embeds is None:
        logits = model(input_ids=ids)
    else:
        logits = model(inputs_embeds=inputs_embeds)
    return logits[:, p].gather(1, ids[:, p + 1, None])[:, 0]


def second_half_accuracy(logits: Tensor, ids: Tensor) -> float:
    """The share of correct argmax predictions at the second half's predictable
    positions ``L+1 .. 2L-1`` (each predicting ``ids[:, t + 1]``); chance is about
    ``1 / (vocab_size - 1)``."""
    L = _half_length(ids)
    pred = logits[:, L + 1 : 2 * L].argmax(dim=-1)
    return float((pred == ids[:, L + 2 :]).float().mean())


@torch.no_grad()
def evaluate(model: AttentionOnlyTransformer, ids: Tensor) -> float:
    """:func:`second_half_accuracy` of ``model`` on ``ids``."""
    return second_half_accuracy(model(ids), ids)


# --------------------------------------------------------------------------- training


def _head_norms(attn: CausalSelfAttention) -> Tensor:
    """Per head, the norm of all its weights: its rows of ``q``, ``k``, ``v`` (biases
    included) and its columns of ``o``."""
    H, dh = attn.n_heads, attn.d_head
    sq = attn.o.weight.view(-1, H, dh).pow(2).sum(dim=(0, 2))
    for lin in (attn.q, attn.k, attn.v):
        sq = sq + lin.weight.view(H, dh, -1).pow(2).sum(dim=(1, 2))
        sq = sq + lin.bias.view(H, dh).pow(2).sum(dim=1)
    return sq.sqrt()


@dataclass
class TrainedInductionModel:
    """A trained :class:`AttentionOnlyTransformer` and its evaluation.

    Attributes:
        model: the model, in eval mode.
        config: its recipe.
        seed: the seed of initialization and data.
        accuracy: :func:`second_half_accuracy` on :attr:`eval_ids`.
        seconds: training wall time (0 when loaded from the cache).
        train_loss: the final cross-entropy (lasso penalty not included).
        eval_ids: held-out :func:`repeated_sequences` (another seed stream).
    """

    model: AttentionOnlyTransformer
    config: InductionConfig
    seed: int
    accuracy: float
    seconds: float
    train_loss: float
    eval_ids: Tensor = field(repr=False)

    def metadata(self) -> dict[str, Any]:
        return {
            "config": self.config.to_dict(),
            "seed": self.seed,
            "accuracy": self.accuracy,
            "train_seconds": self.seconds,
            "train_loss": self.train_loss,
        }


def _eval_ids(config: InductionConfig, seed: int, n: int = 512) -> Tensor:
    # a seed stream disjoint from training's generator
    return repeated_sequences(n, config.half_length, config.vocab_size, 10_000 + seed)


def train_induction_model(
    config: InductionConfig = SMALL_CONFIG, seed: int = 0, threads: int | None = 1
) -> TrainedInductionModel:
    """Train an :class:`AttentionOnlyTransformer` on repeated sequences.

    Adam at ``config.lr``, ``config.steps`` batches of fresh :func:`training_batch`
    sequences, cross-entropy at the repeat's predictable positions, plus
    ``config.head_lasso`` times the sum of the heads' weight norms after
    ``config.lasso_warmup`` steps (see the module docstring). Initialization and
    data are seeded by ``seed``; one thread and deterministic kernels during training
    make equal seeds give equal weights.

    Args:
        config: the recipe; :data:`SMALL_CONFIG` (seconds) or :data:`FULL_CONFIG`.
        seed: the seed of everything.
        threads: torch threads during training (restored afterwards).

    Returns:
        A :class:`TrainedInductionModel`.

    Examples::

        >>> from captum_semiring.reproductions.tasks.induction import *
        >>> from dataclasses import replace
        >>> quick = train_induction_model(replace(SMALL_CONFIG, steps=5), seed=0)
        >>> quick.model.training, 0.0 <= quick.accuracy <= 1.0
        (False, True)
    """
    c = config
    start = time.perf_counter()
    with deterministic(threads):
        torch.manual_seed(seed)
        model = AttentionOnlyTransformer(c)
        opt = torch.optim.Adam(model.parameters(), lr=c.lr)
        gen = torch.Generator().manual_seed(seed + 1)
        model.train()
        loss_value = float("nan")
        for step in range(c.steps):
            ids, mask = training_batch(
                c.batch_size, c.half_length, c.vocab_size, c.min_repeat, gen
            )
            logits = model(ids)
            loss = F.cross_entropy(logits[mask], ids[:, 1:][mask[:, :-1]])
            loss_value = float(loss.detach())
            if c.head_lasso and step >= c.lasso_warmup:
                penalty = sum(
                    _head_norms(model.attention(i)).sum() for i in range(c.n_layers)
                )
                loss = loss + c.head_lasso * penalty
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        model.eval()
        eval_ids = _eval_ids(c, seed)
        accuracy = evaluate(model, eval_ids)
    return TrainedInductionModel(
        model=model,
        config=c,
        seed=seed,
        accuracy=accuracy,
        seconds=time.perf_counter() - start,
        train_loss=loss_value,
        eval_ids=eval_ids,
    )


def _entry(config: InductionConfig, seed: int) -> Path:
    import hashlib

    from .models import cache_dir

    digest = hashlib.sha1(json.dumps(config.to_dict(), sort_keys=True).encode())
    return cache_dir() / (
        f"induction-v{INDUCTION_MODEL_VERSION}-{digest.hexdigest()[:10]}-seed{seed}"
    )


def induction_model(
    config: InductionConfig = FULL_CONFIG, seed: int = 0, retrain: bool = False
) -> TrainedInductionModel:
    """The trained model for ``config``, cached: the first call trains it
    (:func:`train_induction_model`) and stores the weights and scores in
    :func:`~captum_semiring.reproductions.tasks.models.cache_dir`; later calls load
    them.

    Args:
        config: the recipe (default :data:`FULL_CONFIG`, about a minute to train).
        seed: the seed.
        retrain: train again even if a cache entry exists.

    Returns:
        A :class:`TrainedInductionModel` (``seconds`` is 0 when loaded).
    """
    from .models import write_cache_entry

    entry = _entry(config, seed)
    if not retrain and (entry / "meta.json").exists():
        try:
            meta = json.loads((entry / "meta.json").read_text())
            model = AttentionOnlyTransformer(config)
            state = torch.load(entry / "state_dict.pt", weights_only=True)
            model.load_state_dict(state)
            model.eval()
            return TrainedInductionModel(
                model=model,
                config=config,
                seed=seed,
                accuracy=meta["accuracy"],
                seconds=0.0,
                train_loss=meta["train_loss"],
                eval_ids=_eval_ids(config, seed),
            )
        except Exception:  # a corrupt or stale cache entry: train again
            pass
    trained = train_induction_model(config, seed)
    write_cache_entry(entry, trained.model, trained.metadata())
    return trained


# --------------------------------------------------------------------------- ground truth


@dataclass(frozen=True)
class HeadScores:
    """Per-head attention scores, each ``(n_layers, n_heads)``.

    Attributes:
        previous_token: mean attention from position ``t`` to ``t - 1`` over
            ``t = 1..T-1``. A uniform causal head scores about ``H_T / T`` (0.17 at
            ``T = 21``); a previous-token head close to 1.
        induction: mean attention from a second-half position ``t`` (``L+1..2L``) to
            ``t - L + 1``, right after the previous occurrence of its token. A uniform
            head scores about 0.06 at ``T = 21``.
    """

    previous_token: Tensor
    induction: Tensor


def head_scores(model: AttentionOnlyTransformer, data: Tensor) -> HeadScores:
    """The previous-token and induction scores of every head on ``data``.

    Args:
        model: the model.
        data: ``(B, 2L + 1)`` sequences of :func:`repeated_sequences`.

    Returns:
        :class:`HeadScores`.

    Examples::

        >>> import torch
        >>> from captum_semiring.reproductions.tasks.induction import *
        >>> model = AttentionOnlyTransformer(SMALL_CONFIG)
        >>> s = head_scores(model, repeated_sequences(8, 10, 24, seed=0))
        >>> s.previous_token.shape, s.induction.shape
        (torch.Size([2, 2]), torch.Size([2, 2]))
    """
    L = _half_length(data)
    pats = model.attention_patterns(data)  # (layers, B, H, T, T)
    prev = pats.diagonal(offset=-1, dim1=-2, dim2=-1)  # entries [t, t-1], t = 1..T-1
    # entries [t, t-L+1] for t = L-1..T-1; keep the second half t = L+1..2L
    ind = pats.diagonal(offset=-(L - 1), dim1=-2, dim2=-1)[..., 2:]
    return HeadScores(
        previous_token=prev.mean(dim=(1, 3)), induction=ind.mean(dim=(1, 3))
    )


@dataclass(frozen=True)
class InductionHeads:
    """The heads :func:`identify_heads` found, as ``(layer, head)`` pairs.

    Attributes:
        previous_token: layer-0 heads whose previous-token score is at least the
            threshold.
        induction: layer-1 heads whose induction score is at least the threshold.
        scores: the :class:`HeadScores` they were read from.
    """

    previous_token: tuple[tuple[int, int], ...]
    induction: tuple[tuple[int, int], ...]
    scores: HeadScores


#: Default thresholds of :func:`identify_heads`: well above a uniform head's score
#: (0.17 and 0.06 at ``T = 21``) and below the trained heads' (0.6-0.75 and 0.85-1).
PREVIOUS_TOKEN_THRESHOLD = 0.4
INDUCTION_THRESHOLD = 0.4


def identify_heads(
    model: AttentionOnlyTransformer,
    data: Tensor,
    previous_token_threshold: float = PREVIOUS_TOKEN_THRESHOLD,
    induction_threshold: float = INDUCTION_THRESHOLD,
) -> InductionHeads:
    """The previous-token heads of layer 0 and the induction heads of layer 1, by
    :func:`head_scores` at or above the thresholds.

    Args:
        model: the model.
        data: ``(B, 2L + 1)`` sequences of :func:`repeated_sequences`.
        previous_token_threshold: the least previous-token score.
        induction_threshold: the least induction score.

    Returns:
        :class:`InductionHeads`.

    Raises:
        ValueError: if either role has no head (the model has not learned the
            circuit), or the model has fewer than two layers.
    """
    if len(model.blocks) < 2:
        raise ValueError("the induction circuit needs two layers")
    scores = head_scores(model, data)
    prev = tuple(
        (0, h)
        for h in range(scores.previous_token.shape[1])
        if float(scores.previous_token[0, h]) >= previous_token_threshold
    )
    ind = tuple(
        (1, h)
        for h in range(scores.induction.shape[1])
        if float(scores.induction[1, h]) >= induction_threshold
    )
    if not prev or not ind:
        raise ValueError(
            f"no {'previous-token' if not prev else 'induction'} head: previous-token "
            f"scores {scores.previous_token.tolist()}, induction scores "
            f"{scores.induction.tolist()}"
        )
    return InductionHeads(prev, ind, scores)


def head_name(layer: int, head: int) -> str:
    """The component name of a head: ``"blocks.{layer}.attn.head{head}"``."""
    return f"blocks.{layer}.attn.head{head}"


def all_edges(model: AttentionOnlyTransformer) -> set[Edge]:
    """Every edge of the component graph: from ``"embed"`` and every head of an
    earlier layer into each head's ``"q"``, ``"k"`` and ``"v"``, and from all of them
    into ``"logits"`` (``"in"``).

    Examples::

        >>> from captum_semiring.reproductions.tasks.induction import *
        >>> len(all_edges(AttentionOnlyTransformer(SMALL_CONFIG)))  # 2*3 + 2*3*3 + 5
        29
    """
    c = model.config
    upstream = [EMBED]
    edges: set[Edge] = set()
    for layer in range(c.n_layers):
        heads = [head_name(layer, h) for h in range(c.n_heads)]
        edges |= {(u, d, s) for u in upstream for d in heads for s in ("q", "k", "v")}
        upstream += heads
    return edges | {(u, LOGITS, "in") for u in upstream}


def circuit_edges(
    previous_token: Iterable[tuple[int, int]],
    induction: Iterable[tuple[int, int]],
    core: bool = False,
) -> set[Edge]:
    """The induction circuit's edges for the given heads.

    The full set, each edge essential in the trained models (removing it drops the
    second-half accuracy to near chance; checked for the core edges in
    ``tests/reproductions/test_induction_task.py``):

    - ``embed -> prev "q"`` and ``embed -> prev "k"``: the positional embeddings that
      make the previous-token head attend from ``t`` to ``t - 1``;
    - ``embed -> prev "v"``: the previous token's identity, which it copies;
    - ``prev -> induction "k"``: K-composition, each key carries its previous token;
    - ``embed -> induction "q"``: the current token, matched against those keys;
    - ``embed -> induction "v"``: the token at the attended position, to copy;
    - ``induction -> logits "in"``: the copy into the logits.

    The core set (``core=True``) keeps the four edges of the induction head itself:
    ``prev -> induction k``, ``embed -> induction q``, ``embed -> induction v`` and
    ``induction -> logits``. The previous-token head's inputs are left out because
    they serve every position, not the target's computation alone. Edges such as
    ``embed -> logits`` (bigram statistics) or ``embed -> induction k`` can carry
    attribution but are not part of the circuit.

    Args:
        previous_token: ``(0, h)`` heads.
        induction: ``(1, h)`` heads.
        core: the core set only.

    Returns:
        A set of ``(upstream, downstream, slot)`` triples.

    Examples::

        >>> from captum_semiring.reproductions.tasks.induction import circuit_edges
        >>> sorted(circuit_edges([(0, 0)], [(1, 1)], core=True))  # doctest: +NORMALIZE_WHITESPACE
        [('blocks.0.attn.head0', 'blocks.1.attn.head1', 'k'),
         ('blocks.1.attn.head1', 'logits', 'in'),
         ('embed', 'blocks.1.attn.head1', 'q'),
         ('embed', 'blocks.1.attn.head1', 'v')]
        >>> len(circuit_edges([(0, 0)], [(1, 1)]))
        7
    """
    prev = [head_name(*h) for h in previous_token]
    ind = [head_name(*h) for h in induction]
    edges: set[Edge] = set()
    for i in ind:
        edges |= {(p, i, "k") for p in prev}
        edges |= {(EMBED, i, "q"), (EMBED, i, "v"), (i, LOGITS, "in")}
    if not core:
        edges |= {(EMBED, p, s) for p in prev for s in ("q", "k", "v")}
    return edges


def known_circuit(
    model: AttentionOnlyTransformer,
    data: Tensor,
    core: bool = False,
    previous_token_threshold: float = PREVIOUS_TOKEN_THRESHOLD,
    induction_threshold: float = INDUCTION_THRESHOLD,
) -> set[Edge]:
    """The ground-truth edges of ``model``'s induction circuit: the heads of
    :func:`identify_heads`, the edges of :func:`circuit_edges`.

    Args:
        model: a trained model.
        data: ``(B, 2L + 1)`` sequences of :func:`repeated_sequences`.
        core: only the core edges (precision and recall are computed against these).
        previous_token_threshold, induction_threshold: see :func:`identify_heads`.

    Returns:
        A set of ``(upstream, downstream, slot)`` triples.
    """
    heads = identify_heads(model, data, previous_token_threshold, induction_threshold)
    return circuit_edges(heads.previous_token, heads.induction, core=core)


# --------------------------------------------------------------------------- ablations


def _head_output(
    attn: CausalSelfAttention, h: int, xq: Tensor, xk: Tensor, xv: Tensor
) -> Tensor:
    """Head ``h``'s contribution to the residual stream, ``(B, T, d_model)``, from
    its own query, key and value inputs."""
    dh = attn.d_head
    rows = slice(h * dh, (h + 1) * dh)
    q = F.linear(xq, attn.q.weight[rows], attn.q.bias[rows])[:, None]
    k = F.linear(xk, attn.k.weight[rows], attn.k.bias[rows])[:, None]
    v = F.linear(xv, attn.v.weight[rows], attn.v.bias[rows])
    z = attn.attend(q, k)[:, 0] @ v
    return F.linear(z, attn.o.weight[:, rows])


def _component_outputs(
    model: AttentionOnlyTransformer,
    ids: Tensor,
    removed: set[Edge],
    replacement: dict[str, Tensor] | None,
) -> tuple[dict[str, Tensor], Tensor]:
    outputs = {EMBED: model.residual_input(ids)}

    def slot_input(down: str, slot: str) -> Tensor:
        total = torch.zeros_like(outputs[EMBED])
        for up, value in outputs.items():
            if (up, down, slot) not in removed:
                total = total + value
            elif replacement is not None:
                total = total + replacement[up]
        return total

    for layer in range(len(model.blocks)):
        attn = model.attention(layer)
        new = {}
        for h in range(attn.n_heads):
            name = head_name(layer, h)
            xq, xk, xv = (slot_input(name, s) for s in ("q", "k", "v"))
            new[name] = _head_output(attn, h, xq, xk, xv)
        outputs.update(new)
    return outputs, model.unembed_residual(slot_input(LOGITS, "in"))


@torch.no_grad()
def run_with_edges(
    model: AttentionOnlyTransformer,
    ids: Tensor,
    removed: Iterable[Edge] = (),
    patch_ids: Tensor | None = None,
) -> Tensor:
    """Logits with edges of the component graph removed: each removed edge's
    upstream output is left out of (zero ablation) or, with ``patch_ids``, replaced by
    its value on ``patch_ids`` in (activation patching) that one downstream input,
    while every other edge carries the clean values. The effect of a removal
    propagates downstream. With nothing removed this is ``model(ids)`` (up to
    rounding: the heads are computed one at a time).

    Args:
        model: the model.
        ids: ``(B, T)`` clean input.
        removed: ``(upstream, downstream, slot)`` edges (see :func:`all_edges`).
        patch_ids: ``(B, T)`` corrupted input (:func:`corrupt`), or None for zeros.

    Returns:
        Logits ``(B, T, vocab_size)``.

    Examples::

        >>> import torch
        >>> from captum_semiring.reproductions.tasks.induction import *
        >>> model = AttentionOnlyTransformer(SMALL_CONFIG)
        >>> ids = repeated_sequences(4, 10, 24, seed=0)
        >>> torch.allclose(run_with_edges(model, ids), model(ids), atol=1e-5)
        True
        >>> cut = run_with_edges(model, ids, [("embed", "logits", "in")])
        >>> torch.allclose(cut, model(ids))
        False
    """
    removed = set(removed)
    unknown = removed - all_edges(model)
    if unknown:
        raise ValueError(f"not edges of this model: {sorted(unknown)}")
    replacement = None
    if patch_ids is not None:
        replacement, _ = _component_outputs(model, patch_ids, set(), None)
    return _component_outputs(model, ids, removed, replacement)[1]


@contextmanager
def _zeroed_heads(
    model: AttentionOnlyTransformer,
    heads: Iterable[tuple[int, int]],
    means: dict[tuple[int, int], Tensor] | None = None,
) -> Iterator[None]:
    by_layer: dict[int, list[int]] = {}
    for layer, h in heads:
        by_layer.setdefault(layer, []).append(h)
    handles = []
    for layer, hs in by_layer.items():
        attn = model.attention(layer)
        dh = attn.d_head

        def hook(
            _: nn.Module,
            args: tuple[Tensor, ...],
            layer: int = layer,
            hs: list[int] = hs,
            dh: int = dh,
        ) -> tuple[Tensor, ...]:
            z = args[0].clone()
            for h in hs:
                fill = 0.0 if means is None else means[(layer, h)]
                z[..., h * dh : (h + 1) * dh] = fill
            return (z,)

        handles.append(attn.o.register_forward_pre_hook(hook))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


@torch.no_grad()
def ablate_heads(
    model: AttentionOnlyTransformer,
    ids: Tensor,
    heads: Iterable[tuple[int, int]],
    mode: Literal["zero", "mean"] = "zero",
) -> Tensor:
    """Logits with the given heads ablated: their output (their slice of ``o``'s
    input) set to zero, or to its mean over the batch at each position.

    Args:
        model: the model.
        ids: ``(B, T)`` input.
        heads: ``(layer, head)`` pairs.
        mode: ``"zero"`` or ``"mean"``.

    Returns:
        Logits ``(B, T, vocab_size)``.

    Examples::

        >>> import torch
        >>> from captum_semiring.reproductions.tasks.induction import *
        >>> model = AttentionOnlyTransformer(SMALL_CONFIG)
        >>> ids = repeated_sequences(4, 10, 24, seed=0)
        >>> torch.equal(ablate_heads(model, ids, []), model(ids))
        True
    """
    heads = list(heads)
    means = None
    if mode == "mean":
        captured: dict[int, Tensor] = {}
        handles = [
            model.attention(layer).o.register_forward_pre_hook(
                lambda _, args, layer=layer: captured.__setitem__(layer, args[0])
            )
            for layer in {layer for layer, _ in heads}
        ]
        try:
            model(ids)
        finally:
            for handle in handles:
                handle.remove()
        means = {}
        for layer, h in heads:
            dh = model.attention(layer).d_head
            means[(layer, h)] = captured[layer][..., h * dh : (h + 1) * dh].mean(0)
    elif mode != "zero":
        raise ValueError(f"mode must be 'zero' or 'mean', got {mode!r}")
    with _zeroed_heads(model, heads, means):
        return model(ids)
