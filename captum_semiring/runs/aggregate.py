"""Aggregation over the examples of a finished run: means with 95% confidence
intervals (:func:`~captum_semiring.analysis.stats.mean_ci`) of

- each per-token semiring value, by token type (the token's text) and by position;
- the branch flow per layer and branch (skip, query, key, value), in both of
  :data:`~captum_semiring.analysis.branch_flow.AGGREGATIONS`, per token group: a
  group's tokens are averaged within each example first, so each example is one
  sample (``all``: every token; more groups from the run's metadata, see
  :func:`aggregate_run`);
- in a run with parameter sources, each semiring's parameter-group flow per group
  (the ``parameter_flow`` column: one value per example and group).

``captum-semiring aggregate RUN_DIR`` writes the CSVs and plots of
:func:`write_aggregate`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..analysis.branch_flow import (
    AGGREGATIONS,
    BRANCH_CI_COLUMNS,
    TRANSFORMER_BRANCHES,
    bar_group,
    branch_ci_rows,
)
from ..analysis.io import write_csv
from ..analysis.stats import mean_ci
from .runner import read_run

__all__ = [
    "TOKEN_COLUMNS",
    "BRANCH_COLUMNS",
    "PARAMETER_COLUMNS",
    "RunAggregate",
    "aggregate_run",
    "write_aggregate",
]

TOKEN_COLUMNS = ("semiring", "by", "key", "mean", "ci_low", "ci_high", "n")
BRANCH_COLUMNS = BRANCH_CI_COLUMNS
PARAMETER_COLUMNS = ("semiring", "group", "elements", "mean", "ci_low", "ci_high", "n")
_FLOW_FIELDS = {"top-branch": "top_branch", "branch-max": "branch_max"}

#: Token groups of one output row: group name → token positions.
Groups = Callable[[Mapping[str, Any]], Mapping[str, Sequence[int]]]


@dataclass
class RunAggregate:
    """The aggregates of a run.

    Attributes:
        token_rows: rows of :data:`TOKEN_COLUMNS`: per semiring, per token type
            (``by="token"``) or position (``by="position"``).
        branch_rows: rows of :data:`BRANCH_COLUMNS`; ``layer`` is the layer's index.
        layers: the encoder layers' names, by index.
        samples: ``(layer index, group, aggregation)`` → ``(examples, 4)``: each
            example's mean over the group's tokens, branches in
            :data:`~captum_semiring.analysis.branch_flow.TRANSFORMER_BRANCHES` order.
        n_examples: examples aggregated (error rows are left out).
        n_errors: error rows.
        parameter_rows: rows of :data:`PARAMETER_COLUMNS`, per semiring and
            parameter group, in the run's group order; empty for a run without
            parameter sources.
        parameter_samples: ``(semiring, group)`` → ``(examples,)``, each example's
            value.
    """

    token_rows: list[dict[str, Any]]
    branch_rows: list[dict[str, Any]]
    layers: list[str]
    samples: dict[tuple[int, str, str], Tensor] = field(repr=False)
    n_examples: int = 0
    n_errors: int = 0
    parameter_rows: list[dict[str, Any]] = field(default_factory=list)
    parameter_samples: dict[tuple[str, str], Tensor] = field(
        default_factory=dict, repr=False
    )


def _all_tokens(row: Mapping[str, Any]) -> dict[str, list[int]]:
    return {"all": list(range(len(row["tokens"])))}


def _ci_row(samples: list[float], **keys: Any) -> dict[str, Any]:
    """``keys`` with the mean, its 95% interval and the count of ``samples``."""
    mean, low, high = mean_ci(torch.tensor(samples, dtype=torch.float64)[:, None])
    return {
        **keys,
        "mean": float(mean[0]),
        "ci_low": float(low[0]),
        "ci_high": float(high[0]),
        "n": len(samples),
    }


def _parameter_rows(
    table: Any,
) -> tuple[list[dict[str, Any]], dict[tuple[str, str], Tensor]]:
    """Per semiring and parameter group, the mean over the good rows with its
    interval; empty for a run without parameter sources."""
    if "parameter_flow" not in table.column_names:
        return [], {}
    fields = table.schema.field("parameter_flow").type.value_type
    semirings = [f.name for f in fields if f.name not in ("group", "elements")]
    values: dict[tuple[str, str], list[float]] = {}
    elements: dict[str, int] = {}
    good = table.filter(table["error"].is_null())
    for flow in good["parameter_flow"].to_pylist():
        for group in flow:
            elements[group["group"]] = group["elements"]
            for name in semirings:
                values.setdefault((name, group["group"]), []).append(group[name])
    rows = [
        _ci_row(v, semiring=name, group=g, elements=elements[g])
        for (name, g), v in sorted(
            values.items(), key=lambda kv: semirings.index(kv[0][0])
        )
    ]
    samples = {k: torch.tensor(v, dtype=torch.float64) for k, v in values.items()}
    return rows, samples


def aggregate_run(
    run_dir: str | Path, groups: Groups | None = None, min_count: int = 1
) -> RunAggregate:
    """Means with confidence intervals over the examples of a finished run.

    Args:
        run_dir: the run directory.
        groups: the token groups of a row (default: ``all``, every token); the row
            is a dict of the schema's columns but ``top_paths``, ``metadata`` parsed
            from JSON. A group with no tokens in a row leaves that row out of it.
        min_count: leave out token types seen fewer times.

    Returns:
        A :class:`RunAggregate`; its ``parameter_rows`` come from the
        ``parameter_flow`` column, where the run has one (the token groups do not
        apply to them).

    Raises:
        captum_semiring.runs.RunError: the run has not finished.

    Examples::

        >>> import tempfile, torch
        >>> from torch import nn
        >>> from captum_semiring.runs import attribute_dataset
        >>> _ = torch.manual_seed(0)
        >>> model = nn.Sequential(nn.Embedding(9, 4), nn.Flatten(), nn.Linear(8, 2))
        >>> rows = [{"tokens": [1, 2]}, {"tokens": [1, 3]}]
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     _ = attribute_dataset(model, rows, tmp, semirings=["sum"], progress=False)
        ...     agg = aggregate_run(tmp)
        >>> [(r["key"], r["n"]) for r in agg.token_rows if r["by"] == "token"]
        [('1', 2), ('2', 1), ('3', 1)]
    """
    # no aggregate reads the top paths, the largest column: leaving them unread
    # took `aggregate` of 10,000 fig4 rows from 1.3 GB peak memory to 0.9 GB
    table = read_run(run_dir, skip=["top_paths"])
    groups = groups or _all_tokens
    semirings = [
        c.removeprefix("per_token_")
        for c in table.column_names
        if c.startswith("per_token_")
    ]
    by_key: dict[tuple[str, str, Any], list[float]] = {}
    collected: dict[tuple[int, str, str], list[list[float]]] = {}
    layers: list[str] = []
    n, errors = 0, 0
    for row in table.to_pylist():
        if row["error"] is not None:
            errors += 1
            continue
        n += 1
        row["metadata"] = json.loads(row["metadata"] or "{}")
        for name in semirings:
            for pos, (token, value) in enumerate(
                zip(row["tokens"], row[f"per_token_{name}"])
            ):
                by_key.setdefault((name, "token", token), []).append(value)
                by_key.setdefault((name, "position", pos), []).append(value)
        flows: dict[str, dict[str, Any]] = {}
        for f in row["branch_flow"]:
            if f["layer"] not in layers:
                layers.append(f["layer"])
            flows.setdefault(f["layer"], {})[f["branch"]] = f
        for group, positions in groups(row).items():
            if not positions:
                continue
            for layer, per_branch in flows.items():
                li = layers.index(layer)
                for agg, key in _FLOW_FIELDS.items():
                    means = [
                        sum(per_branch[b][key][p] for p in positions) / len(positions)
                        for b in TRANSFORMER_BRANCHES
                    ]
                    collected.setdefault((li, group, agg), []).append(means)
    token_rows = []

    def order(item: Any) -> tuple[Any, ...]:
        name, by, key = item[0]
        return (name, by, key if by == "position" else -1, str(key))

    for (name, by, key), values in sorted(by_key.items(), key=order):
        if by == "token" and len(values) < min_count:
            continue
        token_rows.append(_ci_row(values, semiring=name, by=by, key=key))
    samples = {k: torch.tensor(v, dtype=torch.float64) for k, v in collected.items()}
    branch_rows = []
    group_names = list(dict.fromkeys(g for _, g, _ in samples))
    for agg in AGGREGATIONS:
        for group in group_names:
            for li in range(len(layers)):
                s = samples.get((li, group, agg))
                if s is not None:
                    branch_rows += branch_ci_rows(
                        s, layer=li, token_group=group, aggregation=agg
                    )
    parameter_rows, parameter_samples = _parameter_rows(table)
    return RunAggregate(
        token_rows,
        branch_rows,
        layers,
        samples,
        n,
        errors,
        parameter_rows,
        parameter_samples,
    )


def write_aggregate(agg: RunAggregate, out_dir: str | Path) -> list[Path]:
    """Write ``aggregate_tokens.csv``, ``aggregate_branch_flow.csv`` (when the run
    has branch flow), ``aggregate_parameters.csv`` (when it has parameter sources)
    and the plots ``aggregate_positions.png`` (each semiring's mean by position, with
    its interval), ``aggregate_branch_flow.png`` (per layer and branch, for each
    token group) and ``aggregate_parameters.png`` (per semiring, each parameter
    group's mean with its interval).

    Returns:
        The files written.
    """
    from ..visualization import figure_to_png, plot_branch_summary

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = [write_csv(out / "aggregate_tokens.csv", agg.token_rows, TOKEN_COLUMNS)]
    from matplotlib.figure import Figure

    semirings = list(dict.fromkeys(r["semiring"] for r in agg.token_rows))
    if semirings:
        fig = Figure(figsize=(6.0, 2.6 * len(semirings)), layout="constrained")
        axes = fig.subplots(len(semirings), 1, squeeze=False)[:, 0]
        for ax, name in zip(axes, semirings):
            rows = [
                r
                for r in agg.token_rows
                if r["semiring"] == name and r["by"] == "position"
            ]
            xs = [r["key"] for r in rows]
            ax.plot(xs, [r["mean"] for r in rows], marker="o", ms=3)
            ax.fill_between(
                xs, [r["ci_low"] for r in rows], [r["ci_high"] for r in rows], alpha=0.3
            )
            ax.set_title(f"{name}: mean per position, 95% CI", fontsize=9)
            ax.set_xlabel("position", fontsize=8)
        path = out / "aggregate_positions.png"
        path.write_bytes(figure_to_png(fig))
        files.append(path)
    if agg.branch_rows:
        files.append(
            write_csv(
                out / "aggregate_branch_flow.csv", agg.branch_rows, BRANCH_COLUMNS
            )
        )
        groups = list(dict.fromkeys(r["token_group"] for r in agg.branch_rows))
        fig = Figure(figsize=(4.6 * len(groups), 6.4), layout="constrained")
        axes = fig.subplots(len(AGGREGATIONS), len(groups), squeeze=False)
        for row_axes, aggregation in zip(axes, AGGREGATIONS):
            for ax, group in zip(row_axes, groups):
                bars = [
                    bar_group(
                        f"L{li}",
                        [
                            r
                            for r in agg.branch_rows
                            if r["layer"] == li
                            and r["token_group"] == group
                            and r["aggregation"] == aggregation
                        ],
                    )
                    for li in range(len(agg.layers))
                ]
                plot_branch_summary(bars, title=f"{group}: {aggregation}", ax=ax)
        path = out / "aggregate_branch_flow.png"
        path.write_bytes(figure_to_png(fig))
        files.append(path)
    if agg.parameter_rows:
        files.append(
            write_csv(
                out / "aggregate_parameters.csv", agg.parameter_rows, PARAMETER_COLUMNS
            )
        )
        path = out / "aggregate_parameters.png"
        path.write_bytes(figure_to_png(_parameter_figure(agg.parameter_rows)))
        files.append(path)
    return files


def _parameter_figure(rows: list[dict[str, Any]]) -> Any:
    """One panel per semiring: a horizontal bar per parameter group, its mean over
    the examples, with the 95% interval as the error bar."""
    from matplotlib.figure import Figure

    semirings = list(dict.fromkeys(r["semiring"] for r in rows))
    groups = list(dict.fromkeys(r["group"] for r in rows))
    fig = Figure(
        figsize=(4.2 * len(semirings), 1.0 + 0.22 * len(groups)),
        layout="constrained",
    )
    axes = fig.subplots(1, len(semirings), squeeze=False, sharey=True)[0]
    for ax, name in zip(axes, semirings):
        mine = {r["group"]: r for r in rows if r["semiring"] == name}
        ys = list(range(len(groups)))
        means = [mine[g]["mean"] for g in groups]
        spread = [
            [mine[g]["mean"] - mine[g]["ci_low"] for g in groups],
            [mine[g]["ci_high"] - mine[g]["mean"] for g in groups],
        ]
        ax.barh(ys, means, xerr=spread, capsize=2, color="tab:blue", alpha=0.8)
        ax.set_yticks(ys, groups, fontsize=7)
        ax.set_title(f"{name}: parameter-group flow, mean, 95% CI", fontsize=9)
        ax.axvline(0.0, color="black", lw=0.5)
    # the first group on top, as in the CSV; once, since the panels share the axis
    axes[0].invert_yaxis()
    return fig
