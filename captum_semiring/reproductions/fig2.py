"""Sec. 5.1 / Fig. 2: which branch of the transformer layer carries each token's top
gradient path, on the FirstTokenRepeatedOnce model (``reproduce fig2``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..analysis.branch_flow import (
    AGGREGATION_TITLES,
    AGGREGATIONS,
    TRANSFORMER_BRANCHES,
    bar_group,
    branch_ci_rows,
    transformer_branch,
)
from ..analysis.io import module_name, write_csv, write_json
from .registry import ReproduceOptions, register_reproduction

TOKEN_TYPES = ("first", "repeat", "other")
CSV_COLUMNS = ("token_type", "branch", "aggregation", "mean", "ci_low", "ci_high", "n")


def _token_masks(ids: Tensor) -> dict[str, Tensor]:
    """Per token type, a ``(batch, seq)`` mask: the first token, its repeats, the rest."""
    first = torch.zeros_like(ids, dtype=torch.bool)
    first[:, 0] = True
    repeat = (ids == ids[:, :1]) & ~first
    return {"first": first, "repeat": repeat, "other": ~repeat & ~first}


def fig2_branch_flow(
    trained: Any,
    batch_size: int = 200,
    max_sentences: int | None = None,
    decompose: tuple[str, ...] = (),
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Max-product branch flow at the layer input, by token type.

    For every validation sentence of the FirstTokenRepeatedOnce model, the target is
    the correct class's logit. At the (only) layer's input, the flow of each token
    into the skip connection and the query, key and value projections is taken in two
    aggregations: ``top-branch`` (the paper's: the branch carrying the token's top
    path gets its value, the others 0) and ``branch-max`` (each branch's own max over
    the hidden units). Per sentence, tokens are averaged within their type (``first``,
    ``repeat`` = the first token's repeat, ``other``); the rows give the mean over
    sentences with a normal 95% interval.

    Args:
        trained: a :class:`~captum_semiring.reproductions.tasks.TrainedClassifier` on
            FirstTokenRepeatedOnce.
        batch_size: sentences per sweep.
        max_sentences: use only the first N validation sentences.
        decompose: composite ops to record as finer ops (``("softmax",
            "layer_norm")`` is the paper's granularity); see :func:`~captum_semiring.record`.

    Returns:
        The CSV rows and a summary with the winning branch per token type.
    """
    import captum_semiring as cs

    model = trained.model.eval()
    X, y = trained.data["val"]
    if max_sentences is not None:
        X, y = X[:max_sentences], y[:max_sentences]
    layer = model.bert.encoder.layer[0]
    source = cs.layer_input(layer)
    layer_name = module_name(model, layer)
    per_sentence: dict[tuple[str, str], list[Tensor]] = {}  # (type, agg) -> (4,) each
    for start in range(0, len(y), batch_size):
        ids, labels = X[start : start + batch_size], y[start : start + batch_size]
        with cs.record(source, decompose=decompose) as graph:
            logits = model(ids, attention_mask=torch.ones_like(ids)).logits
            out = logits.gather(1, labels[:, None])[:, 0]
        flow = graph.backward(out, cs.MaxProduct()).branch_flow(source)
        flow = flow.grouped(
            lambda label: transformer_branch(label, layer_name), TRANSFORMER_BRANCHES
        )
        values = {"top-branch": flow.top_branch(-1), "branch-max": flow.aggregate(-1)}
        for token_type, mask in _token_masks(ids).items():
            for agg, v in values.items():  # v: (4, batch, seq)
                for b in range(ids.shape[0]):
                    if mask[b].any():
                        per_sentence.setdefault((token_type, agg), []).append(
                            v[:, b, mask[b]].mean(-1)
                        )
    rows: list[dict[str, Any]] = []
    winners: dict[str, dict[str, str]] = {}
    for agg in AGGREGATIONS:
        for token_type in TOKEN_TYPES:
            vecs = per_sentence.get((token_type, agg))
            if not vecs:
                continue
            new = branch_ci_rows(
                torch.stack(vecs), token_type=token_type, aggregation=agg
            )
            rows.extend(new)
            mean = torch.tensor([r["mean"] for r in new], dtype=torch.float64)
            winners.setdefault(agg, {})[token_type] = TRANSFORMER_BRANCHES[
                int(mean.argmax())
            ]
            if agg == "branch-max":
                winners.setdefault("branch-max-qkv", {})[token_type] = (
                    TRANSFORMER_BRANCHES[1 + int(mean[1:].argmax())]
                )
    top = winners.get("top-branch", {})
    qkv = winners.get("branch-max-qkv", {})
    summary = {
        "val_accuracy": trained.val_accuracy,
        "test_accuracy": trained.test_accuracy,
        "n_sentences": len(y),
        "decompose": list(decompose),
        "winners": winners,
        "paper_claims": {
            "repeat token's top-gradient flow is highest through the keys": (
                top.get("repeat") == "key"
            ),
            "first token has high query flow": top.get("first") == "query",
            "first token: query is the largest of query/key/value (branch-max)": (
                qkv.get("first") == "query"
            ),
        },
        "note": (
            "The classifier reads position 0 only, so tokens after the first reach "
            "the output only through position 0's attention (their keys and values): "
            "their skip and query flows are exactly 0."
        ),
    }
    return rows, summary


def plot_fig2(panels: dict[str, list[dict[str, Any]]], n_sentences: int) -> Any:
    """The reproduction as a Figure: one row of panels (top-branch, branch-max) per
    granularity in ``panels`` (granularity name to CSV rows)."""
    from matplotlib.figure import Figure

    from ..visualization import plot_branch_summary

    fig = Figure(figsize=(12, 3.8 * len(panels)), layout="constrained")
    axes = fig.subplots(len(panels), 2, squeeze=False)
    for row_axes, (granularity, rows) in zip(axes, panels.items(), strict=True):
        for ax, agg in zip(row_axes, AGGREGATIONS, strict=True):
            plot_rows = []
            for token_type in TOKEN_TYPES:
                sel = {
                    r["branch"]: r
                    for r in rows
                    if r["aggregation"] == agg and r["token_type"] == token_type
                }
                if sel:
                    n = next(iter(sel.values()))["n"]
                    label = f"{token_type} (n={n})"
                    plot_rows.append(bar_group(label, sel.values()))
            title = f"{granularity}: {AGGREGATION_TITLES[agg]}"
            plot_branch_summary(plot_rows, title=title, ax=ax, log=True)
            ax.set_ylabel("mean max-product flow (log)", fontsize=9)
    fig.suptitle(
        "Fig. 2 reproduction: FirstTokenRepeatedOnce, "
        f"{n_sentences} validation sentences, 95% CI",
        fontsize=10,
    )
    return fig


#: The paper's library built softmax from exp, sum and div and layer norm from mean
#: and var; recording ATen primitives keeps each as one op with a dense Jacobian.
GRANULARITIES = {
    "paper granularity": ("softmax", "layer_norm"),
    "ATen primitives": (),
}


@register_reproduction(
    "fig2", "sec. 5.1 / Fig. 2: branch flow by token type on FirstTokenRepeatedOnce"
)
def reproduce_fig2(out_dir: Path, options: ReproduceOptions) -> list[Path]:
    """Write ``fig2_branch_flow.csv`` (the paper's granularity: softmax and layer norm
    decomposed), ``fig2_branch_flow_aten.csv`` (ATen primitives), the plot
    ``fig2_branch_flow.png`` and ``fig2_summary.json``."""
    from ..visualization import figure_to_png
    from .tasks.models import default_model

    trained = default_model(verbose=True)
    panels, summaries = {}, {}
    for granularity, decompose in GRANULARITIES.items():
        rows, summaries[granularity] = fig2_branch_flow(
            trained, max_sentences=options.max_sentences, decompose=decompose
        )
        panels[granularity] = rows
    summary = summaries["paper granularity"]
    summary["aten_primitives"] = {
        k: summaries["ATen primitives"][k] for k in ("winners", "paper_claims")
    }
    summary["granularity_note"] = (
        "fig2_branch_flow.csv records softmax as exp/sum/div and layer norm as "
        "mean/var/..., as the paper's library did; fig2_branch_flow_aten.csv keeps them "
        "as single ATen ops with dense Jacobians. The winning branch of the repeated "
        "token depends on this choice."
    )
    csv_path = write_csv(
        out_dir / "fig2_branch_flow.csv", panels["paper granularity"], CSV_COLUMNS
    )
    aten_path = write_csv(
        out_dir / "fig2_branch_flow_aten.csv", panels["ATen primitives"], CSV_COLUMNS
    )
    png_path = out_dir / "fig2_branch_flow.png"
    png_path.write_bytes(figure_to_png(plot_fig2(panels, summary["n_sentences"])))
    summary_path = write_json(out_dir / "fig2_summary.json", summary)
    for granularity, result in summaries.items():
        top = result["winners"].get("top-branch", {})
        print(
            f"{granularity}: top-branch winners "
            + ", ".join(f"{t} -> {b}" for t, b in top.items())
        )
    print(f"validation accuracy {summary['val_accuracy']:.3f}")
    return [csv_path, aten_path, png_path, summary_path]
