"""Sec. 5.3 / Fig. 5: gradient entropy against task difficulty, measured by
prequential (online) minimum description length (``reproduce fig5``).

**The paper.** A 2-layer transformer (hidden size 64, 4 heads, a 36-way output
whatever the task) is trained for 50 epochs on each App. C task with sequences of
S = 36 tokens, 3 seeds per task; runs below 90% validation accuracy are dropped.
Difficulty is the prequential MDL of the task's labels (Voita and Titov, 2020;
Lovering et al., 2021): train on growing prefixes of the data and sum the codelength
of each next block under the model trained on what precedes it. The hypothesis
"entropy grows with MDL" is *not* supported; within the binary tasks entropy and MDL
look negatively related, within BinCountOnes the relation looks U-shaped.

**Here, at a reduced scale** (:data:`FULL`: 2 minutes of CPU time on one thread;
3 min 42 s wall on a shared 2-core machine):

- model: the paper's: Hugging Face BERT, 2 layers, hidden 64, 4 heads, intermediate
  256, 36 output classes, no dropout (:func:`fig5_config`), initialized with
  standard deviation 0.1 instead of BERT's 0.02 (which left Contains1 at chance for
  ~450 steps; 0.1 learns it in under 50);
- tasks (:data:`FIG5_TASKS`, 11): Contains1, ContainsTokenSet({1,2}),
  ContainsTokenSet({1,2,3}), AdjacentDuplicate, FirstTokenRepeatedImmediately,
  FirstTokenRepeatedLast and BinCountOnes(C) for C = 2, 3, 4, 6, 12;
- sequences of S = 12 tokens (not 36), vocabulary 1..20, **one seed** (not 3);
- prequential blocks: boundaries 64, 128, 256, 512, 1024, 2048 (6 blocks, 5 trainings;
  Voita and Titov use 11 blocks from 0.1% to 100%); the first block is coded with the
  uniform code over the task's C classes (log2 C bits a label);
- each prefix model: Adam (lr 2e-3, batch 64) for at most max(40, 25 epochs) steps,
  with 10% of the prefix held out for early stopping on its loss (evaluated every 20
  steps; patience 5; stop once below 0.01); the best checkpoint codes the next
  block. Each prefix model is **warm-started** from the previous prefix's model
  (still a valid prequential code, since it depends only on earlier blocks; Voita
  and Titov train each from scratch: ``warm_start=False``), instead of the paper's
  50 epochs from scratch;
- the model trained on the largest prefix (1,024 sequences) is the one whose gradient
  entropy is measured and whose validation accuracy (256 held-out sequences) decides
  whether the run is kept (> 90%, as in the paper);
- gradient entropy of a sentence: target the correct class's logit, source the
  embeddings output; per token the Entropy semiring is summed over the 64 embedding
  dimensions before finalizing (eq. 3), then averaged over the tokens (as in the
  paper's App. B.2, "entropy of the input representations averaged across all
  tokens"); the task's entropy is the mean over 256 test sentences (capped by
  ``--max-sentences``).

Scales (``options.extra["scale"]`` or ``$CAPTUM_SEMIRING_REPRO_SCALE``): ``full``,
``seeds3`` (:data:`SEEDS3`: ``full`` with seeds 0, 1, 2, as the paper; about 3x the
time) or ``quick`` (:data:`QUICK`: 3 tasks, tiny blocks, for tests). Trainings and sweeps run
on one thread.

Examples::

    >>> import math, torch
    >>> from captum_semiring.reproductions.fig5 import prequential_codelength
    >>> X, y = torch.zeros(8, 1), torch.tensor([0, 1, 1, 0, 1, 0, 0, 1])
    >>> uniform = lambda X_prefix, y_prefix: None     # "training" returns no model
    >>> log_probs = lambda model, X: torch.full((len(X), 2), math.log(0.5))
    >>> code = prequential_codelength(X, y, [2, 4, 8], uniform, log_probs, 2)
    >>> [round(b, 5) for b in code.block_bits], round(code.total_bits, 5)
    ([2.0, 2.0, 4.0], 8.0)
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Generic, TypeVar

import torch
from torch import Tensor, nn

from ..analysis.io import write_csv, write_json
from ..analysis.stats import mean_ci, ranks, spearman
from .registry import ReproduceOptions, pick_scale, register_reproduction
from .tasks.determinism import deterministic, one_thread

__all__ = [
    "FIG5_TASKS",
    "Fig5Scale",
    "FULL",
    "SEEDS3",
    "QUICK",
    "PrequentialCode",
    "prequential_codelength",
    "fig5_config",
    "fit_transformer",
    "transformer_codelength",
    "log_probs",
    "token_entropy",
    "spearman_permutation_p",
    "fig5_points",
    "summarize_fig5",
    "plot_fig5",
]

M = TypeVar("M")

#: The tasks of the reduced Fig. 5 (sec. 5.3 and App. C), by name.
FIG5_TASKS = (
    "Contains1",
    "ContainsTokenSet(1,2)",
    "ContainsTokenSet(1,2,3)",
    "AdjacentDuplicate",
    "FirstTokenRepeatedImmediately",
    "FirstTokenRepeatedLast",
    "BinCountOnes(2)",
    "BinCountOnes(3)",
    "BinCountOnes(4)",
    "BinCountOnes(6)",
    "BinCountOnes(12)",
)

CSV_COLUMNS = (
    "task",
    "family",
    "num_classes",
    "seed",
    "mdl_bits",
    "uniform_bits",
    "compression",
    "block_bits",
    "val_accuracy",
    "test_accuracy",
    "kept",
    "entropy",
    "entropy_ci_low",
    "entropy_ci_high",
    "n_test",
    "seconds",
)


# --------------------------------------------------------------------------- MDL


@dataclass
class PrequentialCode(Generic[M]):
    """The prequential codelength of a labelled dataset.

    Attributes:
        boundaries: block ends; block ``i`` is ``[boundaries[i-1], boundaries[i])``
            (block 0 starts at 0).
        block_bits: bits to transmit each block's labels.
        num_classes: classes of the uniform code of block 0.
        last_model: the model trained on ``[0, boundaries[-2])``, which coded the
            last block (None with a single block).
    """

    boundaries: list[int]
    block_bits: list[float]
    num_classes: int
    last_model: M | None = None

    @property
    def total_bits(self) -> float:
        """The prequential MDL: the sum of the blocks' codelengths, in bits."""
        return float(sum(self.block_bits))

    @property
    def uniform_bits(self) -> float:
        """Bits of the uniform code for all labels: ``n log2 C``."""
        return self.boundaries[-1] * math.log2(self.num_classes)

    @property
    def compression(self) -> float:
        """``uniform_bits / total_bits`` (Voita and Titov's compression)."""
        return self.uniform_bits / self.total_bits if self.total_bits else math.inf


def prequential_codelength(
    X: Tensor,
    y: Tensor,
    boundaries: Sequence[int],
    fit: Callable[[Tensor, Tensor], M],
    log_prob: Callable[[M, Tensor], Tensor],
    num_classes: int,
) -> PrequentialCode[M]:
    """Prequential (online) codelength of the labels ``y`` given the inputs ``X``.

    The first block, ``[0, boundaries[0])``, is sent with the uniform code over
    ``num_classes`` classes. Each later block ``[b_{i-1}, b_i)`` is sent with the
    model fitted on all examples before it: ``-sum log2 p(y | x)`` bits.

    Args:
        X, y: the dataset, in transmission order.
        boundaries: increasing block ends; the last one is the number of examples
            coded (at most ``len(y)``).
        fit: ``fit(X_prefix, y_prefix)`` returns a model.
        log_prob: ``log_prob(model, X_block)`` returns natural-log class
            probabilities, ``(len(X_block), K)`` with ``K > max(y)``.
        num_classes: classes of the uniform code of the first block.

    Returns:
        A :class:`PrequentialCode`.

    Examples::

        >>> import math, torch
        >>> from captum_semiring.reproductions.fig5 import prequential_codelength
        >>> X, y = torch.zeros(5, 1), torch.tensor([0, 0, 1, 0, 1])
        >>> def fit(X, y):  # class frequencies with add-one smoothing
        ...     return (torch.bincount(y, minlength=2) + 1.0) / (len(y) + 2)
        >>> log_prob = lambda p, X: p.log().expand(len(X), 2)
        >>> code = prequential_codelength(X, y, [3, 5], fit, log_prob, 2)
        >>> round(code.total_bits, 6) == round(3 + math.log2(25 / 6), 6)
        True
    """
    bounds = [int(b) for b in boundaries]
    if not bounds or bounds[0] < 1 or any(b <= a for a, b in zip(bounds, bounds[1:])):
        raise ValueError(f"boundaries must increase from at least 1, got {bounds}")
    if bounds[-1] > len(y):
        raise ValueError(
            f"boundaries run to {bounds[-1]} but there are {len(y)} labels"
        )
    if num_classes < 2:
        raise ValueError("num_classes must be at least 2")
    bits = [bounds[0] * math.log2(num_classes)]
    model: M | None = None
    for start, end in zip(bounds[:-1], bounds[1:]):
        model = fit(X[:start], y[:start])
        lp = log_prob(model, X[start:end])
        # log-probabilities are <= 0; clamp float round-off above 0
        nats = -lp.gather(1, y[start:end, None].long()).clamp(max=0).sum()
        bits.append(float(nats) / math.log(2))
    return PrequentialCode(bounds, bits, num_classes, model)


# --------------------------------------------------------------------------- scale


@dataclass(frozen=True)
class Fig5Scale:
    """The size of ``reproduce fig5``; see the module docstring.

    Attributes:
        tasks: task names (:func:`~captum_semiring.reproductions.tasks.get_task`).
        seeds: one run per task and seed.
        seq_len, vocab_size: the sequences.
        boundaries: prequential block ends (the last is the coded set's size).
        n_val, n_test: held-out sequences for accuracy and for the entropy.
        epochs, min_steps: a prefix model trains for
            ``max(min_steps, epochs * steps_per_epoch)`` steps at most.
        batch_size, lr: Adam's.
        eval_every, patience: early stopping on the held-out 10% of the prefix.
        converged_loss: training also stops once the held-out loss is below it.
        min_val_accuracy: runs at or below it are dropped (the paper's 90%).
        warm_start: each prefix model starts from the previous prefix's model
            (still a valid prequential code: it depends only on earlier blocks);
            ``False`` trains each from scratch, as Voita and Titov do.
        model: ``BertConfig`` fields of the transformer.
    """

    tasks: tuple[str, ...] = FIG5_TASKS
    seeds: tuple[int, ...] = (0,)
    seq_len: int = 12
    vocab_size: int = 20
    boundaries: tuple[int, ...] = (64, 128, 256, 512, 1024, 2048)
    n_val: int = 256
    n_test: int = 256
    epochs: int = 25
    min_steps: int = 40
    batch_size: int = 64
    lr: float = 2e-3
    eval_every: int = 20
    patience: int = 5
    converged_loss: float = 0.01
    min_val_accuracy: float = 0.9
    warm_start: bool = True
    model: dict[str, Any] = field(
        default_factory=lambda: {
            "num_labels": 36,
            "hidden_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "intermediate_size": 256,
            # BERT's 0.02 leaves these models on a long loss plateau (Contains1
            # took ~450 steps to leave chance); 0.1 learns it in < 50
            "initializer_range": 0.1,
        }
    )


#: The scale of ``reproduce fig5``.
FULL = Fig5Scale()
#: ``FULL`` with the paper's 3 seeds per task.
SEEDS3 = replace(FULL, seeds=(0, 1, 2))
#: Seconds, for tests: 3 tasks, S = 6, blocks 32..256.
QUICK = Fig5Scale(
    tasks=("Contains1", "FirstTokenRepeatedImmediately", "BinCountOnes(3)"),
    seq_len=6,
    boundaries=(32, 64, 128, 256),
    n_val=64,
    n_test=32,
    epochs=5,
    min_steps=30,
)


# --------------------------------------------------------------------------- model


def fig5_config(scale: Fig5Scale = FULL) -> Any:
    """The sec. 5.3 transformer's ``BertConfig`` at ``scale``'s sequence length and
    vocabulary (36 output classes whatever the task)."""
    from .tasks.models import paper_bert_config

    model = dict(scale.model)
    num_labels = model.pop("num_labels")
    return paper_bert_config(
        num_labels, vocab_size=scale.vocab_size, seq_len=scale.seq_len, **model
    )


@torch.no_grad()
def log_probs(model: Any, X: Tensor, batch_size: int = 1024) -> Tensor:
    """Natural-log class probabilities of a sequence classifier on token ids ``X``."""
    out = [
        torch.log_softmax(model(X[i : i + batch_size]).logits, -1)
        for i in range(0, len(X), batch_size)
    ]
    return torch.cat(out) if out else torch.empty(0, 0)


def fit_transformer(
    X: Tensor, y: Tensor, scale: Fig5Scale = FULL, seed: int = 0, init: Any = None
) -> Any:
    """Train the sec. 5.3 transformer on ``(X, y)`` with early stopping.

    The last 10% of ``(X, y)`` (at least one example) is held out; the model trains
    with Adam on the rest for at most ``max(scale.min_steps, scale.epochs *
    steps_per_epoch)`` steps, and the checkpoint with the lowest held-out loss
    (checked every ``scale.eval_every`` steps) is returned. Training stops after
    ``scale.patience`` checks without improvement. Everything is seeded by ``seed``;
    kernels are deterministic and single-threaded during training.

    Args:
        X, y: token ids ``(n, seq_len)`` and labels ``(n,)``, ``n >= 2``.
        scale: the model and the training budget.
        seed: initialization and batch order.
        init: a model to start from (a copy is trained; ``init`` is unchanged);
            default a fresh one (:func:`fig5_config`, seeded).

    Returns:
        The ``BertForSequenceClassification``, in eval mode.

    Examples::

        >>> from captum_semiring.reproductions.fig5 import QUICK, fit_transformer, log_probs
        >>> from captum_semiring.reproductions.tasks import Contains1
        >>> X, y = Contains1()(n=64, seq_len=QUICK.seq_len, seed=0)
        >>> model = fit_transformer(X, y, QUICK)
        >>> log_probs(model, X[:3]).shape
        torch.Size([3, 36])
    """
    from .tasks.models import paper_bert

    n = len(y)
    if n < 2:
        raise ValueError("need at least 2 examples (one is held out)")
    n_dev = max(1, n // 10)
    Xtr, ytr, Xdev, ydev = (
        X[: n - n_dev],
        y[: n - n_dev],
        X[n - n_dev :],
        y[n - n_dev :],
    )
    steps_per_epoch = math.ceil(len(ytr) / scale.batch_size)
    budget = max(scale.min_steps, scale.epochs * steps_per_epoch)
    loss_fn = nn.CrossEntropyLoss()
    with deterministic(1):
        if init is None:
            model = paper_bert(fig5_config(scale), seed=seed)
        else:
            model = copy.deepcopy(init)
        opt = torch.optim.Adam(model.parameters(), lr=scale.lr)
        gen = torch.Generator().manual_seed(seed + 1)
        best_loss, best_state, bad = math.inf, None, 0
        step = 0
        while step < budget and bad < scale.patience:
            model.train()
            perm = torch.randperm(len(ytr), generator=gen)
            for b in range(steps_per_epoch):
                idx = perm[b * scale.batch_size : (b + 1) * scale.batch_size]
                loss = loss_fn(model(Xtr[idx]).logits, ytr[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                step += 1
                if step % scale.eval_every == 0 or step == budget:
                    model.eval()
                    with torch.no_grad():
                        dev = float(loss_fn(model(Xdev).logits, ydev))
                    model.train()
                    if dev < best_loss:
                        best_loss, bad = dev, 0
                        best_state = copy.deepcopy(model.state_dict())
                    else:
                        bad += 1
                    if best_loss < scale.converged_loss:
                        bad = scale.patience  # converged: stop here
                if step >= budget or bad >= scale.patience:
                    break
        if best_state is not None:
            model.load_state_dict(best_state)
    return model.eval()


def transformer_codelength(
    X: Tensor, y: Tensor, num_classes: int, scale: Fig5Scale = FULL, seed: int = 0
) -> PrequentialCode[Any]:
    """Prequential codelength of ``y`` under the sec. 5.3 transformer:
    :func:`prequential_codelength` with :func:`fit_transformer` at
    ``scale.boundaries``, each prefix model warm-started from the previous one when
    ``scale.warm_start``.

    Examples::

        >>> from captum_semiring.reproductions.fig5 import QUICK, transformer_codelength
        >>> from captum_semiring.reproductions.tasks import Contains1
        >>> X, y = Contains1()(n=256, seq_len=QUICK.seq_len, seed=0)
        >>> code = transformer_codelength(X, y, 2, QUICK)
        >>> len(code.block_bits), code.block_bits[0]
        (4, 32.0)
    """
    previous: list[Any] = [None]

    def fit(Xp: Tensor, yp: Tensor) -> Any:
        init = previous[0] if scale.warm_start else None
        previous[0] = fit_transformer(Xp, yp, scale, seed, init=init)
        return previous[0]

    return prequential_codelength(X, y, scale.boundaries, fit, log_probs, num_classes)


@torch.no_grad()
def _accuracy(model: Any, X: Tensor, y: Tensor) -> float:
    return float((log_probs(model, X).argmax(-1) == y).float().mean())


# --------------------------------------------------------------------------- entropy


@one_thread
def token_entropy(
    model: Any,
    ids: Tensor,
    target: Tensor,
    embeddings: nn.Module | None = None,
    batch_size: int = 128,
) -> Tensor:
    """Gradient entropy of every token of a sequence classifier, with the logit of
    class ``target[b]`` as the output of example ``b``.

    The source is the embeddings module's output; per token the Entropy semiring is
    summed over the embedding dimensions before finalizing (the aggregated
    derivative, eq. 3): the entropy of all paths from the token's embedding vector
    to the logit.

    Args:
        model: a Hugging Face sequence classifier on token ids.
        ids: ``(n, seq_len)`` token ids.
        target: ``(n,)`` classes (e.g. the correct ones).
        embeddings: the module whose output is the source; default
            ``model.bert.embeddings``.
        batch_size: sentences per recording (examples do not mix).

    Returns:
        ``(n, seq_len)`` entropies in nats.

    Examples::

        >>> import torch
        >>> from captum_semiring.reproductions.fig5 import QUICK, fig5_config, token_entropy
        >>> from captum_semiring.reproductions.tasks import paper_bert
        >>> model = paper_bert(fig5_config(QUICK)).eval()
        >>> ids = torch.randint(1, 21, (2, QUICK.seq_len))
        >>> ent = token_entropy(model, ids, torch.tensor([0, 1]))
        >>> ent.shape, bool((ent > 0).all())
        (torch.Size([2, 6]), True)
    """
    import captum_semiring as cs

    emb = embeddings if embeddings is not None else model.bert.embeddings
    out: list[Tensor] = []
    for i in range(0, len(ids), batch_size):
        chunk, t = ids[i : i + batch_size], target[i : i + batch_size]
        with cs.record(emb) as graph:
            logits = model(chunk).logits
            scalar = logits.gather(1, t[:, None].long())[:, 0]
        out.append(graph.backward(scalar, cs.Entropy()).aggregate(emb, -1).detach())
    return torch.cat(out)


# --------------------------------------------------------------------------- stats


def spearman_permutation_p(
    a: Sequence[float], b: Sequence[float], n_perm: int = 20_000, seed: int = 0
) -> float | None:
    """Two-sided permutation p-value of Spearman's correlation: the share of random
    pairings (plus the observed one) whose ``|rho|`` reaches the observed one.

    Examples::

        >>> from captum_semiring.reproductions.fig5 import spearman_permutation_p
        >>> spearman_permutation_p(range(8), range(8)) < 0.01
        True
        >>> spearman_permutation_p([1, 2, 3, 4], [2, 1, 4, 3]) > 0.3
        True
    """
    rho = spearman(a, b)
    if rho is None:
        return None
    ra, rb = ranks(a), ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    gen = torch.Generator().manual_seed(seed)
    perms = torch.rand(n_perm, len(rb), generator=gen).argsort(dim=1)
    rhos = (rb[perms] * ra).sum(1) / (ra.norm() * rb.norm())
    hits = int((rhos.abs() >= abs(rho) - 1e-12).sum())
    return (hits + 1) / (n_perm + 1)


def _quadratic(x: Sequence[float], y: Sequence[float]) -> dict[str, Any] | None:
    """Least-squares ``y = a x² + b x + c``; the vertex and whether it lies inside
    the range of ``x`` (a U or an inverted U rather than a monotone curve)."""
    if len(x) < 4:
        return None
    xt = torch.tensor(list(x), dtype=torch.float64)
    yt = torch.tensor(list(y), dtype=torch.float64)
    A = torch.stack([xt**2, xt, torch.ones_like(xt)], 1)
    a, b, c = torch.linalg.lstsq(A, yt[:, None]).solution[:, 0].tolist()
    vertex = -b / (2 * a) if a else math.nan
    inside = bool(min(x) < vertex < max(x))
    shape = ("U" if a > 0 else "inverted U") if inside else "monotone"
    return {
        "a": a,
        "b": b,
        "c": c,
        "vertex_mdl": vertex,
        "vertex_inside": inside,
        "shape": shape,
    }


# --------------------------------------------------------------------------- runs


def _family(task: Any) -> str:
    return "BinCountOnes" if task.name == "BinCountOnes" else "binary"


def fig5_points(
    scale: Fig5Scale = FULL,
    max_sentences: int | None = None,
    verbose: bool = False,
) -> list[dict[str, Any]]:
    """One Fig. 5 point per task and seed: prequential MDL and mean gradient
    entropy.

    Per task and seed: sample ``boundaries[-1] + n_val + n_test`` sequences (seeded,
    balanced classes), code the first ``boundaries[-1]`` with
    :func:`prequential_codelength` and :func:`fit_transformer`, then measure
    :func:`token_entropy` (mean over tokens, then over test sentences) and the
    validation accuracy of the model trained on the largest prefix.

    Args:
        scale: tasks, sizes and budgets.
        max_sentences: use only the first N test sentences for the entropy.
        verbose: print one line per run.

    Returns:
        Rows with the columns of :data:`CSV_COLUMNS`; ``kept`` is ``val_accuracy >
        scale.min_val_accuracy``.

    Examples::

        >>> from dataclasses import replace
        >>> from captum_semiring.reproductions.fig5 import QUICK, fig5_points
        >>> rows = fig5_points(replace(QUICK, tasks=("Contains1",)), max_sentences=8)
        >>> row = rows[0]
        >>> row["task"], row["n_test"], row["mdl_bits"] > 0, row["entropy"] > 0
        ('Contains1', 8, True, True)
    """

    # one thread: these models are too small to gain from two, and on a shared
    # machine a second thread that waits for a busy core makes sweeps 5-10x slower
    with deterministic(1):
        return _fig5_points(scale, max_sentences, verbose)


def _fig5_points(
    scale: Fig5Scale, max_sentences: int | None, verbose: bool
) -> list[dict[str, Any]]:
    from .tasks.synthetic import get_task

    n_code = scale.boundaries[-1]
    n_test = scale.n_test if max_sentences is None else min(scale.n_test, max_sentences)
    rows: list[dict[str, Any]] = []
    for name in scale.tasks:
        task = get_task(name)
        for seed in scale.seeds:
            start = time.perf_counter()
            X, y = task(
                n=n_code + scale.n_val + scale.n_test,
                seq_len=scale.seq_len,
                vocab_size=scale.vocab_size,
                seed=seed,
            )
            Xv, yv = X[n_code : n_code + scale.n_val], y[n_code : n_code + scale.n_val]
            Xt = X[n_code + scale.n_val :][:n_test]
            yt = y[n_code + scale.n_val :][:n_test]
            code = transformer_codelength(
                X[:n_code], y[:n_code], task.num_classes, scale, seed
            )
            model = code.last_model
            val_acc = _accuracy(model, Xv, yv)
            test_acc = _accuracy(model, Xt, yt)
            per_sentence = token_entropy(model, Xt, yt).mean(1)
            mean, low, high = mean_ci(per_sentence[:, None])
            rows.append(
                {
                    "task": task.display_name,
                    "family": _family(task),
                    "num_classes": task.num_classes,
                    "seed": seed,
                    "mdl_bits": code.total_bits,
                    "uniform_bits": code.uniform_bits,
                    "compression": code.compression,
                    "block_bits": ";".join(f"{b:.1f}" for b in code.block_bits),
                    "val_accuracy": val_acc,
                    "test_accuracy": test_acc,
                    "kept": val_acc > scale.min_val_accuracy,
                    "entropy": float(mean[0]),
                    "entropy_ci_low": float(low[0]),
                    "entropy_ci_high": float(high[0]),
                    "n_test": len(yt),
                    "seconds": round(time.perf_counter() - start, 2),
                }
            )
            if verbose:
                r = rows[-1]
                print(
                    f"{r['task']:32s} seed {seed}: MDL {r['mdl_bits']:8.1f} bits "
                    f"(uniform {r['uniform_bits']:.0f}), entropy {r['entropy']:.3f} "
                    f"nats, val acc {val_acc:.3f}{'' if r['kept'] else ' (dropped)'} "
                    f"({r['seconds']:.1f} s)",
                    flush=True,
                )
    return rows


def summarize_fig5(
    rows: Sequence[dict[str, Any]], n_perm: int = 20_000
) -> dict[str, Any]:
    """Spearman correlations of entropy with MDL (all kept runs, binary tasks,
    BinCountOnes), permutation p-values, a quadratic fit for BinCountOnes, and the
    paper's claims with whether we see them.

    Examples::

        >>> from captum_semiring.reproductions.fig5 import summarize_fig5
        >>> rows = [{"task": f"t{i}", "family": "binary", "kept": True,
        ...          "mdl_bits": float(i), "entropy": float(10 - i)} for i in range(5)]
        >>> s = summarize_fig5(rows, n_perm=2000)
        >>> round(s["spearman"]["kept"], 6), s["paper_claims"][
        ...     "binary tasks: entropy decreases with MDL (negative relation)"]
        (-1.0, True)
    """
    kept = [r for r in rows if r["kept"]]

    def corr(sel: Sequence[dict[str, Any]]) -> tuple[float | None, float | None]:
        mdl = [float(r["mdl_bits"]) for r in sel]
        ent = [float(r["entropy"]) for r in sel]
        return spearman(mdl, ent), spearman_permutation_p(mdl, ent, n_perm)

    groups = {
        "kept": kept,
        "all": list(rows),
        "binary_kept": [r for r in kept if r["family"] == "binary"],
        "BinCountOnes_kept": [r for r in kept if r["family"] == "BinCountOnes"],
    }
    rho, p = {}, {}
    for name, sel in groups.items():
        rho[name], p[name] = corr(sel)
    # with several seeds: one point per task (the mean over its kept runs)
    by_task: dict[str, list[dict[str, Any]]] = {}
    for r in kept:
        by_task.setdefault(str(r["task"]), []).append(r)
    task_mdl = [sum(r["mdl_bits"] for r in v) / len(v) for v in by_task.values()]
    task_ent = [sum(r["entropy"] for r in v) / len(v) for v in by_task.values()]
    rho["task_means_kept"] = spearman(task_mdl, task_ent)
    p["task_means_kept"] = spearman_permutation_p(task_mdl, task_ent, n_perm)
    bco = groups["BinCountOnes_kept"]
    quad = _quadratic([r["mdl_bits"] for r in bco], [r["entropy"] for r in bco])
    positive = rho["kept"] is not None and rho["kept"] > 0 and (p["kept"] or 1) < 0.05
    claims: dict[str, bool | None] = {
        "no support for 'entropy increases with task difficulty (MDL)': no "
        "significant positive Spearman correlation across kept runs": (
            None if rho["kept"] is None else not positive
        ),
        "binary tasks: entropy decreases with MDL (negative relation)": (
            None if rho["binary_kept"] is None else rho["binary_kept"] < 0
        ),
        "BinCountOnes: U-shaped (quadratic-like) relation, entropy first falls then "
        "rises with MDL": (
            None if quad is None else quad["a"] > 0 and quad["vertex_inside"]
        ),
    }
    return {
        "n_runs": len(rows),
        "n_kept": len(kept),
        "dropped": [
            f"{r['task']} (seed {r.get('seed', 0)})" for r in rows if not r["kept"]
        ],
        "spearman": rho,
        "permutation_p_two_sided": p,
        "BinCountOnes_quadratic_fit": quad,
        "paper_claims": claims,
    }


def plot_fig5(rows: Sequence[dict[str, Any]], title: str = "") -> Any:
    """Fig. 5 as a Figure: entropy against MDL, one labelled point per run.
    Triangles: BinCountOnes; circles: binary tasks; colour: number of classes;
    hollow: dropped (validation accuracy at or below the threshold)."""
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import LogNorm
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 5.5), layout="constrained")
    ax = fig.subplots()
    cmap = colormaps["viridis_r"]
    classes = [int(r["num_classes"]) for r in rows] or [2]
    norm = LogNorm(vmin=2, vmax=max(max(classes), 3))
    labelled: set[str] = set()
    for r in rows:
        color = cmap(norm(int(r["num_classes"])))
        ax.scatter(
            r["mdl_bits"],
            r["entropy"],
            marker="^" if r["family"] == "BinCountOnes" else "o",
            s=60,
            facecolors=color if r["kept"] else "none",
            edgecolors=color,
            linewidths=1.5,
        )
        if r["task"] in labelled:  # one label per task, whatever the seeds
            continue
        labelled.add(str(r["task"]))
        ax.annotate(
            str(r["task"])
            .replace("FirstTokenRepeated", "FTR")
            .replace("ContainsTokenSet", "CTS"),
            (r["mdl_bits"], r["entropy"]),
            fontsize=7,
            xytext=(4, 3),
            textcoords="offset points",
        )
    bar = fig.colorbar(
        ScalarMappable(norm=norm, cmap=cmap), ax=ax, label="number of classes"
    )
    ticks = sorted(set(classes))
    bar.set_ticks(ticks, labels=[str(t) for t in ticks])
    bar.minorticks_off()
    ax.set_xlabel("prequential MDL (bits)")
    ax.set_ylabel("mean token gradient entropy (nats)")
    ax.set_title(title or "Fig. 5 reproduction: entropy vs MDL", fontsize=10)
    return fig


# --------------------------------------------------------------------------- run


@register_reproduction(
    "fig5", "sec. 5.3 / Fig. 5: gradient entropy vs prequential MDL across App. C tasks"
)
def reproduce_fig5(out_dir: Path, options: ReproduceOptions) -> list[Path]:
    """Write ``fig5_entropy_mdl.csv``, ``fig5_entropy_mdl.png`` and
    ``fig5_summary.json``."""
    from ..visualization import figure_to_png

    scale_name, scale = pick_scale(
        options, {"full": FULL, "seeds3": SEEDS3, "quick": QUICK}
    )
    if "tasks" in options.extra:
        scale = replace(scale, tasks=tuple(options.extra["tasks"]))
    start = time.perf_counter()
    rows = fig5_points(scale, max_sentences=options.max_sentences, verbose=True)
    summary = summarize_fig5(rows)
    rho = summary["spearman"]["kept"]
    summary["setup"] = {
        "scale": scale_name,
        "tasks": list(scale.tasks),
        "seeds": list(scale.seeds),
        "seq_len": scale.seq_len,
        "vocab_size": scale.vocab_size,
        "prequential_boundaries": list(scale.boundaries),
        "first_block": "uniform code over the task's classes",
        "n_val": scale.n_val,
        "n_test": rows[0]["n_test"] if rows else 0,
        "model": dict(scale.model),
        "training": (
            f"Adam lr {scale.lr}, batch {scale.batch_size}, at most "
            f"max({scale.min_steps}, {scale.epochs} epochs) steps, early stopping on "
            f"10% of the prefix (every {scale.eval_every} steps, patience "
            f"{scale.patience})"
        ),
        "entropy": "target: correct class's logit; source: embeddings output; per "
        "token the Entropy semiring summed over embedding dims (eq. 3); mean over "
        "tokens, then over test sentences; from the model trained on the largest "
        "prefix",
        "keep_rule": f"validation accuracy > {scale.min_val_accuracy}",
        "paper_scale": "S = 36, 3 seeds, 50 epochs, more tasks (ContainsTokenSet "
        "variants, BinCountOnes up to 36 classes)",
        "seconds": round(time.perf_counter() - start, 1),
    }
    csv_path = write_csv(out_dir / "fig5_entropy_mdl.csv", rows, CSV_COLUMNS)
    png_path = out_dir / "fig5_entropy_mdl.png"
    title = (
        f"Fig. 5 reproduction (S={scale.seq_len}, {len(scale.seeds)} seed(s)): "
        f"Spearman over kept runs = " + ("n/a" if rho is None else f"{rho:+.2f}")
    )
    png_path.write_bytes(figure_to_png(plot_fig5(rows, title)))
    summary_path = write_json(out_dir / "fig5_summary.json", summary)
    print(
        f"Spearman(entropy, MDL) over {summary['n_kept']} kept runs: "
        + ("n/a" if rho is None else f"{rho:+.3f}")
        + f" (p = {summary['permutation_p_two_sided']['kept']})"
    )
    for claim, seen in summary["paper_claims"].items():
        print(f"{'REPRODUCED' if seen else 'NOT SEEN  '}  {claim}")
    return [csv_path, png_path, summary_path]
