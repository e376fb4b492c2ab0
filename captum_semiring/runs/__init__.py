"""Dataset-scale runs: explain every example of a dataset, on one process or many
under ``torchrun``, resumably, into Parquet; then aggregate over the examples.

- :mod:`.sources`: reading JSONL / CSV / Parquet files, ``datasets`` and
  DataLoaders;
- :mod:`.schema`: the Parquet schema of the rows, documented;
- :mod:`.runner`: :func:`attribute_dataset`, sharding, resuming, writing;
- :mod:`.params`: parameters as sources, their flow per parameter group;
- :mod:`.aggregate`: means with confidence intervals over the examples.
"""

from .params import BY_MODULE, ParameterGroup, parameter_groups
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
    "BY_MODULE",
    "ParameterGroup",
    "parameter_groups",
    "SCHEMA_VERSION",
    "schema",
    "result_row",
    "error_row",
]
