"""The fig2 model's circuit check (``reproduce fig2-circuits``): per-token read flows
add up to the edge flows, the autograd read gradients and per-token EAP scores agree
with the component graph's, the recovery fractions on a hand-made case, and the real
model's check on a few sentences."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor

from captum_semiring import circuits
from captum_semiring.reproductions import circuits as repro
from captum_semiring.reproductions.registry import ReproduceOptions, available
from captum_semiring.reproductions.tasks.models import default_model
from captum_semiring.semirings import SumProduct

N = 12


@pytest.fixture(scope="module")
def setup() -> tuple[Any, Tensor, Callable[[Tensor], Tensor], Tensor]:
    trained = default_model()
    model = trained.model.eval()
    X, y = trained.data["val"]
    ids = X[y == 1][:N]
    f = repro.fig2_forward(model, torch.ones(N, dtype=torch.long))
    with torch.no_grad():
        clean = model.bert.embeddings(input_ids=ids)
    return trained, ids, f, clean


def _heads(graph: circuits.ComponentGraph) -> list[circuits.Component]:
    return [c for c in graph.components if c.kind == "head"]


def _index(c: circuits.Component) -> int:
    assert c.head is not None
    return c.head


def test_forward_from_encoder_input_is_the_model(setup: Any) -> None:
    trained, ids, f, clean = setup
    with torch.no_grad():
        assert torch.allclose(f(clean), trained.model(ids).logits[:, 1], atol=1e-6)


def test_token_read_flows_sum_to_the_edges_into_the_read(setup: Any) -> None:
    _, _, f, clean = setup
    graph = circuits.trace(f, clean)
    sr = SumProduct()
    edges = graph.edge_flows(sr)
    per_edge = edges.finalize()  # (edges, batch)
    heads = _heads(graph)
    assert len(heads) == 2
    for c in heads:
        for slot in ("q", "k", "v"):
            tokens = repro.semiring_token_flows(graph, c.name, slot, sr)
            assert tokens.shape == clean.shape[:2]
            into = [
                i
                for i, e in enumerate(edges.edges)
                if e.downstream == c.name and e.slot == slot
            ]
            assert into  # embed feeds every read of the one layer
            expected = per_edge[into].sum(0)
            torch.testing.assert_close(tokens.sum(-1), expected, rtol=1e-4, atol=1e-6)


def test_autograd_read_gradients_are_the_graphs_sum_product_flows(
    setup: Any,
) -> None:
    trained, _, f, clean = setup
    graph = circuits.trace(f, clean)
    heads = _heads(graph)
    attention = trained.model.bert.encoder.get_submodule(heads[0].module)
    grads = repro.read_gradients(f, clean, attention, len(heads))
    for c in heads:
        for slot in ("q", "k"):
            flow = graph.read_flow(c.name, slot, "sum")[0]  # (batch, tokens, hidden)
            torch.testing.assert_close(
                grads[_index(c), slot], flow, rtol=1e-4, atol=1e-7
            )
    # the heads differ: a head mix-up would fail above
    assert not torch.allclose(grads[0, "k"], grads[1, "k"])


@pytest.mark.parametrize("mode", repro.FIG2_CORRUPTIONS)
@pytest.mark.parametrize("n_steps", [None, 3])
def test_eap_token_scores_sum_to_the_eap_edges(
    setup: Any, mode: str, n_steps: int | None
) -> None:
    trained, ids, f, clean = setup
    bad = repro.corrupt_fig2(ids, mode, trained.vocab_size, seed=1)
    with torch.no_grad():
        corrupted = trained.model.bert.embeddings(input_ids=bad)
    if n_steps is None:
        scores = circuits.eap(f, clean, corrupted)
    else:
        scores = circuits.eap_ig(f, clean, corrupted, n_steps)
    per_edge = scores.finalize()
    graph = circuits.trace(f, clean)
    heads = _heads(graph)
    attention = trained.model.bert.encoder.get_submodule(heads[0].module)
    tokens = repro.eap_token_scores(f, clean, corrupted, attention, len(heads), n_steps)
    for c in heads:
        for slot in ("q", "k"):
            i = scores.edges.index(circuits.Edge("embed", c.name, slot))
            per_token = tokens[_index(c), slot]
            # float32 sums in another order: their round-off scales with the terms
            atol = 1e-6 * max(1.0, float(per_token.abs().sum(-1).max()))
            torch.testing.assert_close(
                per_token.sum(-1), per_edge[i], rtol=1e-4, atol=atol
            )
    changed = bad != ids
    for c in heads:
        # EAP's per-token score lives where the corruption changed the embedding
        assert bool((tokens[_index(c), "k"][~changed] == 0).all())


def test_corruptions_remove_the_repeat_only() -> None:
    ids = torch.tensor([[3, 5, 3, 7], [9, 9, 1, 2]])
    assert repro.repeat_positions(ids).tolist() == [2, 1]
    for mode, count in (("repeat", 1), ("first+repeat", 2)):
        bad = repro.corrupt_fig2(ids, mode, vocab_size=20, seed=0)
        assert ((bad != ids).sum(1) == count).all()
        assert not (bad[:, 1:] == bad[:, :1]).any()  # label 0
        for b in range(len(ids)):
            new = bad[b][bad[b] != ids[b]].tolist()
            assert len(set(new)) == count  # distinct, and absent from the sentence
            assert not set(new) & set(ids[b].tolist())
    with pytest.raises(ValueError):
        repro.repeat_positions(torch.tensor([[1, 2, 3]]))
    with pytest.raises(ValueError):
        repro.corrupt_fig2(ids, "other", 20)


def test_recovery_on_a_hand_made_case() -> None:
    # 4 sentences of 4 tokens; the repeat at 2, 1, 3, 2
    repeat = torch.tensor([2, 1, 3, 2])
    q = torch.tensor(
        [
            [0.9, 0.1, 0.0, 0.0],  # first: right
            [-2.0, 0.5, 0.0, 0.0],  # magnitude, not sign: right
            [0.1, 0.3, 0.0, 0.0],  # wrong
            [0.0, 0.0, 0.0, 0.0],  # no flow
        ]
    )
    k = torch.tensor(
        [
            [0.1, 0.0, 0.5, 0.2],  # repeat: right
            [0.3, -0.4, 0.1, 0.0],  # repeat by magnitude: right
            [0.9, 0.0, 0.1, 0.2],  # first token: wrong
            [0.0, 0.0, 0.0, 0.0],  # no flow: wrong
        ]
    )
    q_top, k_top = repro.top_tokens(q), repro.top_tokens(k)
    assert q_top.tolist() == [0, 0, 1, -1]
    assert k_top.tolist() == [2, 1, 0, -1]
    assert repro.recovery(q_top, k_top, repeat) == {
        "q_first": 0.5,
        "k_repeat": 0.5,
        "both": 0.5,
        "k_first": 0.25,
        "q_zero_flow": 0.25,
        "k_zero_flow": 0.25,
    }
    # sentence 2 has q right and k wrong, sentence 0 both right: "both" is per sentence
    k_top2 = torch.tensor([0, 1, 3, 2])
    assert repro.recovery(q_top, k_top2, repeat)["both"] == 0.25


def test_reproduce_fig2_circuits_on_the_real_model(tmp_path: Path) -> None:
    paths = available()["fig2-circuits"].run(
        tmp_path, ReproduceOptions(max_sentences=24, extra={"scale": "quick"})
    )
    assert {p.name for p in paths} == {
        "fig2_circuits.csv",
        "fig2_circuits_summary.json",
    }
    with (tmp_path / "fig2_circuits.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert tuple(rows[0]) == repro.FIG2_COLUMNS
    methods = {(r["method"], r["corruption"]) for r in rows}
    assert methods == {
        ("MaxProduct", ""),
        ("SumProduct", ""),
        *((m, c) for m in ("EAP", "EAP-IG") for c in repro.FIG2_CORRUPTIONS),
    }
    assert len(rows) == 2 * len(methods)  # two heads each
    for key in methods:
        mine = [r for r in rows if (r["method"], r["corruption"]) == key]
        assert sum(r["main_head"] == "True" for r in mine) == 1
    for r in rows:
        assert int(r["n"]) == 24
        fractions = {c: float(r[c]) for c in repro.FIG2_COLUMNS[5:]}
        assert fractions["both"] <= min(fractions["q_first"], fractions["k_repeat"])
        if r["corruption"] == "repeat":
            # the first token's embedding is unchanged: EAP gives its query nothing,
            # and the repeat is the only changed token the key can point at
            assert fractions["q_zero_flow"] == 1.0 and fractions["k_repeat"] == 1.0
        else:
            # the classifier reads position 0 alone: only the first token's query
            # reaches the output
            assert fractions["q_first"] == 1.0
            # the key read finds the repeat well above chance (1 in 10): 6 of 24
            # happen by chance with probability 0.03 (the trained model, and so
            # the exact fraction, differs from one CPU to another)
            assert fractions["k_repeat"] >= 0.25
    summary = json.loads((tmp_path / "fig2_circuits_summary.json").read_text())
    assert summary["sentences"] == 24 and summary["scale"] == "quick"
    assert set(summary["main_head"]) == {
        m + (f" ({c})" if c else "") for m, c in methods
    }
