"""Circuits by semiring flows against EAP and EAP-IG (``reproduce induction`` and
``reproduce minilm-circuits``).

Every method ranks the edges of one component graph (:mod:`captum_semiring.circuits`)
and is judged the same way:

* **faithfulness curves**: the circuit of a method's first ``n`` edges is run with
  every other edge patched from the corrupted input
  (:class:`~captum_semiring.circuits.EdgePatching`); the share of the clean metric
  recovered is plotted against ``n``;
* on the induction model, **precision and recall** of the method's top edges
  against the known circuit (:func:`~captum_semiring.reproductions.tasks.induction.known_circuit`).

The methods: MaxProduct edge flows (the best path through each edge), ranked as
top edges and grown greedily from the logits; the union of the TopK best paths;
SumProduct edge flows (the gradient summed over the paths through each edge); EAP;
EAP-IG, ranked and grown greedily. Entropy edge flows are reported for the known
circuit's edges against the rest.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .. import circuits
from ..analysis.io import write_csv, write_json
from ..semirings import Entropy, MaxProduct, SumProduct
from .registry import ReproduceOptions, pick_scale, register_reproduction

CURVE_COLUMNS = ("method", "n_edges", "faithfulness")
CIRCUIT_COLUMNS = ("method", "rank", "upstream", "downstream", "slot", "score", "known")


@dataclass(frozen=True)
class Comparison:
    """Rankings, curves and timings of every method on one graph."""

    graph: circuits.ComponentGraph
    rankings: dict[str, circuits.Circuit]
    curves: dict[str, list[tuple[int, float]]]
    seconds: dict[str, float]
    entropy: circuits.EdgeScores


def _sizes(n: int) -> list[int]:
    small = list(range(1, min(n, 12) + 1))
    return sorted(set(small + [round(n * q) for q in (0.25, 0.5, 0.75, 1.0)] + [n]))


def compare_methods(
    forward_func: Callable[[Tensor], Tensor],
    clean: Tensor,
    corrupted: Tensor,
    n_steps: int = 20,
    k_paths: int = 32,
    sizes: Sequence[int] | None = None,
) -> Comparison:
    """Rank the edges by every method and measure each ranking's faithfulness.

    Args:
        forward_func: one scalar per example (the metric) from the inputs.
        clean: the clean input (embeddings).
        corrupted: the corrupted input, of the same shape.
        n_steps: EAP-IG's points on the line.
        k_paths: how many best paths the TopK union takes at most.
        sizes: the circuit sizes of the curves (default: 1..12 and quarters).

    Returns:
        A :class:`Comparison`.
    """
    seconds: dict[str, float] = {}

    def timed(name: str, fn: Callable[[], Any]) -> Any:
        start = time.perf_counter()
        value = fn()
        seconds[name] = round(time.perf_counter() - start, 2)
        return value

    patching = timed(
        "patching setup", lambda: circuits.EdgePatching(forward_func, clean, corrupted)
    )
    graph = patching.graph
    top_max = timed("MaxProduct", lambda: graph.edge_flows(MaxProduct("absolute")))
    top_sum = timed("SumProduct", lambda: graph.edge_flows(SumProduct()))
    entropy = timed("Entropy", lambda: graph.edge_flows(Entropy()))
    eap = timed("EAP", lambda: circuits.eap(forward_func, clean, corrupted))
    eap_ig = timed(
        "EAP-IG", lambda: circuits.eap_ig(forward_func, clean, corrupted, n_steps)
    )
    paths = timed("TopK paths", lambda: graph.top_paths(k_paths))
    rankings = {
        "MaxProduct top edges": circuits.top_edges(top_max),
        "MaxProduct greedy": circuits.greedy(top_max),
        "TopK path union": circuits.path_union(graph, len(paths), paths),
        "SumProduct top edges": circuits.top_edges(top_sum),
        "EAP top edges": circuits.top_edges(eap),
        "EAP-IG top edges": circuits.top_edges(eap_ig),
        "EAP-IG greedy": circuits.greedy(eap_ig),
    }
    n = len(graph.edges)
    sizes = list(sizes) if sizes is not None else _sizes(n)
    curves: dict[str, list[tuple[int, float]]] = {}
    for name, circuit in rankings.items():
        if name == "TopK path union":
            # the union grows a whole path at a time: one point per number of paths
            points = {
                len(circuits.path_union(graph, k, paths)): k
                for k in range(1, len(paths) + 1)
            }
            curve_sizes = sorted(points)
        else:
            curve_sizes = [s for s in sizes if s <= len(circuit)]
        start = time.perf_counter()
        curves[name] = [
            (s, patching.faithfulness(circuit.edges[:s])) for s in curve_sizes
        ]
        seconds[f"curve: {name}"] = round(time.perf_counter() - start, 2)
    return Comparison(graph, rankings, curves, seconds, entropy)


def _curve_rows(cmp: Comparison) -> list[dict[str, Any]]:
    return [
        {"method": name, "n_edges": n, "faithfulness": round(f, 6)}
        for name, points in cmp.curves.items()
        for n, f in points
    ]


def _circuit_rows(
    cmp: Comparison, known: set[circuits.Edge], top: int
) -> list[dict[str, Any]]:
    rows = []
    for name, circuit in cmp.rankings.items():
        for rank, e in enumerate(circuit.edges[:top]):
            rows.append(
                {
                    "method": name,
                    "rank": rank + 1,
                    "upstream": e.upstream,
                    "downstream": e.downstream,
                    "slot": e.slot,
                    "score": circuit.scores.get(e),
                    "known": e in known,
                }
            )
    return rows


def _at(points: list[tuple[int, float]], n: int) -> float | None:
    """Faithfulness of the largest circuit of at most ``n`` edges."""
    best = [f for s, f in points if s <= n]
    return round(best[-1], 4) if best else None


def plot_curves(cmp: Comparison, title: str, marks: Sequence[int] = ()) -> Any:
    """Faithfulness against circuit size, one line per method."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, 4.2))
    ax = fig.subplots()
    for name, points in cmp.curves.items():
        xs, ys = zip(*points) if points else ((), ())
        style = "--" if "EAP" in name else "-"
        ax.plot(xs, ys, style, marker=".", label=name, linewidth=1.4)
    for m in marks:
        ax.axvline(m, color="grey", linewidth=0.6, linestyle=":")
    ax.set_xscale("log")
    ax.set_xlabel("edges in the circuit (log scale)")
    ax.set_ylabel("faithfulness (share of clean metric)")
    ax.axhline(1.0, color="black", linewidth=0.5)
    ax.axhline(0.0, color="black", linewidth=0.5)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig


def _write(
    out_dir: Path,
    stem: str,
    cmp: Comparison,
    summary: dict[str, Any],
    known: set[circuits.Edge],
    title: str,
    marks: Sequence[int] = (),
) -> list[Path]:
    from ..visualization import figure_to_png

    curves = write_csv(
        out_dir / f"{stem}_faithfulness.csv", _curve_rows(cmp), CURVE_COLUMNS
    )
    chosen = write_csv(
        out_dir / f"{stem}_circuits.csv",
        _circuit_rows(cmp, known, top=max(20, len(known))),
        CIRCUIT_COLUMNS,
    )
    png = out_dir / f"{stem}_faithfulness.png"
    png.write_bytes(figure_to_png(plot_curves(cmp, title, marks)))
    summary_path = write_json(out_dir / f"{stem}_summary.json", summary)
    return [curves, chosen, png, summary_path]


# ------------------------------------------------------------------ induction


@dataclass(frozen=True)
class InductionScale:
    config: Any
    n_sequences: int
    n_steps: int
    k_paths: int
    cached: bool
    sizes: tuple[int, ...] | None = None  # default: 1..12 and quarters


def _induction_scales() -> dict[str, InductionScale]:
    from .tasks import induction

    return {
        "full": InductionScale(induction.FULL_CONFIG, 32, 20, 32, True),
        "quick": InductionScale(
            induction.SMALL_CONFIG, 8, 3, 8, True, (1, 2, 4, 7, 12, 29)
        ),
    }


def induction_comparison(
    scale: InductionScale, seed: int = 0
) -> tuple[Comparison, dict[str, Any], set[circuits.Edge]]:
    """Train (or load) the induction model, find its heads, compare every method;
    also returns the known circuit's edges."""
    from .tasks import induction

    cfg = scale.config
    trained = (
        induction.induction_model(cfg, seed)
        if scale.cached
        else induction.train_induction_model(cfg, seed)
    )
    model = trained.model
    ids = induction.repeated_sequences(
        scale.n_sequences, cfg.half_length, cfg.vocab_size, seed=seed + 1000
    )
    bad = induction.corrupt(
        ids, seed=seed + 2000, vocab_size=cfg.vocab_size, keep_second_half=False
    )
    heads = induction.identify_heads(model, trained.eval_ids)
    core = {
        circuits.Edge(*e)
        for e in induction.known_circuit(model, trained.eval_ids, core=True)
    }
    full = {circuits.Edge(*e) for e in induction.known_circuit(model, trained.eval_ids)}
    with torch.no_grad():
        clean, corrupted = model.embed(ids), model.embed(bad)

    def f(e: Tensor) -> Tensor:
        return induction.target_logit(model, ids, inputs_embeds=e)

    cmp = compare_methods(
        f, clean, corrupted, scale.n_steps, scale.k_paths, scale.sizes
    )
    entropy = dict(zip(cmp.entropy.edges, cmp.entropy.totals().tolist()))
    recovered = {}
    for name, circuit in cmp.rankings.items():
        p_core = circuit.first(len(core)).precision_recall(core)
        p_full = circuit.first(len(full)).precision_recall(full)
        recovered[name] = {
            f"top {len(core)}: precision, recall vs core": [
                round(v, 3) for v in p_core
            ],
            f"top {len(full)}: precision, recall vs all known": [
                round(v, 3) for v in p_full
            ],
            "edges until every core edge is in": _edges_until(circuit, core),
            f"faithfulness at {len(core)} edges": _at(cmp.curves[name], len(core)),
            f"faithfulness at {len(full)} edges": _at(cmp.curves[name], len(full)),
        }
    known_entropy = [entropy[e] for e in full]
    other_entropy = [v for e, v in entropy.items() if e not in full]
    summary = {
        "model": {
            "config": cfg.to_dict(),
            "seed": seed,
            "second_half_accuracy": trained.accuracy,
            "previous_token_head": list(heads.previous_token),
            "induction_head": list(heads.induction),
        },
        "data": {
            "sequences": scale.n_sequences,
            "target": "logit of the correct next token at the last position with one",
            "corruption": "a fresh random sequence (both halves), so the first half "
            "no longer tells the answer",
        },
        "graph": repr(cmp.graph),
        "known_circuit": {
            "core": sorted(map(str, core)),
            "all": sorted(map(str, full)),
        },
        "recovery": recovered,
        "entropy_nats": {
            "known edges, mean": round(sum(known_entropy) / len(known_entropy), 3),
            "other edges, mean": round(
                sum(other_entropy) / max(len(other_entropy), 1), 3
            ),
        },
        "seconds": cmp.seconds,
    }
    return cmp, summary, full


def _edges_until(circuit: circuits.Circuit, known: set[circuits.Edge]) -> int | None:
    need = set(known)
    for i, e in enumerate(circuit.edges):
        need.discard(e)
        if not need:
            return i + 1
    return None


@register_reproduction(
    "induction",
    "circuits: MaxProduct paths, TopK unions, EAP and EAP-IG on a trained induction model",
)
def reproduce_induction(out_dir: Path, options: ReproduceOptions) -> list[Path]:
    """Write ``induction_faithfulness.csv`` / ``.png``, ``induction_circuits.csv``
    and ``induction_summary.json``."""
    name, scale = pick_scale(options, _induction_scales())
    start = time.perf_counter()
    cmp, summary, full = induction_comparison(scale)
    summary["scale"] = name
    summary["seconds"]["total"] = round(time.perf_counter() - start, 1)
    paths = _write(
        out_dir,
        "induction",
        cmp,
        summary,
        full,
        f"Induction circuit ({len(cmp.graph.edges)} edges): faithfulness by method",
        marks=(4, 7),
    )
    for method, r in summary["recovery"].items():
        print(f"{method:22s} " + "  ".join(f"{k}: {v}" for k, v in r.items()))
    return paths


# ------------------------------------------------------------------ MiniLM

#: (sentence, paraphrase, unrelated sentence): the metric is the cosine similarity
#: of the sentence's embedding to its paraphrase's; the corruption swaps in the
#: unrelated sentence.
SIMILARITY_TRIPLES = (
    (
        "A man is playing a guitar on stage.",
        "Someone performs music with a guitar.",
        "Stock prices fell sharply this morning.",
    ),
    (
        "The cat sleeps on the warm sofa.",
        "A kitten is napping on the couch.",
        "The train leaves at seven tomorrow.",
    ),
    (
        "Children are playing football in the park.",
        "Kids play soccer outside.",
        "Quantum physics studies small particles.",
    ),
    (
        "She is cooking pasta in the kitchen.",
        "A woman prepares a meal at home.",
        "Heavy rain flooded the old bridge.",
    ),
    (
        "The doctor examined the patient carefully.",
        "A physician checked the sick man.",
        "Our team won the chess tournament.",
    ),
    (
        "He drove the car to the city.",
        "A man traveled downtown by car.",
        "Fresh bread smells wonderful in winter.",
    ),
    (
        "The students are reading books in the library.",
        "Pupils study in a quiet library.",
        "The volcano erupted after many years.",
    ),
    (
        "A dog is running across the beach.",
        "A puppy races along the sand.",
        "The committee approved the new budget.",
    ),
)


@dataclass(frozen=True)
class MiniLMScale:
    triples: int
    n_steps: int
    k_paths: int
    sizes: tuple[int, ...]


MINILM_SCALES = {
    "full": MiniLMScale(
        8, 10, 32, (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 4000)
    ),
    "quick": MiniLMScale(2, 2, 4, (1, 10, 100, 1000)),
}


def minilm_comparison(scale: MiniLMScale) -> tuple[Comparison, dict[str, Any]]:
    """The pretrained MiniLM (float64): sentence-similarity target, every method."""
    from .tasks import load_minilm

    model, tokenizer = load_minilm()
    model = model.double().eval()
    a, b, c = zip(*SIMILARITY_TRIPLES[: scale.triples])
    length = max(len(tokenizer(s)["input_ids"]) for s in a + c)

    def encode(sentences: Sequence[str]) -> tuple[Tensor, Tensor]:
        t = tokenizer(
            list(sentences),
            padding="max_length",
            max_length=length,
            truncation=True,
            return_tensors="pt",
        )
        return t["input_ids"], t["attention_mask"]

    def pool(h: Tensor, mask: Tensor) -> Tensor:
        m = mask[..., None].to(h.dtype)
        return (h * m).sum(1) / m.sum(1)

    ids_a, mask_a = encode(a)
    ids_b, mask_b = encode(b)
    ids_c, _ = encode(c)
    with torch.no_grad():
        reference = pool(
            model(input_ids=ids_b, attention_mask=mask_b).last_hidden_state, mask_b
        )
        clean = model.embeddings.word_embeddings(ids_a)
        corrupted = model.embeddings.word_embeddings(ids_c)

    def f(e: Tensor) -> Tensor:
        hidden = model(inputs_embeds=e, attention_mask=mask_a).last_hidden_state
        return torch.nn.functional.cosine_similarity(
            pool(hidden, mask_a), reference, dim=-1
        )

    with torch.no_grad():
        clean_metric, corrupt_metric = f(clean), f(corrupted)
    cmp = compare_methods(
        f, clean, corrupted, scale.n_steps, scale.k_paths, scale.sizes
    )
    kinds: dict[str, int] = {}
    for comp in cmp.graph.components:
        kinds[comp.kind] = kinds.get(comp.kind, 0) + 1
    sizes_at = {}
    for name, points in cmp.curves.items():
        reach = [n for n, v in points if v >= 0.8]
        sizes_at[name] = {
            "fewest edges reaching 80%": reach[0] if reach else None,
            **{f"faithfulness at {n}": _at(points, n) for n in (10, 100, 1000)},
        }
    summary = {
        "model": "all-MiniLM-L6-v2 (pretrained, 6 layers x 12 heads), float64",
        "metric": "cosine similarity of the mean-pooled sentence embedding to its "
        "paraphrase's (fixed)",
        "corruption": "an unrelated sentence, padded to the same length; the clean "
        "attention mask is kept",
        "sentences": [list(t) for t in SIMILARITY_TRIPLES[: scale.triples]],
        "tokens": length,
        "clean_metric_mean": round(float(clean_metric.mean()), 4),
        "corrupted_metric_mean": round(float(corrupt_metric.mean()), 4),
        "graph": {"components": kinds, "edges": len(cmp.graph.edges)},
        "circuits": sizes_at,
        "seconds": cmp.seconds,
    }
    return cmp, summary


@register_reproduction(
    "minilm-circuits",
    "circuits: MaxProduct paths, TopK unions, EAP and EAP-IG on the pretrained "
    "MiniLM (sentence similarity)",
)
def reproduce_minilm_circuits(out_dir: Path, options: ReproduceOptions) -> list[Path]:
    """Write ``minilm_circuits_faithfulness.csv`` / ``.png``,
    ``minilm_circuits_circuits.csv`` and ``minilm_circuits_summary.json``."""
    name, scale = pick_scale(options, MINILM_SCALES)
    start = time.perf_counter()
    cmp, summary = minilm_comparison(scale)
    summary["scale"] = name
    summary["seconds"]["total"] = round(time.perf_counter() - start, 1)
    paths = _write(
        out_dir,
        "minilm_circuits",
        cmp,
        summary,
        set(),
        f"MiniLM sentence similarity ({len(cmp.graph.edges)} edges): faithfulness by method",
    )
    for method, r in summary["circuits"].items():
        print(f"{method:22s} " + "  ".join(f"{k}: {v}" for k, v in r.items()))
    return paths
