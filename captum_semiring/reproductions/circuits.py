"""Circuits by semiring flows against EAP and EAP-IG (``reproduce induction``,
``reproduce minilm-circuits`` and ``reproduce fig2-circuits``).

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

On the fig2 model (``reproduce fig2-circuits``, :func:`fig2_circuit_check`) the known
mechanism is per token: each method's flow into a head's query read should sit on the
first token, its flow into the key read on the repeated token.
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
    per_method: str,
    marks: Sequence[int] = (),
) -> list[Path]:
    """Write the curves, the circuits, the plot and the summary; print
    ``summary[per_method]``, one line per method."""
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
    for method, r in summary[per_method].items():
        print(f"{method:22s} " + "  ".join(f"{k}: {v}" for k, v in r.items()))
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
    return _write(
        out_dir,
        "induction",
        cmp,
        summary,
        full,
        f"Induction circuit ({len(cmp.graph.edges)} edges): faithfulness by method",
        "recovery",
        marks=(4, 7),
    )


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
    return _write(
        out_dir,
        "minilm_circuits",
        cmp,
        summary,
        set(),
        f"MiniLM sentence similarity ({len(cmp.graph.edges)} edges): faithfulness by method",
        "circuits",
    )


# ------------------------------------------------------------------ fig2 model

FIG2_COLUMNS = (
    "method",
    "corruption",
    "head",
    "main_head",
    "n",
    "q_first",
    "k_repeat",
    "both",
    "k_first",
    "q_zero_flow",
    "k_zero_flow",
)

#: How the EAP methods corrupt a sentence: ``repeat`` replaces the repeated token by
#: a token absent from the sentence; ``first+repeat`` replaces the first token and
#: its repeat by two distinct absent tokens. Both remove the repeat (label 0).
FIG2_CORRUPTIONS = ("repeat", "first+repeat")


def fig2_forward(model: Any, labels: Tensor) -> Callable[[Tensor], Tensor]:
    """The correct class's logit of the FirstTokenRepeatedOnce BERT from the input
    of its encoder layers (the embeddings module's output, after its layer norm), so
    that the residual stream starts at the source.

    Args:
        model: the ``BertForSequenceClassification``.
        labels: ``(batch,)`` the class whose logit is the output.

    Returns:
        ``f(hidden) -> (batch,)``.
    """

    def f(hidden: Tensor) -> Tensor:
        sequence = model.bert.encoder(hidden).last_hidden_state
        logits = model.classifier(model.bert.pooler(sequence))
        return logits.gather(1, labels[:, None])[:, 0]

    return f


def repeat_positions(ids: Tensor) -> Tensor:
    """The position of the first token's (one) repeat in each sentence, ``(batch,)``.

    Raises:
        ValueError: a sentence has no repeat.
    """
    later = ids[:, 1:] == ids[:, :1]
    if not bool(later.any(1).all()):
        raise ValueError("every sentence must repeat its first token (label 1)")
    return later.int().argmax(1) + 1


def corrupt_fig2(ids: Tensor, mode: str, vocab_size: int, seed: int = 0) -> Tensor:
    """The sentences with the repeat removed (see :data:`FIG2_CORRUPTIONS`); the
    replacements are drawn from the tokens ``1..vocab_size`` absent from the
    sentence, so no other token becomes a repeat.

    Args:
        ids: ``(batch, tokens)`` sentences that repeat their first token.
        mode: ``"repeat"`` or ``"first+repeat"``.
        vocab_size: the task's vocabulary (tokens ``1..vocab_size``).
        seed: the seed of the replacements.

    Returns:
        The corrupted ids, same shape.
    """
    if mode not in FIG2_CORRUPTIONS:
        raise ValueError(f"unknown corruption {mode!r}; use one of {FIG2_CORRUPTIONS}")
    gen = torch.Generator().manual_seed(seed)
    where = repeat_positions(ids)
    out = ids.clone()
    for b in range(ids.shape[0]):
        absent = [t for t in range(1, vocab_size + 1) if t not in set(ids[b].tolist())]
        pick = torch.randperm(len(absent), generator=gen)[:2].tolist()
        out[b, where[b]] = absent[pick[0]]
        if mode == "first+repeat":
            out[b, 0] = absent[pick[1]]
    return out


def top_tokens(per_token: Tensor) -> Tensor:
    """The token of largest magnitude in each row of ``(batch, tokens)`` scores;
    ``-1`` where every token's score is 0 (no flow to decide by)."""
    size = per_token.abs()
    top = size.argmax(-1)
    return torch.where(size.amax(-1) > 0, top, torch.full_like(top, -1))


def recovery(q_top: Tensor, k_top: Tensor, repeat: Tensor) -> dict[str, float]:
    """Fractions of sentences whose q read's top token is the first token and whose
    k read's top token is the repeat.

    Args:
        q_top: ``(batch,)`` top token of the q read (``-1``: no flow).
        k_top: ``(batch,)`` top token of the k read.
        repeat: ``(batch,)`` position of the repeat.

    Returns:
        ``q_first``, ``k_repeat``, ``both``, ``k_first`` (the k read's top is the
        first token), ``q_zero_flow`` and ``k_zero_flow`` (no flow at any token).
    """
    q_ok, k_ok = q_top == 0, k_top == repeat
    fractions = {
        "q_first": q_ok,
        "k_repeat": k_ok,
        "both": q_ok & k_ok,
        "k_first": k_top == 0,
        "q_zero_flow": q_top == -1,
        "k_zero_flow": k_top == -1,
    }
    return {k: round(float(v.float().mean()), 4) for k, v in fractions.items()}


def semiring_token_flows(
    graph: circuits.ComponentGraph, head: str, slot: str, semiring: Any
) -> Tensor:
    """The flow into one read per token, ``(batch, tokens)``: :meth:`read_flow`
    ⊕-summed over the hidden axis and finalized."""
    values = graph.read_flow(head, slot, semiring)  # (S, batch, tokens, hidden)
    return semiring.finalize(semiring.sum(values, 3))


def read_gradients(
    f: Callable[[Tensor], Tensor], hidden: Tensor, attention: Any, heads: int
) -> dict[tuple[int, str], Tensor]:
    """The gradient of ``f`` at ``hidden`` through each head's query and key
    projection alone, by autograd on the model (not the recording), ``(batch,
    tokens, hidden)`` per (head, slot).

    The gradient at the projection's output is taken from a forward hook and pulled
    back through the head's rows of the projection weight, so it is the gradient of
    one read, as the component graph defines it.

    Args:
        f: one scalar per example from ``hidden``.
        hidden: the input of the attention layer.
        attention: the ``BertSelfAttention`` module that reads ``hidden``.
        heads: its number of heads.

    Returns:
        Per ``(head, "q" | "k")`` the gradient.
    """
    captured: dict[str, Tensor] = {}

    def keep(slot: str) -> Callable[..., None]:
        def hook(module: Any, args: Any, output: Tensor) -> None:
            captured[slot] = output

        return hook

    projections = {"q": attention.query, "k": attention.key}
    handles = [m.register_forward_hook(keep(s)) for s, m in projections.items()]
    try:
        x = hidden.detach().requires_grad_(True)
        out = f(x)
    finally:
        for handle in handles:
            handle.remove()
    slots = list(projections)
    # every example's output depends on its own input only: one sum, one backward
    grads = torch.autograd.grad(out.sum(), [captured[s] for s in slots])
    size = grads[0].shape[-1] // heads
    found = {}
    for slot, g in zip(slots, grads):
        weight = projections[slot].weight.detach()  # (out, in)
        for h in range(heads):
            rows = slice(h * size, (h + 1) * size)
            found[h, slot] = g[..., rows] @ weight[rows]
    return found


def eap_token_scores(
    f: Callable[[Tensor], Tensor],
    clean: Tensor,
    corrupted: Tensor,
    attention: Any,
    heads: int,
    n_steps: int | None = None,
) -> dict[tuple[int, str], Tensor]:
    """EAP's score of the edge embed → a head's q or k read, per token: the clean
    minus corrupted embedding times the read's gradient, summed over the hidden axis.
    With ``n_steps``, EAP-IG's: the gradient averaged at ``corrupted + k/m (clean -
    corrupted)``, ``k = 1..m``. Summed over the tokens it is the edge's score in
    :func:`~captum_semiring.circuits.eap` (:func:`~captum_semiring.circuits.eap_ig`).

    Returns:
        Per ``(head, "q" | "k")`` the scores ``(batch, tokens)``.
    """
    diff = (clean - corrupted).detach()
    if n_steps is None:
        grads = read_gradients(f, clean, attention, heads)
    else:
        total: dict[tuple[int, str], Tensor] = {}
        for k in range(1, n_steps + 1):
            point = corrupted + k / n_steps * diff
            for key, g in read_gradients(f, point, attention, heads).items():
                total[key] = g if key not in total else total[key] + g
        grads = {key: g / n_steps for key, g in total.items()}
    return {key: (diff * g).sum(-1) for key, g in grads.items()}


def _head_into_logits(scores: circuits.EdgeScores, head: str) -> float:
    edge = circuits.Edge(head, "logits", "in")
    return float(scores.ranking()[scores.edges.index(edge)])


def fig2_circuit_check(
    trained: Any, n_sentences: int | None = None, n_steps: int = 20, seed: int = 0
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Which token each head's query and key read gets its flow from, on the
    FirstTokenRepeatedOnce model, against the known mechanism: the first token's
    query, the repeated token's key.

    On validation sentences with a repeat (label 1), the source is the encoder's
    input and the target the correct class's logit. Per head and method the top
    token of the q and k read is the token of largest magnitude of:

    * MaxProduct (absolute) and SumProduct: :meth:`ComponentGraph.read_flow`,
      ⊕-summed over the hidden axis and finalized;
    * EAP and EAP-IG: the embedding difference times the read's gradient, summed over
      the hidden axis (:func:`eap_token_scores`, by autograd on the model), for each
      corruption of :data:`FIG2_CORRUPTIONS`.

    A head is the method's ``main_head`` when its edge into the logits ranks highest
    under that method's edge scores.

    Args:
        trained: the :class:`~captum_semiring.reproductions.tasks.TrainedClassifier`
            of :func:`~captum_semiring.reproductions.tasks.models.default_model`.
        n_sentences: use the first N label-1 validation sentences (default all).
        n_steps: EAP-IG's points on the line.
        seed: the seed of the corruptions.

    Returns:
        One row per method, corruption and head (:data:`FIG2_COLUMNS`), and a
        summary.
    """
    model = trained.model.eval()
    X, y = trained.data["val"]
    ids = X[y == 1][:n_sentences]
    labels = torch.ones(len(ids), dtype=torch.long)
    repeat = repeat_positions(ids)
    f = fig2_forward(model, labels)
    with torch.no_grad():
        clean = model.bert.embeddings(input_ids=ids)
        # position 0's attention per head: the mechanism's own reference
        attn = model.bert(ids, output_attentions=True).attentions[0][:, :, 0]
    graph = circuits.trace(f, clean)
    heads = [c for c in graph.components if c.kind == "head"]
    if len({c.module for c in heads}) != 1:
        raise ValueError("the fig2 model has one attention layer")
    attention = model.bert.encoder.get_submodule(heads[0].module)
    n_heads = len(heads)
    rows: list[dict[str, Any]] = []

    def add(method: str, corruption: str, scores: Any, tops: Any) -> None:
        main = max(heads, key=lambda c: _head_into_logits(scores, c.name)).name
        for c in heads:
            q_top, k_top = tops(c)
            rows.append(
                {
                    "method": method,
                    "corruption": corruption,
                    "head": c.name,
                    "main_head": c.name == main,
                    "n": len(ids),
                    **recovery(q_top, k_top, repeat),
                }
            )

    for method, sr in (
        ("MaxProduct", MaxProduct("absolute")),
        ("SumProduct", SumProduct()),
    ):
        add(
            method,
            "",
            graph.edge_flows(sr),
            lambda c, sr=sr: [
                top_tokens(semiring_token_flows(graph, c.name, s, sr)) for s in "qk"
            ],
        )
    for mode in FIG2_CORRUPTIONS:
        bad_ids = corrupt_fig2(ids, mode, trained.vocab_size, seed=seed)
        with torch.no_grad():
            corrupted = model.bert.embeddings(input_ids=bad_ids)
        for method, steps in (("EAP", None), ("EAP-IG", n_steps)):
            if steps is None:
                edge_scores = circuits.eap(f, clean, corrupted)
            else:
                edge_scores = circuits.eap_ig(f, clean, corrupted, steps)
            tokens = eap_token_scores(f, clean, corrupted, attention, n_heads, steps)
            add(
                method,
                mode,
                edge_scores,
                lambda c, t=tokens: [top_tokens(t[c.head, s]) for s in "qk"],
            )
    attention_peak = {
        c.name: round(float((attn[:, c.head].argmax(-1) == repeat).float().mean()), 4)
        for c in heads
    }
    main_rows = {
        f"{r['method']}" + (f" ({r['corruption']})" if r["corruption"] else ""): {
            k: r[k] for k in ("head", "q_first", "k_repeat", "both")
        }
        for r in rows
        if r["main_head"]
    }
    summary = {
        "model": "the fig2 model: 1-layer BERT on FirstTokenRepeatedOnce "
        f"(validation accuracy {trained.val_accuracy})",
        "sentences": len(ids),
        "source": "the encoder's input (the embeddings module's output)",
        "target": "the correct class's logit (class 1)",
        "known_mechanism": "position 0's query read takes the first token; its key "
        "read, the repeated token",
        "corruptions": {
            "repeat": "the repeat replaced by a token absent from the sentence",
            "first+repeat": "the first token and its repeat replaced by two distinct "
            "absent tokens",
        },
        "eap_ig_steps": n_steps,
        "chance_k_repeat": round(1 / ids.shape[1], 4),
        "attention_of_position_0_peaks_at_repeat": attention_peak,
        "main_head": main_rows,
        "note": "The classifier reads position 0 only, so only the first token's "
        "query reaches the output: every method's q read has flow at token 0 alone, "
        "by construction. EAP's per-token score is zero wherever the corruption "
        "leaves the embedding unchanged.",
    }
    return rows, summary


@dataclass(frozen=True)
class Fig2CircuitScale:
    n_sentences: int | None
    n_steps: int


FIG2_CIRCUIT_SCALES = {
    "full": Fig2CircuitScale(None, 20),
    "quick": Fig2CircuitScale(40, 3),
}


@register_reproduction(
    "fig2-circuits",
    "circuits: which token each head's query and key read gets its flow from on the "
    "fig2 model, by MaxProduct, SumProduct, EAP and EAP-IG",
)
def reproduce_fig2_circuits(out_dir: Path, options: ReproduceOptions) -> list[Path]:
    """Write ``fig2_circuits.csv`` and ``fig2_circuits_summary.json``."""
    from .tasks.models import default_model

    name, scale = pick_scale(options, FIG2_CIRCUIT_SCALES)
    n = scale.n_sentences
    if options.max_sentences is not None:
        n = options.max_sentences if n is None else min(n, options.max_sentences)
    start = time.perf_counter()
    rows, summary = fig2_circuit_check(default_model(verbose=True), n, scale.n_steps)
    summary["scale"] = name
    summary["seconds"] = round(time.perf_counter() - start, 1)
    csv_path = write_csv(out_dir / "fig2_circuits.csv", rows, FIG2_COLUMNS)
    summary_path = write_json(out_dir / "fig2_circuits_summary.json", summary)
    for method, r in summary["main_head"].items():
        print(f"{method:24s} " + "  ".join(f"{k}: {v}" for k, v in r.items()))
    return [csv_path, summary_path]
