"""Dataset-scale runs: :func:`attribute_dataset` explains every example of a dataset,
on one process or on many under ``torchrun``, and keeps the results in Parquet.

How a run is laid out (``RUN_DIR``):

- ``run.json``: the settings; a rerun with other settings is refused.
- ``chunks/r{rank}-{seq}.parquet``: committed results. A rank writes a chunk to a
  temporary name, fsyncs it and renames it, so a chunk is either whole or absent.
- ``progress/rank{rank}.json``: each rank's pid and count, for the progress bar.
- ``examples.parquet`` and ``summary.json``: the merged result (every example exactly
  once, sorted by ``index``) and the run's counts, written by rank 0 at the end.

Rank ``r`` of ``N`` takes the examples whose ``index % N == r``. On start every chunk
is opened; one that does not read back whole (truncated, corrupt, another schema) is
deleted, and the examples it held are done again, as are all examples no chunk
holds. So a run killed at any point resumes with the same command and ends with
each example written exactly once.

Under ``torchrun`` (``WORLD_SIZE`` > 1) the ranks join a ``torch.distributed``
process group (gloo on CPU, nccl on GPUs), meet at barriers before and after the
work, and each pins its thread count to its share of the machine's cores.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..analysis.explain import (
    PER_TOKEN_SEMIRINGS,
    Example,
    ExplainError,
    Target,
    explain_batch,
    prepare_target,
    text_example,
    token_example,
)
from ..analysis.models import LoadedModel, first_line, from_module
from .params import ParameterGroup, parameter_flow, parameter_groups
from .schema import SCHEMA_VERSION, error_row, result_row, schema
from .sources import Columns, SourceRow, parse_ids, parse_target, read_rows

__all__ = [
    "RunError",
    "RunSummary",
    "DistributedContext",
    "attribute_dataset",
    "read_run",
]

EXAMPLES = "examples.parquet"
SETTINGS = "run.json"
SUMMARY = "summary.json"


class RunError(ValueError):
    """A run cannot go on as asked (another run's settings in the directory, a bad
    argument). The message names the argument."""


@dataclass
class DistributedContext:
    """This process's place in the run.

    Attributes:
        rank: its rank.
        world: the number of processes.
        local_world: the processes on this machine (they share its cores).
        joined: whether this call started the process group (and ends it).

    Examples::

        >>> DistributedContext.from_env({}).world
        1
    """

    rank: int = 0
    world: int = 1
    local_world: int = 1
    joined: bool = False

    @classmethod
    def from_env(cls, env: Any = None) -> DistributedContext:
        """The context ``torchrun`` describes in the environment (``RANK``,
        ``WORLD_SIZE``, ``LOCAL_WORLD_SIZE``); one process without them."""
        env = os.environ if env is None else env
        world = int(env.get("WORLD_SIZE", 1))
        return cls(
            rank=int(env.get("RANK", 0)),
            world=world,
            local_world=int(env.get("LOCAL_WORLD_SIZE", world)),
        )

    def barrier(self) -> None:
        """Wait for every rank (nothing to wait for alone)."""
        if self.world > 1:
            torch.distributed.barrier()


@dataclass
class RunSummary:
    """What a run did.

    Attributes:
        run_dir: the run directory.
        examples: the merged result (``None`` on ranks other than 0).
        n_examples: examples in the dataset.
        n_errors: error rows in the result (rank 0).
        n_done: examples this rank explained in this call (the rest were done
            before, or are other ranks').
        seconds: this call's wall time on this rank.
        examples_per_second: examples explained per second in this call, over all
            ranks (rank 0; this rank's own elsewhere).
        world: the number of processes.
    """

    run_dir: Path
    examples: Path | None
    n_examples: int
    n_errors: int
    n_done: int
    seconds: float
    examples_per_second: float
    world: int


@dataclass
class _Settings:
    model: str
    semirings: list[str]
    top_k: int
    branch_flow: bool
    decompose: list[str]
    columns: dict[str, Any]
    n_examples: int
    ig_steps: int
    schema_version: int = SCHEMA_VERSION
    extra: dict[str, Any] = field(default_factory=dict)
    # None, not [], without parameter sources: run.json files from before this
    # setting existed lack it, and read as None, so those runs still resume
    parameters: list[str] | None = None


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _join(ctx: DistributedContext, device: str) -> DistributedContext:
    if ctx.world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        # ranks wait for each other at the end: allow for uneven shards
        torch.distributed.init_process_group(
            backend=backend, timeout=datetime.timedelta(hours=12)
        )
        ctx.joined = True
    return ctx


def _write_atomic(path: Path, write: Any) -> None:
    """Write through ``write(tmp_path)``, fsync, and rename into place."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    write(tmp)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    _write_atomic(path, lambda p: p.write_text(json.dumps(data, indent=1, default=str)))


def _read_chunk(path: Path, expected: Any) -> Any:
    """The chunk's table, or ``None`` when it does not read back whole."""
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception:
        return None
    if not table.schema.equals(expected, check_metadata=False):
        return None
    return table


def read_run(run_dir: str | os.PathLike[str], skip: Sequence[str] = ()) -> Any:
    """The merged result of a finished run as a ``pyarrow.Table``.

    Args:
        run_dir: the run directory.
        skip: columns to leave unread (``top_paths`` is most of a row).

    Raises:
        RunError: the run has not finished (no ``examples.parquet``).

    Examples::

        >>> read_run("no-such-run")
        Traceback (most recent call last):
        ...
        captum_semiring.runs.runner.RunError: run_dir 'no-such-run' has no examples.parquet: the run has not finished
    """
    import pyarrow.parquet as pq

    path = Path(run_dir) / EXAMPLES
    if not path.is_file():
        raise RunError(
            f"run_dir {str(run_dir)!r} has no {EXAMPLES}: the run has not finished"
        )
    if not skip:
        return pq.read_table(path)
    names = pq.read_schema(path).names
    return pq.read_table(path, columns=[c for c in names if c not in skip])


def _prepare(
    model: LoadedModel, row: SourceRow
) -> tuple[Example, Target, int | str] | str:
    """The example, target and prediction of a row, or the error message."""
    try:
        target = parse_target(row.target)
        if row.text is not None:
            example = text_example(model, row.text, what=f"row {row.index}")
        else:
            example = token_example(
                model, parse_ids(row.token_ids), what=f"row {row.index}"
            )
        kwargs: dict[str, Any] = (
            {"target_pair": target}
            if isinstance(target, tuple)
            else {"target_class": target}
        )
        prepared = prepare_target(model, example, **kwargs)
    except Exception as err:
        return f"{type(err).__name__}: {first_line(err)}"
    return example, *prepared


def _batches(
    items: list[tuple[SourceRow, Example, Target, int | str]],
    batch_size: int,
    same_length: bool,
) -> Iterator[list[tuple[SourceRow, Example, Target, int | str]]]:
    """Batches of one target kind (and, with ``same_length``, one length), shortest
    inputs first, so that little padding is needed."""
    groups: dict[tuple[str, int], list[Any]] = {}
    for item in sorted(items, key=lambda it: (it[1].ids.shape[1], it[0].index)):
        key = (item[2].kind, item[1].ids.shape[1] if same_length else 0)
        groups.setdefault(key, []).append(item)
    for key in sorted(groups):
        group = groups[key]
        for start in range(0, len(group), batch_size):
            yield group[start : start + batch_size]


class _Run:
    """One rank's work in a run directory."""

    def __init__(
        self,
        run_dir: Path,
        ctx: DistributedContext,
        settings: _Settings,
        chunk_size: int,
    ) -> None:
        self.dir = run_dir
        self.ctx = ctx
        self.settings = settings
        self.chunk_size = chunk_size
        self.schema = schema(
            settings.semirings,
            asdict(settings),
            parameter_flow=settings.parameters is not None,
        )
        self.chunks = run_dir / "chunks"
        self.progress = run_dir / "progress"
        self.seq = 0
        self.pending: list[dict[str, Any]] = []
        self.done_here = 0

    # ---------------------------------------------------------------- start
    def setup(self) -> None:
        """Rank 0 checks the settings and drops broken chunks; then all meet."""
        if self.ctx.rank == 0:
            self.dir.mkdir(parents=True, exist_ok=True)
            self.chunks.mkdir(exist_ok=True)
            self.progress.mkdir(exist_ok=True)
            path = self.dir / SETTINGS
            mine = json.loads(json.dumps(asdict(self.settings)))  # as run.json has it
            if path.is_file():
                theirs = json.loads(path.read_text())
                changed = sorted(k for k in mine if theirs.get(k) != mine[k])
                if changed:
                    raise RunError(
                        f"out_dir {str(self.dir)!r} holds a run with other settings "
                        f"({', '.join(changed)}); use another out_dir or the same settings"
                    )
            else:
                _write_json(path, mine)
            for stale in self.chunks.glob(".*.tmp*"):
                stale.unlink()  # a write that a kill interrupted
            for chunk in sorted(self.chunks.glob("*.parquet")):
                if _read_chunk(chunk, self.schema) is None:
                    chunk.unlink()  # truncated or corrupt: its examples are redone
            for old in self.progress.glob("*.json"):
                old.unlink()

    def done(self) -> set[int]:
        """The indices some committed chunk (or the merged result) holds."""
        import pyarrow.parquet as pq

        final = self.dir / EXAMPLES
        if final.is_file():
            return set(pq.read_table(final, columns=["index"])["index"].to_pylist())
        indices: set[int] = set()
        for chunk in self.chunks.glob("*.parquet"):
            indices.update(pq.read_table(chunk, columns=["index"])["index"].to_pylist())
            name = chunk.stem.split("-")
            if name[0] == f"r{self.ctx.rank}":
                self.seq = max(self.seq, int(name[1]) + 1)
        return indices

    # ---------------------------------------------------------------- write
    def add(self, rows: list[dict[str, Any]]) -> None:
        self.pending += rows
        while len(self.pending) >= self.chunk_size:
            self.commit(self.pending[: self.chunk_size])
            self.pending = self.pending[self.chunk_size :]

    def commit(self, rows: list[dict[str, Any]]) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not rows:
            return
        table = pa.Table.from_pylist(rows, schema=self.schema)
        path = self.chunks / f"r{self.ctx.rank}-{self.seq:06d}.parquet"
        _write_atomic(path, lambda p: pq.write_table(table, p))
        self.seq += 1
        self.done_here += len(rows)
        self.report(finished=False)

    def report(self, finished: bool) -> None:
        _write_json(
            self.progress / f"rank{self.ctx.rank}.json",
            {"pid": os.getpid(), "done": self.done_here, "finished": finished},
        )

    def others(self) -> tuple[int, bool]:
        """Rows committed by all ranks in this call, and whether all have finished."""
        done, finished = 0, 0
        for path in self.progress.glob("rank*.json"):
            try:
                state = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            done += int(state["done"])
            finished += bool(state["finished"])
        return done, finished == self.ctx.world

    # ---------------------------------------------------------------- merge
    def merge(self, n: int) -> tuple[Path, int]:
        """Rank 0: every chunk into ``examples.parquet``, each index exactly once."""
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        final = self.dir / EXAMPLES
        if final.is_file() and not any(self.chunks.glob("*.parquet")):
            table = pq.read_table(final)
        else:
            tables = [
                t
                for c in sorted(self.chunks.glob("*.parquet"))
                if (t := _read_chunk(c, self.schema)) is not None
            ]
            if final.is_file():
                tables.append(pq.read_table(final).cast(self.schema))
            table = pa.concat_tables(tables) if tables else self.schema.empty_table()
            order = pc.sort_indices(table, [("index", "ascending")])
            table = table.take(order)
            indices = table["index"].to_pylist()
            keep = [i == 0 or indices[i] != indices[i - 1] for i in range(len(indices))]
            table = table.filter(pa.array(keep))  # a chunk committed twice by a rerun
            got = table["index"].to_pylist()
            if got != list(range(n)):
                missing = sorted(set(range(n)) - set(got))
                raise RunError(
                    f"run_dir {str(self.dir)!r} lacks {len(missing)} examples after "
                    f"the run (first: {missing[:5]}); rerun the same command"
                )
            _write_atomic(
                final,
                lambda p: pq.write_table(table, p, row_group_size=self.chunk_size),
            )
        for chunk in self.chunks.glob("*.parquet"):
            chunk.unlink()
        errors = int(table["error"].is_valid().to_numpy(zero_copy_only=False).sum())
        return final, errors


def _resolve_model(model: Any, layer: str | None) -> LoadedModel:
    if isinstance(model, LoadedModel):
        return model
    if isinstance(model, torch.nn.Module):
        return from_module(model, layer=layer)
    if isinstance(model, (str, os.PathLike)):
        from ..analysis.models import load_hf_model

        return load_hf_model(Path(model), layer=layer)
    raise RunError(
        f"model must be a LoadedModel, an nn.Module or a Hugging Face directory, "
        f"got {type(model).__name__}"
    )


def attribute_dataset(
    model: Any,
    data: Any,
    out_dir: str | os.PathLike[str],
    *,
    semirings: Sequence[str] = ("sum", "max", "entropy", "logsum"),
    top_k: int = 3,
    branch_flow: bool = True,
    columns: Columns | None = None,
    batch_size: int = 16,
    chunk_size: int = 64,
    decompose: Sequence[str] = (),
    layer: str | None = None,
    ig_steps: int = 0,
    threads: int | None = None,
    device: str = "cpu",
    progress: bool = True,
    model_name: str | None = None,
    parameters: Sequence[str] | None = None,
) -> RunSummary:
    """Explain every example of a dataset and write one Parquet row per example.

    Each batch is explained by :func:`~captum_semiring.analysis.explain.explain_batch`
    (one recorded forward pass, one sweep per semiring): per token, each semiring's
    value on the attribution layer; the ``top_k`` best paths from the most important
    token, hop by hop; and the max-product branch flow at each encoder layer's input.
    With ``parameters``, the model's parameters are sources too: per example and per
    parameter group, each semiring's ⊕ over the group's elements (eq. 3;
    :mod:`captum_semiring.runs.params`). Parameters are shared by a batch's examples,
    so that flow is recorded and swept one example at a time (a second forward pass
    per example), whatever ``batch_size``. The columns are documented in
    :mod:`captum_semiring.runs.schema`. An example that fails (too long, an unknown
    target token, a non-finite output, ...) becomes an error row with its message;
    the run goes on.

    Launched by ``torchrun --nproc-per-node N``, the same call shards the dataset over
    the ranks (see :mod:`captum_semiring.runs.runner`); a killed run resumes with the
    same call.

    Args:
        model: a :class:`~captum_semiring.analysis.models.LoadedModel`, an
            ``nn.Module`` taking token ids, or a Hugging Face model directory.
        data: a JSONL / CSV / Parquet path, a ``datasets.Dataset``, a ``DataLoader``
            or a sequence of dict rows (see :mod:`captum_semiring.runs.sources`).
        out_dir: the run directory (created; a rerun resumes it).
        semirings: the per-token semirings, names of
            :data:`~captum_semiring.analysis.explain.PER_TOKEN_SEMIRINGS`.
        top_k: the top paths per example (``TopK(k)``; ``1`` is the max-product path).
        branch_flow: compute the branch flow at each encoder layer's input.
        columns: the dataset's column names (default :class:`Columns`).
        batch_size: examples per recorded forward pass.
        chunk_size: rows per committed chunk (and per row group of the result).
        decompose: composite primitives recorded as their finer ops.
        layer: the attribution layer, for an ``nn.Module`` or a directory (default:
            the embeddings).
        ig_steps: Integrated Gradients steps per example (0: none; IG is not stored
            in the rows, only timed).
        threads: torch threads of this process (default: the machine's cores divided
            by the processes on it).
        device: ``"cpu"``, or ``"cuda"`` (each rank uses ``cuda:LOCAL_RANK``, nccl).
        progress: show a tqdm bar on rank 0 (examples/s and ETA over all ranks).
        model_name: how ``run.json`` names the model (default: its description).
        parameters: parameter groups to take as sources, each a pattern over
            ``model.named_parameters()`` names and the module paths above them
            (``fnmatch``; ``"bert.encoder.layer.*.attention"``, ``"*.LayerNorm"``) or
            ``"by-module"`` for one group per module; see
            :func:`~captum_semiring.runs.params.parameter_groups`. ``None``: none.

    Returns:
        A :class:`RunSummary`.

    Raises:
        RunError: a bad argument, or ``out_dir`` holds a run with other settings.
        captum_semiring.runs.sources.SourceError: the dataset cannot be read.

    Examples::

        >>> import tempfile, torch
        >>> from torch import nn
        >>> _ = torch.manual_seed(0)
        >>> model = nn.Sequential(nn.Embedding(9, 4), nn.Flatten(), nn.Linear(12, 2))
        >>> rows = [{"tokens": [1, 2, 3], "target": 1}, {"tokens": [4, 5, 99]}]
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     summary = attribute_dataset(model, rows, tmp, progress=False)
        ...     table = read_run(tmp)
        >>> summary.n_examples, summary.n_errors, table["error"][1].as_py()[:12]
        (2, 1, 'ExplainError')
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     _ = attribute_dataset(model, rows[:1], tmp, semirings=["sum"],
        ...                           parameters=["2"], progress=False)
        ...     flow = read_run(tmp)["parameter_flow"][0].as_py()
        >>> [(g["group"], g["elements"]) for g in flow]
        [('2', 26)]
    """
    start = time.perf_counter()
    unknown = [s for s in semirings if s not in PER_TOKEN_SEMIRINGS]
    if unknown:
        raise RunError(
            f"unknown semiring {unknown[0]!r} in semirings; use any of "
            f"{', '.join(PER_TOKEN_SEMIRINGS)}"
        )
    for name, value, low in (
        ("top_k", top_k, 1),
        ("batch_size", batch_size, 1),
        ("chunk_size", chunk_size, 1),
        ("ig_steps", ig_steps, 0),
    ):
        if value < low:
            raise RunError(f"{name} must be at least {low}, got {value}")
    columns = columns or Columns()
    ctx = _join(DistributedContext.from_env(), device)
    old_threads = torch.get_num_threads()
    try:
        torch.set_num_threads(threads or max(1, _cores() // max(1, ctx.local_world)))
        loaded = _resolve_model(model, layer)
        if device.startswith("cuda"):
            local = int(os.environ.get("LOCAL_RANK", 0))
            loaded.model.to(f"cuda:{local}")
        encoder_layers = loaded.encoder_layers
        groups: list[ParameterGroup] | None = None
        if parameters is not None:
            try:
                groups = parameter_groups(loaded.model, parameters)
            except ValueError as err:
                raise RunError(str(err)) from None
        if not branch_flow:
            loaded.encoder_layers = []
        rows = read_rows(data, columns)
        settings = _Settings(
            model=model_name or loaded.description,
            semirings=list(semirings),
            top_k=top_k,
            branch_flow=branch_flow,
            decompose=list(decompose),
            columns=asdict(columns),
            n_examples=len(rows),
            ig_steps=ig_steps,
            parameters=None if parameters is None else list(dict.fromkeys(parameters)),
        )
        run = _Run(Path(out_dir), ctx, settings, chunk_size)
        run.setup()
        ctx.barrier()
        done = run.done()
        todo = [
            r for r in rows if r.index % ctx.world == ctx.rank and r.index not in done
        ]
        pending_all = len(rows) - len(done)
        bar = _bar(progress and ctx.rank == 0, pending_all)
        try:
            _work(run, loaded, todo, settings, batch_size, bar, groups)
            run.commit(run.pending)
            run.pending = []
            run.report(finished=True)
            while ctx.rank == 0 and ctx.world > 1:
                count, finished = run.others()
                _advance(bar, count)
                if finished:
                    break
                time.sleep(0.2)
            ctx.barrier()
            final, errors = (None, 0)
            if ctx.rank == 0:
                final, errors = run.merge(len(rows))
                _write_json(
                    run.dir / SUMMARY,
                    {
                        "n_examples": len(rows),
                        "n_errors": errors,
                        "n_done_in_last_call": pending_all,
                        "world": ctx.world,
                        "seconds_of_last_call": round(time.perf_counter() - start, 3),
                    },
                )
        finally:
            if bar is not None:
                bar.close()
            loaded.encoder_layers = encoder_layers
        seconds = time.perf_counter() - start
        total = pending_all if ctx.rank == 0 else run.done_here
        return RunSummary(
            run_dir=run.dir,
            examples=final,
            n_examples=len(rows),
            n_errors=errors,
            n_done=run.done_here,
            seconds=seconds,
            examples_per_second=total / seconds if seconds > 0 else math.nan,
            world=ctx.world,
        )
    finally:
        torch.set_num_threads(old_threads)
        if ctx.joined:
            torch.distributed.destroy_process_group()


def _bar(show: bool, total: int) -> Any:
    if not show:
        return None
    import sys

    from tqdm.auto import tqdm

    return tqdm(
        total=total, desc="attributing", unit="ex", file=sys.stderr, disable=None
    )


def _advance(bar: Any, count: int) -> None:
    if bar is not None and count > bar.n:
        bar.update(count - bar.n)


def _work(
    run: _Run,
    model: LoadedModel,
    todo: list[SourceRow],
    settings: _Settings,
    batch_size: int,
    bar: Any,
    groups: list[ParameterGroup] | None = None,
) -> None:
    # PathCount counts the weight-0 paths that padding adds: no padding then
    same_length = "count" in settings.semirings or not model.hf
    # windows of rows, sorted by length inside: little padding, and chunks get
    # committed as the run goes
    window = max(run.chunk_size, 4 * batch_size)
    for start in range(0, len(todo), window):
        ready = []
        for row in todo[start : start + window]:
            prepared = _prepare(model, row)
            if isinstance(prepared, str):
                run.add([error_row(row, prepared)])
            else:
                ready.append((row, *prepared))
        for batch in _batches(ready, batch_size, same_length):
            run.add(_explain(model, batch, settings, groups))
            if bar is not None:
                others = run.others()[0] - run.done_here if run.ctx.world > 1 else 0
                _advance(bar, others + run.done_here + len(run.pending))


def _explain(
    model: LoadedModel,
    batch: list[tuple[SourceRow, Example, Target, int | str]],
    settings: _Settings,
    groups: list[ParameterGroup] | None = None,
) -> list[dict[str, Any]]:
    """The rows of one batch; a batch that fails is split, so that only the example
    at fault becomes an error row. With ``groups``, each good example's parameter
    flow is added, from a recording of that example alone."""
    try:
        results = explain_batch(
            model,
            [b[1] for b in batch],
            [b[2] for b in batch],
            predictions=[b[3] for b in batch],
            semirings=settings.semirings,
            top_k=settings.top_k,
            ig_steps=settings.ig_steps,
            decompose=tuple(settings.decompose),
        )
    except Exception as err:
        if len(batch) > 1:
            half = len(batch) // 2
            return _explain(model, batch[:half], settings, groups) + _explain(
                model, batch[half:], settings, groups
            )
        name = "ExplainError" if isinstance(err, ExplainError) else type(err).__name__
        return [error_row(batch[0][0], f"{name}: {first_line(err)}")]
    rows = []
    for (row, example, target, _), result in zip(batch, results, strict=True):
        if not math.isfinite(result.output):
            rows.append(
                error_row(row, f"non-finite output {result.output} in the forward pass")
            )
            continue
        flow = None
        if groups is not None:
            try:
                flow = parameter_flow(
                    model,
                    example,
                    target,
                    groups,
                    settings.semirings,
                    tuple(settings.decompose),
                )
            except Exception as err:
                rows.append(error_row(row, f"{type(err).__name__}: {first_line(err)}"))
                continue
        rows.append(result_row(row, result, flow))
    return rows
