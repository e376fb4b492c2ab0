"""The component graph on real architectures (random-init, padded batches).

Every path from the input to the output enters the logits' read through exactly one
edge, so under SumProduct the edges into the logits add up to the gradient summed
over the input, and under MaxProduct their best is the best path. The component
counts are the models' own: 2 layers of 2 heads and one MLP each in the zoo's
configs.
"""

from __future__ import annotations

import pytest
import torch
from arch_zoo import _record, build

import captum_semiring as cs
from captum_semiring import circuits

# (case, heads, MLPs)
CASES = [
    ("bert-eager", 4, 2),  # post-LayerNorm
    ("gpt2-sdpa", 4, 2),  # fused q/k/v projection, sdpa decomposed
    ("llama-sdpa", 4, 2),  # grouped keys and values, gated MLP, rotary
    ("gemma2-eager", 4, 2),  # norms after attention and MLP
    ("phi-eager", 4, 2),  # attention and MLP in parallel
    ("opt-eager", 4, 2),  # (batch * tokens, hidden) between components
    ("mixtral-bmm-sdpa", 4, 2),  # experts: one MLP component per layer
    ("torch-encoder-layer", 2, 1),  # nn.TransformerEncoderLayer
]


@pytest.mark.parametrize("case_id,heads,mlps", CASES)
def test_zoo_component_graph(case_id: str, heads: int, mlps: int) -> None:
    case = build(case_id)
    graph, key, out = _record(case, case.inputs)
    cg = circuits.ComponentGraph(graph, out)
    kinds = [c.kind for c in cg.components]
    assert kinds.count("head") == heads and kinds.count("mlp") == mlps, kinds
    into_logits = [i for i, e in enumerate(cg.edges) if e.downstream == "logits"]
    res = graph.backward(out, "sum")[key]
    want = res.sum(tuple(range(1, res.dim())))
    got = cg.edge_flows("sum").finalize()[into_logits].sum(0)
    atol = 1e-6 * float(res.abs().max()) * res[0].numel()
    torch.testing.assert_close(got, want, rtol=1e-6, atol=atol)
    best = graph.backward(out, cs.MaxProduct("absolute"))[key].flatten(1)
    want_best = best.gather(1, best.abs().argmax(1, keepdim=True))[:, 0]
    got_all = cg.edge_flows(cs.MaxProduct("absolute")).finalize()[into_logits]
    got_best = got_all.gather(0, got_all.abs().argmax(0, keepdim=True))[0]
    # rtol: some models compute norms in float32 inside a float64 model; the two
    # sweeps round those nodes' values in different orders
    torch.testing.assert_close(got_best, want_best, rtol=1e-6, atol=1e-12)
