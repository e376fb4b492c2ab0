"""The Parquet schema of a dataset run: one row per example.

``RUN_DIR/examples.parquet`` holds every example of the dataset exactly once, sorted
by ``index``; ``pandas.read_parquet`` and ``datasets.Dataset.from_parquet`` read it.
While a run goes, each rank commits its rows in chunks, ``RUN_DIR/chunks/``, of the
same schema. The columns (``NAME`` is each requested semiring, see
:data:`~captum_semiring.analysis.explain.PER_TOKEN_SEMIRINGS`):

=========================  ==================================================================
column                     type and meaning
=========================  ==================================================================
``index``                  int64: the example's position in the dataset
``id``                     string: its id (the id column, else ``index``)
``error``                  string: why the example failed (too long, an unknown target
                           token, a non-finite output, ...); null for a good row. An error
                           row has only ``index``, ``id``, ``error``, ``target`` and
                           ``metadata``.
``tokens``                 list<string>: the tokens
``token_ids``              list<int64>: their ids
``label``                  int64: the correct class, where the model knows it
``target``                 string: the target as given (``"3"``, ``"are,is"``), or null
``target_description``     string: what is explained, e.g. ``logit of class 1 (given)``
``output``                 float64: the explained scalar (the target's value)
``prediction``             string: the predicted class, or the word of a pair with the
                           larger logit
``most_important_token``   int64: the token the top paths start at
``per_token_NAME``         list<float64>: per token, the semiring ⊕ over the attribution
                           layer's hidden units (eq. 3), finalized; ``sum`` is the gradient
``top_paths``              list<struct>: the top paths from ``most_important_token``, best
                           first: ``rank``, ``value`` (the product of the hop weights),
                           ``token_index``, ``token``, ``element`` (the start element
                           without the batch axis) and ``hops``, a list<struct> of ``op``
                           (ATen overload), ``module`` (dotted path), ``branch`` (query, key,
                           value, skip (attention), MLP, ... or null), ``head`` (of a
                           query/key/value hop, or null), ``index`` (the element of the
                           op's output without its first axis, which is the batch or, on a
                           ``(batch·tokens, ...)`` view, the flattened row) and ``weight``
``branch_flow``            list<struct>: per encoder layer and branch (skip, query, key,
                           value): ``layer``, ``branch``, ``top_branch`` (per token: its top
                           path's value if it enters this branch, else 0: the paper's
                           aggregation) and ``branch_max`` (per token, the branch's ⊕)
``parameter_flow``         list<struct>: only in runs whose sources include parameters
                           (``parameters=``, ``--parameters``), per parameter group in the
                           order asked: ``group`` (the pattern, or the module path of a
                           ``by-module`` group), ``elements`` (int64: its scalar count)
                           and, per requested semiring ``NAME``, a float64 field ``NAME``:
                           the semiring ⊕ over all the group's elements (eq. 3),
                           finalized; for ``sum`` the sum of the output's gradient over
                           the group. Computed one example at a time (see
                           :mod:`captum_semiring.runs.params`)
``metadata``               string: the kept dataset columns, as JSON
=========================  ==================================================================

The file's key-value metadata ``captum_semiring`` holds the run's settings as JSON.

Batching pads inputs on the right; the attention mask hides the padding, which
changes no value except PathCount (padding adds paths of weight 0), so runs that ask
for ``count`` batch inputs of one length only. Values from batches of different sizes
or widths, or from another number of processes, agree to float rounding (about 1e-6
relative; different matrix shapes sum in a different order), not bit for bit.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ..analysis.explain import ExplainResult
from .sources import SourceRow

__all__ = ["SCHEMA_VERSION", "FIXED_COLUMNS", "schema", "result_row", "error_row"]

SCHEMA_VERSION = 1

#: The columns every run has, in order; ``per_token_NAME`` columns follow
#: ``most_important_token``, and ``parameter_flow`` (runs with parameter sources)
#: follows ``branch_flow``.
FIXED_COLUMNS = (
    "index",
    "id",
    "error",
    "tokens",
    "token_ids",
    "label",
    "target",
    "target_description",
    "output",
    "prediction",
    "most_important_token",
    "top_paths",
    "branch_flow",
    "metadata",
)


def schema(
    semirings: Sequence[str],
    settings: dict[str, Any] | None = None,
    parameter_flow: bool = False,
) -> Any:
    """The ``pyarrow.Schema`` of a run that computes ``semirings`` per token.

    Args:
        semirings: the per-token semiring names.
        settings: the run's settings, stored as the schema's metadata.
        parameter_flow: add the ``parameter_flow`` column (parameters are sources),
            with one field per semiring.

    Returns:
        The schema.

    Examples::

        >>> schema(["max", "entropy"]).names[10:13]
        ['most_important_token', 'per_token_max', 'per_token_entropy']
        >>> schema(["sum"], parameter_flow=True).field("parameter_flow").type
        ListType(list<item: struct<group: string, elements: int64, sum: double>>)
    """
    import pyarrow as pa

    floats = pa.list_(pa.float64())
    ints = pa.list_(pa.int64())
    hop = pa.struct(
        [
            ("op", pa.string()),
            ("module", pa.string()),
            ("branch", pa.string()),
            ("head", pa.int64()),
            ("index", ints),
            ("weight", pa.float64()),
        ]
    )
    path = pa.struct(
        [
            ("rank", pa.int64()),
            ("value", pa.float64()),
            ("token_index", pa.int64()),
            ("token", pa.string()),
            ("element", ints),
            ("hops", pa.list_(hop)),
        ]
    )
    flow = pa.struct(
        [
            ("layer", pa.string()),
            ("branch", pa.string()),
            ("top_branch", floats),
            ("branch_max", floats),
        ]
    )
    fields = [
        ("index", pa.int64()),
        ("id", pa.string()),
        ("error", pa.string()),
        ("tokens", pa.list_(pa.string())),
        ("token_ids", ints),
        ("label", pa.int64()),
        ("target", pa.string()),
        ("target_description", pa.string()),
        ("output", pa.float64()),
        ("prediction", pa.string()),
        ("most_important_token", pa.int64()),
        *[(f"per_token_{name}", floats) for name in semirings],
        ("top_paths", pa.list_(path)),
        ("branch_flow", pa.list_(flow)),
        ("metadata", pa.string()),
    ]
    if parameter_flow:
        group = pa.struct(
            [
                ("group", pa.string()),
                ("elements", pa.int64()),
                *[(name, pa.float64()) for name in semirings],
            ]
        )
        fields.insert(-1, ("parameter_flow", pa.list_(group)))
    meta = {"captum_semiring": json.dumps(settings or {}, sort_keys=True)}
    return pa.schema(fields, metadata=meta)


def _given(target: Any) -> str | None:
    if target is None:
        return None
    if isinstance(target, (list, tuple)):
        return ",".join(str(t) for t in target)
    return str(target)


def _hops(path: Any) -> list[dict[str, Any]]:
    """The path's hops, each with the branch and head of the module run
    (:class:`~captum_semiring.analysis.explain.PathStep`) it belongs to."""
    hops = []
    steps = iter(path.steps)
    step = None
    previous = None
    for hop in path.path.hops:
        # steps are the runs of consecutive hops inside one module
        if step is None or hop.module != previous:
            step = next(steps)
        previous = hop.module
        hops.append(
            {
                "op": hop.op,
                "module": hop.module,
                "branch": step.branch,
                "head": step.head,
                "index": [int(i) for i in hop.index[1:]],
                "weight": float(hop.weight),
            }
        )
    return hops


def result_row(
    row: SourceRow,
    result: ExplainResult,
    parameter_flow: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The output row of one explained example.

    Args:
        row: the example as read.
        result: its :class:`~captum_semiring.analysis.explain.ExplainResult` (from
            :func:`~captum_semiring.analysis.explain.explain_batch`).
        parameter_flow: its per-group parameter flow (from
            :func:`~captum_semiring.runs.params.parameter_flow`), in a run with
            parameter sources.

    Returns:
        A dict of the schema's columns.
    """
    flows = [
        {
            "layer": f.name,
            "branch": branch,
            "top_branch": f.top_branch[branch],
            "branch_max": f.branch_max[branch],
        }
        for f in result.branch_flow
        for branch in f.top_branch
    ]
    paths = [
        {
            "rank": p.rank,
            "value": p.value,
            "token_index": p.token_index,
            "token": p.token,
            "element": list(p.element),
            "hops": _hops(p),
        }
        for p in result.top_paths
    ]
    out: dict[str, Any] = {
        "index": row.index,
        "id": row.id,
        "error": None,
        "tokens": list(result.tokens),
        "token_ids": list(result.ids),
        "label": result.label,
        "target": _given(row.target),
        "target_description": result.target.description,
        "output": result.output,
        "prediction": None if result.prediction is None else str(result.prediction),
        "most_important_token": result.most_important_token,
        "top_paths": paths,
        "branch_flow": flows,
        "metadata": json.dumps(row.metadata, sort_keys=True, default=str),
    }
    for name, values in result.per_token.items():
        out[f"per_token_{name}"] = list(values)
    if parameter_flow is not None:
        out["parameter_flow"] = parameter_flow
    return out


def error_row(row: SourceRow, message: str) -> dict[str, Any]:
    """The output row of an example that failed, with ``message`` as its error.

    Examples::

        >>> error_row(SourceRow(3, "c", "x", None, "1"), "too long")["error"]
        'too long'
    """
    return {
        "index": row.index,
        "id": row.id,
        "error": message,
        "target": _given(row.target),
        "metadata": json.dumps(row.metadata, sort_keys=True, default=str),
    }
