"""App. B.1 / Fig. 6: the paper's two sanity checks of gradient entropy
(``reproduce appB``).

1. **Entropy against sentence length** (Fig. 6(a)), on the pretrained
   all-MiniLM-L6-v2 (a 6-layer BERT; the paper used a pretrained BERT). Sentences are
   word-piece windows of a fixed English passage: sample ``j`` starts at a seeded
   sentence beginning and is extended to each length, so the sentences of one sample are
   prefixes of each other. The scalar target is the cosine similarity of the
   sentence's mean-pooled, normalized embedding (MiniLM's sentence embedding) with
   that of a fixed reference sentence, computed once without tracking. The source is
   the embeddings module's output; per token, the Entropy semiring is summed over the
   384 embedding dimensions before finalizing (eq. 3). We report the mean over
   tokens (the "entropy of the input representations" of App. B.2) and the entropy
   of *all* paths from the whole input (summed over tokens and dimensions), each next
   to the log number of paths (:class:`~captum_semiring.PathCount`), the upper bound
   of an entropy.
2. **Entropy against MLP hidden size** (Fig. 6(b)), on
   :mod:`captum_semiring.reproductions.tasks.appb`: 4 uniform features, label ``x0 > 0.5``. For each
   hidden size, depth (1 and 2 hidden layers; the paper does not give its depth) and
   seed, an MLP is trained (full-batch Adam, 300 steps) and the entropy of each input
   feature is taken with the correct class's logit as target, averaged over 500 test
   examples. Feature 0 is relevant, features 1-3 irrelevant. Runs at or below 90%
   test accuracy are left out of the summary (a width-2 ReLU net can die). Untrained
   MLPs are a control: there the features are exchangeable.

Scales (``options.extra["scale"]`` or ``$CAPTUM_SEMIRING_REPRO_SCALE``): ``full``
(:data:`FULL`) or ``quick`` (:data:`QUICK`, for tests). ``--max-sentences N`` caps
the sentences per length. Trainings and sweeps run on one thread
(:func:`~captum_semiring.reproductions.tasks.determinism.one_thread`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..analysis.io import write_csv, write_json
from ..analysis.stats import mean_ci, spearman
from .registry import ReproduceOptions, pick_scale, register_reproduction
from .tasks.determinism import deterministic, one_thread

__all__ = [
    "PASSAGE",
    "REFERENCE_SENTENCE",
    "AppBScale",
    "FULL",
    "QUICK",
    "feature_entropy",
    "appb_mlp_entropy",
    "length_windows",
    "sentence_length_entropy",
    "summarize_appb",
    "plot_length",
    "plot_mlp",
    "MIN_ACCURACY",
]

#: The text the sentences are cut from (plain English, no rare words).
PASSAGE = (
    "The old fisherman walked down to the harbor before sunrise, as he had done every "
    "morning for forty years. The water was calm and grey, and the gulls were already "
    "circling above the boats. He checked his nets, drank a cup of black coffee from a "
    "dented flask, and pushed his small wooden boat away from the pier. Out on the "
    "open sea the wind grew stronger, and the waves began to lift the boat gently up "
    "and down. By noon he had caught nothing but a few small fish, which he threw back "
    "into the water. Still, he did not feel disappointed, because he loved the quiet "
    "hours on the sea more than the fish themselves. When the sun started to set, he "
    "turned the boat toward the village, where his daughter was waiting for him on "
    "the beach with a warm dinner and a story about her day at school."
)
#: The fixed sentence whose embedding the target's cosine similarity is taken with.
REFERENCE_SENTENCE = "A man is fishing from a small boat at sea."

LENGTH_COLUMNS = (
    "length",
    "sample",
    "text",
    "similarity",
    "token_entropy_mean",
    "input_entropy",
    "token_log_paths_mean",
    "input_log_paths",
)
MLP_COLUMNS = (
    "depth",
    "hidden",
    "seed",
    "trained",
    "test_accuracy",
    "relevant_entropy",
    "irrelevant_entropy",
    "gap",
    "log_paths",
    "kept",
)


@dataclass(frozen=True)
class AppBScale:
    """The size of ``reproduce appB``.

    Attributes:
        lengths: sentence lengths in word pieces, [CLS] and [SEP] included.
        n_per_length: sentences per length (capped by ``--max-sentences``).
        hidden_sizes: MLP hidden sizes per depth.
        seeds: MLP seeds.
        mlp_steps: Adam steps per MLP.
    """

    lengths: tuple[int, ...] = (4, 8, 16, 32, 48, 64)
    n_per_length: int = 3
    hidden_sizes: dict[int, tuple[int, ...]] = field(
        default_factory=lambda: {
            1: (2, 4, 8, 16, 32, 64, 128, 256),
            2: (2, 4, 8, 16, 32, 64, 128),
        }
    )
    seeds: tuple[int, ...] = (0, 1, 2)
    mlp_steps: int = 300


#: The scale of ``reproduce appB`` (1.5 minutes wall, 40 s of CPU, on a shared 2-core
#: machine).
FULL = AppBScale()
#: A few seconds, for tests.
QUICK = AppBScale(
    lengths=(4, 8, 16),
    n_per_length=1,
    hidden_sizes={1: (2, 8, 32)},
    seeds=(0,),
    mlp_steps=100,
)


# --------------------------------------------------------------------------- MLP

#: MLP runs at or below this test accuracy did not learn the task; the summary leaves
#: them out (sec. 5.3 drops transformer runs below 90% the same way).
MIN_ACCURACY = 0.9


@one_thread
def feature_entropy(model: nn.Module, X: Tensor, target: Tensor) -> Tensor:
    """Gradient entropy of every input feature, with the logit ``target[b]`` of
    example ``b`` as output.

    Args:
        model: maps ``(n, features)`` to ``(n, classes)`` logits.
        X: the inputs, ``(n, features)``.
        target: ``(n,)`` class indices (e.g. the correct classes).

    Returns:
        ``(n, features)`` entropies in nats: per feature, the entropy of the
        distribution of gradient flow over all paths from that feature to the logit.

    Examples::

        >>> import torch
        >>> from captum_semiring.reproductions.appb import feature_entropy
        >>> net = torch.nn.Sequential(
        ...     torch.nn.Linear(2, 2), torch.nn.ReLU(), torch.nn.Linear(2, 1))
        >>> with torch.no_grad():  # two equal paths from feature 0, none from feature 1
        ...     net[0].weight[:] = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
        ...     net[0].bias[:] = 1.0
        ...     net[2].weight[:] = 1.0
        >>> feature_entropy(net, torch.rand(3, 2), torch.zeros(3, dtype=torch.long))
        tensor([[0.6931, 0.0000],
                [0.6931, 0.0000],
                [0.6931, 0.0000]])
    """
    import captum_semiring as cs

    X = X.detach().clone()
    with cs.record(X) as graph:
        out = model(X).gather(1, target[:, None].long())[:, 0]
    return graph.backward(out, cs.Entropy())[X]


@one_thread
def _log_paths(model: nn.Module, X: Tensor, target: Tensor) -> Tensor:
    import captum_semiring as cs

    X = X.detach().clone()
    with cs.record(X) as graph:
        out = model(X).gather(1, target[:, None].long())[:, 0]
    return graph.backward(out, cs.PathCount())[X]


@one_thread
def appb_mlp_entropy(
    scale: AppBScale = FULL, untrained: bool = True, verbose: bool = False
) -> list[dict[str, Any]]:
    """Fig. 6(b): per-feature gradient entropy of App. B MLPs by hidden size.

    For each depth, hidden size and seed of ``scale``, train an MLP with
    :func:`~captum_semiring.reproductions.tasks.appb.train_appb_mlp` and take
    :func:`feature_entropy` on its 500 test examples with the correct class's logit
    as target.

    Args:
        scale: depths, hidden sizes, seeds and steps.
        untrained: also report each MLP at initialization (``trained=False`` rows), a
            control in which relevant and irrelevant features are exchangeable.
        verbose: print one line per hidden size.

    Returns:
        One row per (depth, hidden, seed, trained): ``relevant_entropy`` (feature 0),
        ``irrelevant_entropy`` (mean over features 1-3), ``gap`` (their difference),
        ``log_paths`` (log number of paths from one feature), ``test_accuracy``,
        ``kept`` (test accuracy above :data:`MIN_ACCURACY`; untrained MLPs are at
        chance and never kept, the summary reads them as a control).

    Examples::

        >>> from captum_semiring.reproductions.appb import QUICK, appb_mlp_entropy
        >>> rows = appb_mlp_entropy(QUICK, untrained=False)
        >>> [(r["hidden"], round(r["log_paths"], 3)) for r in rows]
        [(2, 0.693), (8, 2.079), (32, 3.466)]
    """
    from .tasks.appb import train_appb_mlp

    rows: list[dict[str, Any]] = []
    for depth, sizes in sorted(scale.hidden_sizes.items()):
        for hidden in sizes:
            start = time.perf_counter()
            for seed in scale.seeds:
                for trained in (True, False) if untrained else (True,):
                    run = train_appb_mlp(
                        hidden, depth, seed=seed, steps=scale.mlp_steps, train=trained
                    )
                    ent = feature_entropy(run.model, run.X_test, run.y_test).mean(0)
                    # the path count is the same for every example: read one
                    count = _log_paths(run.model, run.X_test[:1], run.y_test[:1])
                    rel, irr = float(ent[0]), float(ent[1:].mean())
                    rows.append(
                        {
                            "depth": depth,
                            "hidden": hidden,
                            "seed": seed,
                            "trained": trained,
                            "test_accuracy": run.test_accuracy,
                            "relevant_entropy": rel,
                            "irrelevant_entropy": irr,
                            "gap": rel - irr,
                            "log_paths": float(count[0, 0]),
                            # as in sec. 5.3: drop runs that did not learn the task
                            "kept": run.test_accuracy > MIN_ACCURACY,
                        }
                    )
            if verbose:
                sel = [
                    r
                    for r in rows
                    if r["depth"] == depth and r["hidden"] == hidden and r["trained"]
                ]
                rel = sum(r["relevant_entropy"] for r in sel) / len(sel)
                irr = sum(r["irrelevant_entropy"] for r in sel) / len(sel)
                print(
                    f"MLP depth {depth} hidden {hidden:4d}: relevant {rel:.3f}, "
                    f"irrelevant {irr:.3f} nats ({time.perf_counter() - start:.1f} s)",
                    flush=True,
                )
    return rows


# --------------------------------------------------------------------------- length


def length_windows(
    tokenizer: Any,
    lengths: Sequence[int],
    n_per_length: int,
    seed: int = 0,
    passage: str = PASSAGE,
) -> list[tuple[int, int, Tensor]]:
    """Sentences of increasing length cut from ``passage``.

    Sample ``j`` starts at the beginning of a seeded choice among the passage's
    sentences (distinct while there are enough) and runs on, wrapping round at the
    passage's end; at length ``L`` it is ``[CLS]`` + the next ``L - 2`` word pieces +
    ``[SEP]``. So a sample's shorter sentences are prefixes of its longer ones.

    Args:
        tokenizer: a BERT word-piece tokenizer.
        lengths: lengths in tokens, [CLS] and [SEP] included (each at least 3).
        n_per_length: number of samples (start offsets).
        seed: seeds the offsets.
        passage: the text.

    Returns:
        ``(length, sample, ids)`` triples, ``ids`` of shape ``(1, length)``.

    Examples::

        >>> from transformers import AutoTokenizer
        >>> from captum_semiring.reproductions.tasks import minilm_dir
        >>> from captum_semiring.reproductions.appb import length_windows
        >>> tokenizer = AutoTokenizer.from_pretrained(minilm_dir())
        >>> windows = length_windows(tokenizer, (4, 6), n_per_length=1)
        >>> [tokenizer.convert_ids_to_tokens(ids[0]) for _, _, ids in windows]
        [['[CLS]', 'by', 'noon', '[SEP]'], ['[CLS]', 'by', 'noon', 'he', 'had', '[SEP]']]
    """
    if min(lengths) < 3:
        raise ValueError("a sentence needs at least one token besides [CLS] and [SEP]")
    pieces = tokenizer(passage, add_special_tokens=False)["input_ids"]
    # start at sentence beginnings, so the short sentences read naturally
    period = tokenizer.convert_tokens_to_ids(".")
    begins = [0] + [i + 1 for i, p in enumerate(pieces[:-1]) if p == period]
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(begins), generator=gen).tolist()
    starts = [begins[order[j % len(begins)]] for j in range(n_per_length)]
    out = []
    for length in lengths:
        for j, s in enumerate(starts):
            body = [pieces[(s + i) % len(pieces)] for i in range(length - 2)]
            ids = [tokenizer.cls_token_id, *body, tokenizer.sep_token_id]
            out.append((length, j, torch.tensor([ids])))
    return out


@one_thread
def sentence_length_entropy(
    lengths: Sequence[int] = FULL.lengths,
    n_per_length: int = FULL.n_per_length,
    seed: int = 0,
    model: Any = None,
    tokenizer: Any = None,
    verbose: bool = False,
) -> list[dict[str, Any]]:
    """Fig. 6(a): gradient entropy of the pretrained MiniLM against sentence length.

    For each sentence of :func:`length_windows`, the target is the cosine similarity
    of its sentence embedding (mean-pooled, normalized last hidden states) with that
    of :data:`REFERENCE_SENTENCE`. One recording at the embeddings output is swept
    with :class:`~captum_semiring.Entropy` and :class:`~captum_semiring.PathCount`.

    Args:
        lengths: sentence lengths in tokens ([CLS] and [SEP] included).
        n_per_length: sentences per length.
        seed: seeds the sentences' start offsets.
        model, tokenizer: a BERT-like ``BertModel`` and its tokenizer; default
            :func:`~captum_semiring.reproductions.tasks.load_minilm`.
        verbose: print one line per sentence.

    Returns:
        One row per sentence: ``token_entropy_mean`` (per token, the entropy of all
        paths from its embedding vector, eq. 3; mean over tokens),
        ``input_entropy`` (all paths from the whole input), the matching log path
        counts, the similarity and the text.

    Examples::

        >>> from captum_semiring.reproductions.appb import sentence_length_entropy
        >>> rows = sentence_length_entropy(lengths=(4, 8), n_per_length=1)
        >>> rows[0]["token_entropy_mean"] < rows[1]["token_entropy_mean"]
        True
        >>> all(r["input_entropy"] < r["input_log_paths"] for r in rows)
        True
    """
    import torch.nn.functional as F

    import captum_semiring as cs

    if model is None or tokenizer is None:
        from .tasks.pretrained import load_minilm

        model, tokenizer = load_minilm()
    emb = model.embeddings

    def sentence_embedding(ids: Tensor) -> Tensor:
        mask = torch.ones_like(ids)
        hidden = model(input_ids=ids, attention_mask=mask).last_hidden_state
        return F.normalize(hidden.mean(1), dim=-1)

    with torch.no_grad():
        ref_ids = tokenizer([REFERENCE_SENTENCE], return_tensors="pt")["input_ids"]
        reference = sentence_embedding(ref_ids)[0]
    rows: list[dict[str, Any]] = []
    for length, j, ids in length_windows(tokenizer, lengths, n_per_length, seed):
        start = time.perf_counter()
        with cs.record(emb) as graph:
            out = sentence_embedding(ids) @ reference
        ent = graph.backward(out, cs.Entropy())
        count = graph.backward(out, cs.PathCount())
        rows.append(
            {
                "length": length,
                "sample": j,
                "text": tokenizer.decode(ids[0, 1:-1]),
                "similarity": float(out.detach()[0]),
                "token_entropy_mean": float(ent.aggregate(emb, -1).mean()),
                "input_entropy": float(ent.aggregate(emb, (-2, -1))[0]),
                "token_log_paths_mean": float(count.aggregate(emb, -1).mean()),
                "input_log_paths": float(count.aggregate(emb, (-2, -1))[0]),
            }
        )
        if verbose:
            r = rows[-1]
            print(
                f"length {length:3d} sample {j}: token entropy "
                f"{r['token_entropy_mean']:.2f} nats, input entropy "
                f"{r['input_entropy']:.2f}, log paths {r['input_log_paths']:.2f} "
                f"({time.perf_counter() - start:.1f} s)",
                flush=True,
            )
    return rows


# --------------------------------------------------------------------------- summary


def _means_by(rows: Sequence[dict[str, Any]], key: str, value: str) -> dict[Any, float]:
    groups: dict[Any, list[float]] = {}
    for r in rows:
        groups.setdefault(r[key], []).append(float(r[value]))
    return {k: sum(v) / len(v) for k, v in sorted(groups.items())}


def _increasing(values: Sequence[float]) -> bool:
    return all(b > a for a, b in zip(values[:-1], values[1:]))


def _slope(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Least-squares slope of ``y`` on ``x``."""
    if len(x) < 2:
        return None
    mx, my = sum(x) / len(x), sum(y) / len(y)
    sxx = sum((a - mx) ** 2 for a in x)
    if sxx == 0:
        return None
    return sum((a - mx) * (b - my) for a, b in zip(x, y)) / sxx


def summarize_appb(
    length_rows: Sequence[dict[str, Any]], mlp_rows: Sequence[dict[str, Any]]
) -> dict[str, Any]:
    """The paper's App. B.1 claims, checked on the rows of
    :func:`sentence_length_entropy` and :func:`appb_mlp_entropy`.

    Returns:
        A JSON-ready dict: per-length and per-hidden-size means, Spearman
        correlations, and ``paper_claims`` (claim → whether we see it).

    Examples::

        >>> from captum_semiring.reproductions.appb import summarize_appb
        >>> length_rows = [
        ...     {"length": L, "token_entropy_mean": h, "input_entropy": h + 1,
        ...      "token_log_paths_mean": 2 * h, "input_log_paths": 2 * h + 2}
        ...     for L, h in [(4, 1.0), (8, 2.0), (16, 2.5)]]
        >>> mlp_rows = [
        ...     {"depth": 1, "hidden": H, "seed": 0, "trained": True, "test_accuracy": 1.0,
        ...      "relevant_entropy": r, "irrelevant_entropy": i, "gap": r - i,
        ...      "log_paths": 0.0}
        ...     for H, r, i in [(2, 0.5, 0.4), (8, 1.5, 1.0)]]
        >>> claims = summarize_appb(length_rows, mlp_rows)["paper_claims"]
        >>> list(claims.values())
        [True, True, True, True]
    """
    summary: dict[str, Any] = {}
    claims: dict[str, bool | None] = {}
    if length_rows:
        lengths = [float(r["length"]) for r in length_rows]
        per_length = {
            m: _means_by(length_rows, "length", m)
            for m in (
                "token_entropy_mean",
                "input_entropy",
                "token_log_paths_mean",
                "input_log_paths",
            )
        }
        tok = [float(r["token_entropy_mean"]) for r in length_rows]
        inp = [float(r["input_entropy"]) for r in length_rows]
        summary["length"] = {
            "means_by_length": per_length,
            "spearman_length_token_entropy": spearman(lengths, tok),
            "spearman_length_input_entropy": spearman(lengths, inp),
            # how much of each extra nat of log(#paths) shows up as entropy
            "slope_input_entropy_vs_log_paths": _slope(
                [float(r["input_log_paths"]) for r in length_rows], inp
            ),
            "slope_token_entropy_vs_log_paths": _slope(
                [float(r["token_log_paths_mean"]) for r in length_rows], tok
            ),
            "entropy_over_log_paths": {
                L: per_length["input_entropy"][L] / per_length["input_log_paths"][L]
                for L in per_length["input_entropy"]
            },
            "n_sentences": len(length_rows),
        }
        claims["Fig. 6(a): entropy increases with sentence length"] = _increasing(
            list(per_length["token_entropy_mean"].values())
        ) and _increasing(list(per_length["input_entropy"].values()))
    trained = [r for r in mlp_rows if r["trained"] and r.get("kept", True)]
    if trained:
        mlp: dict[str, Any] = {}
        all_increase, rel_above, gap_grows = True, True, True
        for depth in sorted({r["depth"] for r in trained}):
            sel = [r for r in trained if r["depth"] == depth]
            rel = _means_by(sel, "hidden", "relevant_entropy")
            irr = _means_by(sel, "hidden", "irrelevant_entropy")
            gap = _means_by(sel, "hidden", "gap")
            hidden = [float(h) for h in gap]
            rho_gap = spearman(hidden, list(gap.values()))
            runs_above = sum(r["gap"] > 0 for r in sel)
            mlp[f"depth_{depth}"] = {
                "relevant_by_hidden": rel,
                "irrelevant_by_hidden": irr,
                "gap_by_hidden": gap,
                "relative_gap_by_hidden": {h: gap[h] / irr[h] for h in gap if irr[h]},
                "runs_with_relevant_above_irrelevant": f"{runs_above}/{len(sel)}",
                "spearman_hidden_gap": rho_gap,
                "gap_peak_hidden": max(gap, key=lambda h: gap[h]),
                "min_test_accuracy": min(r["test_accuracy"] for r in sel),
                "dropped_runs": [
                    f"hidden {r['hidden']} seed {r['seed']} (test accuracy "
                    f"{r['test_accuracy']:.3f})"
                    for r in mlp_rows
                    if r["trained"] and r["depth"] == depth and not r.get("kept", True)
                ],
            }
            all_increase &= _increasing(list(rel.values())) and _increasing(
                list(irr.values())
            )
            rel_above &= all(g > 0 for g in gap.values())
            # "grows": a clear positive rank correlation, not just a positive one
            gap_grows &= rho_gap is not None and rho_gap >= 0.5
        control = [r for r in mlp_rows if not r["trained"]]
        if control:
            mlp["untrained_control_mean_gap"] = sum(r["gap"] for r in control) / len(
                control
            )
        summary["mlp"] = mlp
        claims[
            "Fig. 6(b): entropy of the input features increases with hidden size"
        ] = all_increase
        claims[
            "Fig. 6(b): entropy is higher for the relevant feature than for the "
            "irrelevant ones, at every hidden size"
        ] = rel_above
        claims[
            "Fig. 6(b): the relevant-irrelevant gap grows with hidden size "
            "('especially as model complexity increases'; Spearman(hidden, gap) >= "
            "0.5 at every depth)"
        ] = gap_grows
    summary["paper_claims"] = claims
    return summary


# --------------------------------------------------------------------------- plots


def plot_length(rows: Sequence[dict[str, Any]]) -> Any:
    """Fig. 6(a) as a Figure: entropy and log(#paths) against sentence length
    (means over sentences with 95% intervals, and every sentence as a dot)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 3.8), layout="constrained")
    axes = fig.subplots(1, 2)
    panels = [
        ("token_entropy_mean", "token_log_paths_mean", "per token (mean over tokens)"),
        ("input_entropy", "input_log_paths", "whole input"),
    ]
    for ax, (ent_key, count_key, title) in zip(axes, panels):
        lengths = sorted({r["length"] for r in rows})
        for key, label, color in (
            (ent_key, "entropy", "C0"),
            (count_key, "log #paths (bound)", "C7"),
        ):
            stats = [
                mean_ci(
                    torch.tensor([float(r[key]) for r in rows if r["length"] == L])[
                        :, None
                    ]
                )
                for L in lengths
            ]
            mean = [float(s[0][0]) for s in stats]
            err = [float(s[2][0] - s[0][0]) for s in stats]
            ax.errorbar(lengths, mean, yerr=err, marker="o", label=label, color=color)
            ax.scatter(
                [r["length"] for r in rows],
                [r[key] for r in rows],
                s=8,
                color=color,
                alpha=0.4,
            )
        ax.set_xscale("log", base=2)
        ax.set_xlabel("sentence length (tokens)")
        ax.set_ylabel("nats")
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=8)
    fig.suptitle(
        "App. B, Fig. 6(a): gradient entropy of all-MiniLM-L6-v2 vs sentence length "
        "(target: cosine similarity to a reference sentence)",
        fontsize=10,
    )
    return fig


def plot_mlp(rows: Sequence[dict[str, Any]]) -> Any:
    """Fig. 6(b) as a Figure: relevant and irrelevant feature entropy against hidden
    size, one panel per depth (trained MLPs solid, untrained dashed)."""
    from matplotlib.figure import Figure

    depths = sorted({r["depth"] for r in rows})
    fig = Figure(figsize=(5 * len(depths), 3.8), layout="constrained")
    axes = fig.subplots(1, len(depths), squeeze=False)[0]
    for ax, depth in zip(axes, depths):
        for trained, style in ((True, "-"), (False, ":")):
            sel = [
                r
                for r in rows
                if r["depth"] == depth
                and r["trained"] == trained
                and (not trained or r.get("kept", True))
            ]
            if not sel:
                continue
            tag = "" if trained else " (untrained)"
            for key, label, color in (
                ("relevant_entropy", "relevant feature", "C3"),
                ("irrelevant_entropy", "irrelevant features", "C0"),
            ):
                means = _means_by(sel, "hidden", key)
                ax.plot(
                    list(means),
                    list(means.values()),
                    style,
                    marker="o",
                    color=color,
                    label=label + tag,
                )
        sel = [r for r in rows if r["depth"] == depth]
        counts = _means_by(sel, "hidden", "log_paths")
        ax.plot(
            list(counts), list(counts.values()), "--", color="C7", label="log #paths"
        )
        ax.set_xscale("log", base=2)
        ax.set_xlabel("hidden size")
        ax.set_ylabel("entropy (nats)")
        ax.set_title(f"{depth} hidden layer{'s' if depth > 1 else ''}", fontsize=10)
        ax.legend(fontsize=7)
    fig.suptitle(
        "App. B, Fig. 6(b): feature entropy vs MLP hidden size (label = x0 > 0.5)",
        fontsize=10,
    )
    return fig


# --------------------------------------------------------------------------- run


@register_reproduction(
    "appB", "App. B / Fig. 6: entropy vs sentence length and vs MLP hidden size"
)
def reproduce_appb(out_dir: Path, options: ReproduceOptions) -> list[Path]:
    """Write ``appB_length.csv``, ``appB_mlp.csv``, ``appB_length.png``,
    ``appB_mlp.png`` and ``appB_summary.json``."""
    from ..visualization import figure_to_png

    scale_name, scale = pick_scale(options, {"full": FULL, "quick": QUICK})
    n_per_length = scale.n_per_length
    if options.max_sentences is not None:
        n_per_length = max(1, min(n_per_length, options.max_sentences))
    # one thread: on a shared 2-core machine a second thread waiting for a busy core
    # made the MiniLM sweeps several times slower
    with deterministic(1):
        start = time.perf_counter()
        length_rows = sentence_length_entropy(scale.lengths, n_per_length, verbose=True)
        t_length = time.perf_counter() - start
        mlp_rows = appb_mlp_entropy(scale, verbose=True)
        t_mlp = time.perf_counter() - start - t_length
    summary = summarize_appb(length_rows, mlp_rows)
    summary["setup"] = {
        "scale": scale_name,
        "length": {
            "model": "all-MiniLM-L6-v2 (pretrained, 6 layers, hidden 384)",
            "lengths": list(scale.lengths),
            "sentences_per_length": n_per_length,
            "target": "cosine similarity of the mean-pooled normalized sentence "
            f"embedding with that of {REFERENCE_SENTENCE!r}",
            "source": "embeddings output; per token the Entropy semiring is summed "
            "over the 384 dimensions before finalizing (eq. 3); input_entropy sums "
            "over all tokens too",
            "sentences": "word-piece windows of a fixed passage from seeded "
            "sentence beginnings; the sentences of one sample are prefixes of each other",
        },
        "mlp": {
            "data": "4 features uniform in [0, 1), label x0 > 0.5; 2000 train, 500 "
            "test examples",
            "model": "depth x (Linear(., hidden) + ReLU) + Linear(hidden, 2)",
            "hidden_sizes": {str(d): list(h) for d, h in scale.hidden_sizes.items()},
            "seeds": list(scale.seeds),
            "training": f"full-batch Adam, lr 1e-2, {scale.mlp_steps} steps",
            "target": "the correct class's logit; entropy averaged over test "
            "examples; irrelevant = mean over features 1-3",
        },
        "seconds": {"length": round(t_length, 1), "mlp": round(t_mlp, 1)},
    }
    summary["note"] = (
        "Entropy is bounded by log(#paths). On MiniLM the path count grows like a "
        "power of the length (attention connects every pair of positions in each of "
        "6 layers), so log(#paths) and the entropy grow roughly with log(length)."
    )
    paths = [
        write_csv(out_dir / "appB_length.csv", length_rows, LENGTH_COLUMNS),
        write_csv(out_dir / "appB_mlp.csv", mlp_rows, MLP_COLUMNS),
    ]
    for name, fig in (
        ("appB_length.png", plot_length(length_rows)),
        ("appB_mlp.png", plot_mlp(mlp_rows)),
    ):
        (out_dir / name).write_bytes(figure_to_png(fig))
        paths.append(out_dir / name)
    paths.append(write_json(out_dir / "appB_summary.json", summary))
    for claim, seen in summary["paper_claims"].items():
        print(f"{'REPRODUCED' if seen else 'NOT SEEN  '}  {claim}")
    return paths
