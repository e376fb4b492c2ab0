"""Saved results: what :meth:`SemiringResult.save` writes and :func:`load_result`
reads back, without the model or the recording.

A saved result is a directory of two files:

- ``summary.json``, human readable: the format and its version, the semiring
  (:meth:`Semiring.to_dict`), the sources (name, position in ``cs.record``, shape,
  dtype), the top paths hop by hop (:meth:`Path.to_dict`: op, module, index, weight)
  and the branch-flow group labels;
- ``tensors.pt``, a ``torch.save`` of plain tensors on the CPU (``torch.load(...,
  weights_only=True)`` reads it): the finalized value of every source, the output the
  sweep started from, and branch flow's raw values.

Only finalized values are kept: a loaded result cannot aggregate (eq. 3), trace
further paths or compute branch flow for other tensors. For that, pickle the
:class:`SemiringResult` itself (or ``torch.save`` it), which keeps the recording.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path as FilePath
from typing import Any

import torch
from torch import Tensor

from ._engine import Sweep
from .branch_flow import BranchFlow, branch_flow
from .paths import NoPathError, Path, _flat_index, _unravel, trace_path
from .semirings import Semiring

FORMAT = "captum-semiring result"
VERSION = 1
SUMMARY = "summary.json"
TENSORS = "tensors.pt"

#: Which source elements get their top paths saved: a source (its name, position,
#: or the tensor, module or layer input itself) to element indices (tuples or flat).
PathsWanted = Mapping[Any, Sequence[int | Sequence[int]]]


@dataclass
class SavedResult:
    """A result's finalized values, top paths and branch flow, as saved.

    Made by :meth:`SemiringResult.summary` (or :meth:`SemiringResult.save`) and by
    :func:`load_result`. Index it with a source's name or its position in
    ``cs.record``.

    Attributes:
        semiring: the sweep's semiring.
        names: the sources' names, one per position in ``cs.record``: ``"tensor 0"``,
            ``"output of PATH"``, ``"input of PATH"``.
        values: the finalized value of each source, by name; a module that ran n > 1
            times has one entry per run, ``"NAME #0"`` to ``"NAME #n-1"``, and one
            that never ran has none.
        output: the output the sweep started from (None for a forward sweep).
        paths: per source name, the saved top paths, each element's best first.
        branch_flows: per source name, its :class:`BranchFlow`.

    Examples::

        >>> import tempfile, torch, captum_semiring as cs
        >>> _ = torch.manual_seed(0)
        >>> net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
        >>> x = torch.randn(2, 3)
        >>> with cs.record(x, net[1]) as graph:
        ...     out = net(x)[:, 0]
        >>> res = graph.backward(out, "max")
        >>> folder = tempfile.mkdtemp()
        >>> _ = res.save(folder, branch_flow=True)
        >>> saved = cs.load_result(folder)
        >>> saved
        SavedResult(MaxProduct(sign='positive'), sources ['tensor 0', 'output of 1'])
        >>> torch.equal(saved["tensor 0"], res[x]), torch.equal(saved[1], res[net[1]])
        (True, True)
        >>> [p.source for p in saved.paths["tensor 0"]]  # the best element per example
        [(0, 1), (1, 1)]
        >>> saved.paths["tensor 0"][0] == res.path(x, (0, 1))
        True
        >>> saved.branch_flows["output of 1"].labels
        ['2']
    """

    semiring: Semiring
    names: list[str]
    values: dict[str, Tensor]
    output: Tensor | None = None
    paths: dict[str, list[Path]] = field(default_factory=dict)
    branch_flows: dict[str, BranchFlow] = field(default_factory=dict)

    def __getitem__(self, key: str | int) -> Tensor:
        """The finalized value of a source, by name or by position."""
        name = key
        if isinstance(key, int):
            if not 0 <= key < len(self.names):
                raise IndexError(
                    f"source position {key} is out of range: {len(self.names)} sources"
                )
            name = self.names[key]
        if name in self.values:
            return self.values[name]
        runs = [n for n in self.values if n.startswith(f"{name} #")]
        if runs:
            raise KeyError(f"source {name!r} ran {len(runs)} times; name a run: {runs}")
        if name in self.names:
            raise KeyError(f"source {name!r} never ran while recording")
        raise KeyError(f"no source is named {key!r}; the sources are {self.names}")

    def save(self, path: str | os.PathLike[str]) -> FilePath:
        """Write ``summary.json`` and ``tensors.pt`` into the directory ``path``
        (made if missing; the two files are replaced). Returns the directory."""
        folder = FilePath(path)
        folder.mkdir(parents=True, exist_ok=True)
        summary = {
            "format": FORMAT,
            "version": VERSION,
            "semiring": self.semiring.to_dict(),
            "tensors": TENSORS,
            "names": list(self.names),
            "sources": [
                {
                    "name": name,
                    "position": self._position(name),
                    "value_shape": list(value.shape),
                    "dtype": str(value.dtype).removeprefix("torch."),
                }
                for name, value in self.values.items()
            ],
            "output_shape": None if self.output is None else list(self.output.shape),
            "paths": {
                name: [p.to_dict() for p in paths] for name, paths in self.paths.items()
            },
            "branch_flow": {
                name: {"labels": list(flow.labels)}
                for name, flow in self.branch_flows.items()
            },
        }
        tensors = {
            "values": {name: v.detach().cpu() for name, v in self.values.items()},
            "output": None if self.output is None else self.output.detach().cpu(),
            "branch_flow": {
                name: flow.values.detach().cpu()
                for name, flow in self.branch_flows.items()
            },
        }
        torch.save(tensors, folder / TENSORS)
        (folder / SUMMARY).write_text(_pretty(summary) + "\n", encoding="utf-8")
        return folder

    def _position(self, name: str) -> int:
        base = name if name in self.names else name.rpartition(" #")[0]
        return self.names.index(base)

    def __repr__(self) -> str:
        return f"SavedResult({self.semiring!r}, sources {self.names})"


def _shallow(x: Any) -> bool:
    """Not a container, or one whose items are scalars or lists of scalars."""
    items = x.values() if isinstance(x, dict) else x if isinstance(x, list) else ()
    return all(
        not isinstance(v, dict)
        and not (isinstance(v, list) and any(isinstance(u, (dict, list)) for u in v))
        for v in items
    )


def _pretty(x: Any, indent: str = "") -> str:
    """Strict JSON, one line per container that fits in 88 columns or holds no
    deeper containers (a hop, a shape), else one line per item."""
    flat = json.dumps(x, allow_nan=False)
    if len(indent) + len(flat) <= 88 or _shallow(x):
        return flat
    inner = indent + " "
    if isinstance(x, dict):
        items = [f"{inner}{json.dumps(k)}: {_pretty(v, inner)}" for k, v in x.items()]
        return "{\n" + ",\n".join(items) + f"\n{indent}}}"
    items = [inner + _pretty(v, inner) for v in x]
    return "[\n" + ",\n".join(items) + f"\n{indent}]"


def load_result(
    path: str | os.PathLike[str], semiring: Semiring | None = None
) -> SavedResult:
    """Read a result that :meth:`SemiringResult.save` wrote; the model is not needed.

    Args:
        path: the directory holding ``summary.json`` and ``tensors.pt``.
        semiring: the semiring to use instead of rebuilding it from
            ``summary.json`` (for a custom semiring whose module is not imported).

    Returns:
        A :class:`SavedResult`; its example shows a round trip.
    """
    folder = FilePath(path)
    summary = json.loads((folder / SUMMARY).read_text(encoding="utf-8"))
    if summary.get("format") != FORMAT:
        raise ValueError(f"{folder / SUMMARY} is not a saved captum-semiring result")
    if summary.get("version") != VERSION:
        raise ValueError(
            f"{folder} was saved in format version {summary.get('version')}; this "
            f"version of captum-semiring reads version {VERSION}"
        )
    sr = semiring if semiring is not None else Semiring.from_dict(summary["semiring"])
    tensors = torch.load(folder / summary["tensors"], weights_only=True)
    return SavedResult(
        semiring=sr,
        names=list(summary["names"]),
        values=dict(tensors["values"]),
        output=tensors["output"],
        paths={
            name: [Path.from_dict(p) for p in paths]
            for name, paths in summary["paths"].items()
        },
        branch_flows={
            name: BranchFlow(list(flow["labels"]), tensors["branch_flow"][name], sr)
            for name, flow in summary["branch_flow"].items()
        },
    )


def summarize(
    result: Sweep,
    paths: PathsWanted | bool | None = None,
    branch_flow_of: Sequence[Any] | bool = False,
) -> SavedResult:
    """A :class:`SavedResult` of ``result``; see :meth:`SemiringResult.summary`."""
    graph, sr = result.graph, result.semiring
    names = [name for name, _ in graph.named_sources()]
    values, nodes = {}, {}
    for name, runs in graph.named_sources():
        labels = (
            [name] if len(runs) == 1 else [f"{name} #{j}" for j in range(len(runs))]
        )
        for label, node in zip(labels, runs, strict=True):
            values[label] = sr.finalize(result.values(node)).detach().cpu()
            nodes[label] = node
    saved = SavedResult(
        sr, names, values, None if result.output is None else result.output.detach()
    )
    for name, elements in _wanted_paths(result, paths, names, nodes).items():
        saved.paths[name] = _top_paths(result, nodes[name], elements)
    if branch_flow_of is True:
        branch_flow_of = list(nodes)
    for item in branch_flow_of or ():
        name = _source_name(item, graph, names, nodes)
        saved.branch_flows[name] = branch_flow(result, nodes[name])
    return saved


def _source_name(item: Any, graph: Any, names: list[str], nodes: dict[str, int]) -> str:
    """The saved name of a source given by name, position or the item itself."""
    if isinstance(item, int) and not isinstance(item, bool):
        if not 0 <= item < len(names):
            raise IndexError(f"source position {item} is out of range")
        item = names[item]
    if isinstance(item, str) and item in nodes:
        return item
    node = graph.node_of(item)
    for name, n in nodes.items():
        if n == node:
            return name
    raise KeyError(f"{item!r} is not a source of this recording")


def _wanted_paths(
    result: Sweep,
    paths: PathsWanted | bool | None,
    names: list[str],
    nodes: dict[str, int],
) -> dict[str, list[int | Sequence[int]]]:
    """Source name to the elements whose paths are saved."""
    sr = result.semiring
    if paths is False or (paths is None and (not sr.has_paths or result.root is None)):
        return {}  # by default, only where there are paths to an output
    if not sr.has_paths or result.root is None:
        raise TypeError(
            f"{sr!r} does not single out paths; use MaxProduct or TopK"
            if not sr.has_paths
            else "a forward sweep has no paths to an output"
        )
    if paths is None or paths is True:
        return {name: _best_per_example(result, node) for name, node in nodes.items()}
    graph = result.graph
    return {
        _source_name(item, graph, names, nodes): list(elements)
        for item, elements in paths.items()
    }


def _best_per_example(result: Sweep, node: int) -> list[int | Sequence[int]]:
    """The best element of each example: along the first axis where the output is
    one scalar per example of that batch, else of the whole source."""
    sr, meta = result.semiring, result.graph.nodes[node]
    score = sr.score(sr.best(sr.finalize(result.values(node))))
    output = result.output
    batched = (
        output is not None
        and output.dim() == 1
        and len(meta.shape) >= 1
        and meta.shape[0] == output.shape[0]
    )
    if not batched:
        return [int(score.reshape(-1).argmax())] if score.numel() else []
    per_example = score.reshape(meta.shape[0], -1).argmax(dim=1)
    inner = meta.shape[1:]
    return [(b, *_unravel(int(i), inner)) for b, i in enumerate(per_example.tolist())]


def _top_paths(
    result: Sweep, node: int, elements: Sequence[int | Sequence[int]]
) -> list[Path]:
    """Each element's paths, best first (every rank that has one; TopK has k)."""
    meta = result.graph.nodes[node]
    finalized = result.semiring.finalize(result.values(node))
    ranks = finalized.shape[0] if finalized.dim() > len(meta.shape) else 1
    found = []
    for element in elements:
        _flat_index(element, meta.shape)  # a clear error for a bad index
        for rank in range(ranks):
            try:
                found.append(trace_path(result, node, element, rank))
            except NoPathError:
                break  # no path of this rank, nor of any later one
    return found


__all__ = ["SavedResult", "load_result"]
