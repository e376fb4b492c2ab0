"""Reading a dataset for :func:`~captum_semiring.runs.attribute_dataset`: one
:class:`SourceRow` per example, in a fixed order (the order shards are cut from).

Accepted inputs: a path to a JSONL, CSV or Parquet file; a Hugging Face
``datasets.Dataset`` (or anything with ``column_names`` that iterates over dict
rows); a ``torch.utils.data.DataLoader`` over a dataset of dict rows (its own
sampler and batch size are not used: the runner shards and batches by row
position); or a sequence of dicts.

A row has a text column (tokenized with the model's tokenizer) or a token column
(token ids, as a list or a string of integers), and optionally a target column: a
class index, or a masked-word pair ``"correct,wrong"`` (or a two-item list) for a
masked LM; a missing target explains the correct class where the model knows it,
else the predicted class. An id column is optional (default: the row position).
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "SourceError",
    "SourceRow",
    "Columns",
    "read_rows",
    "parse_target",
    "parse_ids",
]


class SourceError(ValueError):
    """The dataset cannot be read as asked (a missing file or column, duplicate
    ids). The message names the argument."""


@dataclass(frozen=True)
class Columns:
    """Which columns of a dataset hold what.

    Attributes:
        text: the text column (tokenized with the model's tokenizer).
        tokens: the token-id column, used where a row has no text.
        target: the target column (class index or ``"correct,wrong"``); may be absent.
        id: the id column (default: the row position as a string).
        keep: further columns copied into each output row's ``metadata`` (JSON).

    Examples::

        >>> Columns(text="sentence", target="label").text
        'sentence'
    """

    text: str = "text"
    tokens: str = "tokens"
    target: str = "target"
    id: str | None = None
    keep: tuple[str, ...] = ()


@dataclass
class SourceRow:
    """One example as read.

    Attributes:
        index: its position in the dataset (shards and the output order use it).
        id: its id, unique in the dataset.
        text: the text, or ``None`` when the row gives token ids.
        token_ids: the token ids, or ``None`` when the row gives text.
        target: the target as given (parsed per row by :func:`parse_target`, so
            that a bad one becomes an error row), or ``None``.
        metadata: the kept columns.
    """

    index: int
    id: str
    text: str | None
    token_ids: Any
    target: Any
    metadata: dict[str, Any] = field(default_factory=dict)


def _file_rows(path: Path) -> list[dict[str, Any]]:
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json", ".ndjson"):
        rows = []
        with path.open(encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError as err:
                        raise SourceError(
                            f"data {str(path)!r} line {n} is not JSON: {err.msg}"
                        ) from None
        return rows
    if suffix == ".csv":
        with path.open(encoding="utf-8", newline="") as f:
            return [dict(r) for r in csv.DictReader(f)]
    if suffix in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        return list(pq.read_table(path).to_pylist())
    raise SourceError(
        f"data {str(path)!r}: unknown file type {suffix!r}; give .jsonl, .csv or .parquet"
    )


def _rows(data: Any) -> Sequence[Mapping[str, Any]]:
    if isinstance(data, (str, os.PathLike)):
        path = Path(data).expanduser()
        if not path.is_file():
            raise SourceError(f"data {str(path)!r} is not a file")
        return _file_rows(path)
    from torch.utils.data import DataLoader

    if isinstance(data, DataLoader):
        data = data.dataset
    if hasattr(data, "column_names") or hasattr(data, "__iter__"):
        if hasattr(data, "__len__") and hasattr(data, "__getitem__"):
            rows = [data[i] for i in range(len(data))]
        else:
            rows = list(data)
        bad = next((r for r in rows if not isinstance(r, Mapping)), None)
        if bad is not None:
            raise SourceError(
                f"data rows must be dicts of columns, got {type(bad).__name__}"
            )
        return rows
    raise SourceError(
        f"data must be a file path, a datasets.Dataset, a DataLoader or a sequence "
        f"of dicts, got {type(data).__name__}"
    )


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, str) and not value.strip())


def read_rows(data: Any, columns: Columns = Columns()) -> list[SourceRow]:
    """The examples of ``data``, in order.

    Args:
        data: see the module docstring.
        columns: the column names.

    Returns:
        One :class:`SourceRow` per row.

    Raises:
        SourceError: an unreadable file, no rows, a row without the text or token
            column, a missing kept column, or duplicate ids.

    Examples::

        >>> rows = read_rows([{"text": "a b", "target": 1}, {"tokens": [3, 4]}])
        >>> [(r.id, r.text, r.token_ids, r.target) for r in rows]
        [('0', 'a b', None, 1), ('1', None, [3, 4], None)]
    """
    raw = _rows(data)
    if not raw:
        raise SourceError("data has no rows")
    out: list[SourceRow] = []
    seen: dict[str, int] = {}
    for i, row in enumerate(raw):
        text = row.get(columns.text)
        tokens = row.get(columns.tokens)
        if not _present(text) and not _present(tokens):
            raise SourceError(
                f"row {i} has neither a text column {columns.text!r} nor a tokens "
                f"column {columns.tokens!r}; its columns: {', '.join(map(str, row))}"
            )
        if columns.id is not None:
            if columns.id not in row:
                raise SourceError(f"row {i} has no id column {columns.id!r}")
            ident = str(row[columns.id])
        else:
            ident = str(i)
        if ident in seen:
            raise SourceError(
                f"id column {columns.id!r} has the value {ident!r} twice (rows "
                f"{seen[ident]} and {i}); ids must be unique"
            )
        seen[ident] = i
        missing = [k for k in columns.keep if k not in row]
        if missing:
            raise SourceError(f"row {i} has no kept column {missing[0]!r}")
        out.append(
            SourceRow(
                index=i,
                id=ident,
                text=str(text) if _present(text) else None,
                token_ids=None if _present(text) else tokens,
                target=row.get(columns.target),
                metadata={k: row[k] for k in columns.keep},
            )
        )
    return out


def parse_ids(value: Any) -> list[int]:
    """Token ids from a list of integers or a string of integers.

    Raises:
        ValueError: anything else.

    Examples::

        >>> parse_ids("3 7, 9"), parse_ids([1, 2])
        ([3, 7, 9], [1, 2])
    """
    if isinstance(value, str):
        value = [p for p in re.split(r"[\s,]+", value.strip()) if p]
    try:
        ids = [int(v) for v in value]
    except (TypeError, ValueError):
        raise ValueError(f"token ids must be integers, got {value!r}") from None
    if not ids:
        raise ValueError("the token list is empty")
    return ids


def parse_target(value: Any) -> int | tuple[str, str] | None:
    """A target as given: ``None``, a class index (an integer or a string of
    digits) or a ``(correct, wrong)`` pair (``"correct,wrong"`` or two strings).

    Raises:
        ValueError: anything else.

    Examples::

        >>> parse_target(2), parse_target("2"), parse_target("are,is"), parse_target(None)
        (2, 2, ('are', 'is'), None)
    """
    if value is None or (isinstance(value, float) and value != value):
        return None
    if isinstance(value, bool):
        raise ValueError(f"target {value!r} is neither a class index nor a pair")
    if isinstance(value, int) or (
        hasattr(value, "__index__") and not isinstance(value, str)
    ):
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"-?\d+", text):
            return int(text)
        parts = [p.strip() for p in text.split(",")]
    elif isinstance(value, Iterable):
        parts = [str(p).strip() for p in value]
    else:
        parts = []
    if len(parts) == 2 and all(parts):
        return parts[0], parts[1]
    raise ValueError(
        f"target {value!r} is neither a class index nor a 'correct,wrong' pair"
    )
