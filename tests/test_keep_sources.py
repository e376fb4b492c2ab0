"""``graph.backward(..., keep="sources")``: the same source values as keeping every
value, about one layer's values alive at a time, and a clear error, never a silent
zero, for what needs the freed values."""

from __future__ import annotations

import gc
import weakref

import pytest
import torch
from builders import tiny_bert_config
from transformers import BertModel

import captum_semiring as cs

SEMIRINGS = ["sum", cs.MaxProduct("absolute"), "entropy", "logsum", cs.TopK(3)]


@pytest.fixture(scope="module")
def bert():
    torch.manual_seed(0)
    model = BertModel(tiny_bert_config(num_hidden_layers=3)).eval()
    ids = torch.randint(5, 30, (2, 7))
    mask = torch.ones(2, 7, dtype=torch.long)
    mask[1, 5:] = 0  # a padded example
    layer = model.embeddings
    with cs.record(layer, cs.layer_input(model.encoder.layer[1])) as graph:
        out = (
            model(input_ids=ids, attention_mask=mask)
            .last_hidden_state[:, 0, :3]
            .sum(-1)
        )
    return graph, out, layer, model


@pytest.mark.parametrize("semiring", SEMIRINGS, ids=str)
def test_sources_get_the_same_values(bert, semiring):
    graph, out, layer, model = bert
    every = graph.backward(out, semiring)
    sources = graph.backward(out, semiring, keep="sources")
    for item in (layer, cs.layer_input(model.encoder.layer[1])):
        assert torch.equal(sources[item], every[item])
    assert len(sources.env) < len(every.env) / 10


def _sweep_and_count(graph, out, keep, monkeypatch):
    """A MaxProduct sweep, and how many of the values it made are still alive (by
    weak references) while its result is held, of how many."""
    from captum_semiring import _engine

    made: list[weakref.ref] = []
    accumulate = _engine._accumulate

    def spy(sr, env, node, value, dtype):
        accumulate(sr, env, node, value, dtype)
        made.append(weakref.ref(env[node]))

    monkeypatch.setattr(_engine, "_accumulate", spy)
    res = graph.backward(out, "max", keep=keep)
    gc.collect()
    return res, sum(r() is not None for r in made), len(made)


def test_freed_values_are_dropped(bert, monkeypatch):
    """With the result still held, of all the values the sweep made only the
    sources' are alive: a weak reference to every other one is dead."""
    graph, out, layer, _ = bert
    res, alive, made = _sweep_and_count(graph, out, "sources", monkeypatch)
    assert alive <= len(graph.sources), f"{alive} of {made} values alive"
    assert res[layer].abs().sum() > 0


def test_what_needs_freed_values_raises(bert):
    graph, out, layer, model = bert
    res = graph.backward(out, "max", keep="sources")
    with pytest.raises(ValueError, match="keep='sources'"):
        res.path(layer, (0, 1, 2))
    with pytest.raises(ValueError, match="keep='sources'"):
        res.branch_flow(cs.layer_input(model.encoder.layer[1]))
    # the summary traces paths too: it must not save none for want of values
    with pytest.raises(ValueError, match="keep='sources'"):
        res.summary()
    inner = model.encoder.layer[0].output.dense
    with cs.record(layer) as g2:
        hidden = []
        handle = inner.register_forward_hook(lambda m, a, o: hidden.append(o))
        y = model(input_ids=torch.randint(5, 30, (1, 4))).last_hidden_state[:, 0, 0]
        handle.remove()
    with pytest.raises(ValueError, match="keep='sources'"):
        g2.backward(y, "sum", keep="sources")[hidden[0]]
    with pytest.raises(ValueError, match="keep must be"):
        graph.backward(out, "max", keep="some")


# --- keep="checkpoints": dropped values swept again from snapshots -----------------
@pytest.mark.parametrize("semiring", [cs.MaxProduct("absolute"), cs.TopK(3)], ids=str)
def test_checkpoints_give_the_paths_and_branch_flow_of_every_value(bert, semiring):
    """Paths (every rank, from elements in both examples), branch flow and an inner
    tensor's value from a checkpointed sweep equal those of a sweep that kept every
    value, exactly: the segments are swept again with the same steps."""
    graph, out, layer, model = bert
    every = graph.backward(out, semiring)
    checked = graph.backward(out, semiring, keep="checkpoints")
    inner = cs.layer_input(model.encoder.layer[1])
    assert torch.equal(checked[layer], every[layer])
    assert torch.equal(checked[inner], every[inner])
    ranks = range(getattr(semiring, "k", 1))
    for index in [(0, 1, 2), (1, 4, 0), (1, 6, 5)]:  # (1, 6): a padded position
        for rank in ranks:
            want = every.path(layer, index, rank=rank).to_dict()
            assert checked.path(layer, index, rank=rank).to_dict() == want
    for by in ("module", "op"):
        a, b = checked.branch_flow(inner, by=by), every.branch_flow(inner, by=by)
        assert a.labels == b.labels and torch.equal(a.values, b.values)


def test_checkpoints_hold_few_values(bert, monkeypatch):
    """After a checkpointed sweep, alive are the sources' values and the snapshots'
    (a few per segment), far fewer than a sweep makes."""
    graph, out, layer, _ = bert
    res, alive, made = _sweep_and_count(graph, out, "checkpoints", monkeypatch)
    segments = len(res.checkpoints.saved)  # 13 on this toy, with 2.7 values each
    assert alive <= len(graph.sources) + 4 * segments, f"{alive} of {made}"
    assert res.path(layer, (0, 1, 2)).hops  # and the path is still there


def test_sweeps_that_free_values_do_not_cache_their_maps():
    """keep='sources' and 'checkpoints' drop the local maps they build (derived
    tensors, up to a fifth of the peak); sweeping the graph again builds them again,
    to the same numbers. keep='all' caches them."""
    from captum_semiring import _engine

    torch.manual_seed(1)
    net = torch.nn.Sequential(
        torch.nn.Linear(4, 6), torch.nn.GELU(), torch.nn.Linear(6, 1)
    )
    x = torch.randn(3, 4)
    with cs.record(x) as graph:
        out = net(x).sum(-1)
    first = graph.backward(out, "max", keep="sources")[x]
    assert not _engine._cache(graph).maps
    checked = graph.backward(out, "max", keep="checkpoints")
    checked.path(x, (0, 1))
    assert torch.equal(checked[x], first)
    swept_again = graph.backward(out, "max", keep="sources")[x]
    assert torch.equal(swept_again, first)
    graph.backward(out, "max", keep="all")
    assert len(_engine._cache(graph).maps) == len(graph.records)
