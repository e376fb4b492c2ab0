"""Output helpers shared by the command line, the reports and the reproductions:
strict JSON, CSV with fixed columns, and module names.

Examples::

    >>> from captum_semiring.analysis.io import json_ready
    >>> json_ready({"a": (1.0, float("nan")), 2: float("inf")})
    {'a': [1.0, None], '2': None}
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["json_ready", "write_json", "write_csv", "module_name"]


def json_ready(x: Any) -> Any:
    """``x`` with non-finite floats as None and tuples as lists, for strict JSON."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, Mapping):
        return {str(k): json_ready(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_ready(v) for v in x]
    return x


def write_json(path: Path, data: Mapping[str, Any]) -> Path:
    """Write ``data`` as indented strict JSON."""
    path.write_text(
        json.dumps(json_ready(data), indent=1, allow_nan=False), encoding="utf-8"
    )
    return path


def write_csv(
    path: Path, rows: Sequence[Mapping[str, Any]], columns: Sequence[str]
) -> Path:
    """Write ``rows`` with exactly ``columns``, in that order."""
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(columns))
        writer.writeheader()
        for row in rows:
            writer.writerow({c: row[c] for c in columns})
    return path


def module_name(model: Any, module: Any) -> str:
    """The dotted path of ``module`` inside ``model`` (its class name if absent)."""
    for name, m in model.named_modules():
        if m is module:
            return str(name)
    return type(module).__name__
