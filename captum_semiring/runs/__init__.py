"""Dataset-scale runs: explain every example of a dataset, on one process or many
under ``torchrun``, resumably, into Parquet; then aggregate over the examples.

- :mod:`.sources`: reading JSONL / CSV / Parquet files, ``datasets`` and
  DataLoaders;
- :mod:`.schema`: the Parquet schema of the rows, documented;
- :mod:`.runner`: :func:`attribute_dataset`, sharding, resuming, writing;
- :mod:`.aggregate`: means with confidence intervals over the examples.
"""

from .runner import (
    DistributedContext,
    RunError,
    RunSummary,
    attribute_dataset,
    read_run,
)
from .schema import SCHEMA_VERSION, error_row, result_row, schema
from .sources import Columns, SourceError, SourceRow, read_rows

__all__ = [
    "attribute_dataset",
    "read_run",
    "RunSummary",
    "RunError",
    "DistributedContext",
    "Columns",
    "SourceRow",
    "SourceError",
    "read_rows",
    "SCHEMA_VERSION",
    "schema",
    "result_row",
    "error_row",
]
