"""Single paths: hop weights multiply out to the value, and hops name modules."""

from __future__ import annotations

import pytest
from builders import two_layer_mlp

import captum_semiring as cs


def test_max_path_multiplies_out_and_matches_result():
    net, x = two_layer_mlp()
    with cs.record(x) as graph:
        out = net(x)[:, 0]
    for sign in ("positive", "negative", "absolute"):
        res = graph.backward(out, cs.MaxProduct(sign))
        for index in [(0, 0), (2, 3)]:
            path = res.path(x, index)
            assert path.value == pytest.approx(
                float(res[x][index]), rel=1e-9, abs=1e-15
            )
            assert path.product() == pytest.approx(path.value, rel=1e-9, abs=1e-15)
            assert path.hops[-1].op == "aten.select.int"
            assert str(path).startswith("path value")


def test_minilm_top_path_names_its_modules():
    from captum_semiring.reproductions.tasks import load_minilm

    model, tokenizer = load_minilm()
    enc = tokenizer("the keys to the cabinet are on the table", return_tensors="pt")
    with cs.record(model.embeddings) as graph:
        out = model(**enc).last_hidden_state[:, 0, 0]
    res = graph.backward(out, "max")
    token_values = res.aggregate(model.embeddings, dim=-1)[0]
    token = int(token_values.argmax())
    hidden = int(res[model.embeddings][0, token].argmax())
    path = res.path(model.embeddings, (0, token, hidden))
    names = {name for name, _ in model.named_modules()}
    assert all(hop.module in names for hop in path.hops)
    layers = {m.split(".")[2] for m in path.modules() if m.startswith("encoder.layer.")}
    assert layers == {str(i) for i in range(6)}  # the path crosses every layer
    assert path.product() == pytest.approx(path.value, rel=1e-4)
    assert path.value == pytest.approx(float(token_values[token]), rel=1e-4)
