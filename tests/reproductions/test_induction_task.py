"""The induction-head validation task (``reproductions.tasks.induction``): data,
training, the head scores and the known circuit, ablations, and recording.

The small model is trained once per module (about 5-10 s on one core); every other
check reuses it.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

import captum_semiring as cs
from captum_semiring.reproductions.tasks.induction import (
    EMBED,
    LOGITS,
    SMALL_CONFIG,
    AttentionOnlyTransformer,
    TrainedInductionModel,
    ablate_heads,
    all_edges,
    corrupt,
    evaluate,
    head_name,
    head_scores,
    identify_heads,
    known_circuit,
    repeated_sequences,
    run_with_edges,
    second_half_accuracy,
    target_logit,
    train_induction_model,
    training_batch,
)

pytestmark = pytest.mark.usefixtures("one_thread")

CHANCE = 1 / (SMALL_CONFIG.vocab_size - 1)


@pytest.fixture(scope="module")
def trained() -> TrainedInductionModel:
    return train_induction_model(SMALL_CONFIG, seed=0)


@pytest.fixture(scope="module")
def ids() -> torch.Tensor:
    # held out: another seed than the training batches and the model's eval_ids
    return repeated_sequences(256, SMALL_CONFIG.half_length, SMALL_CONFIG.vocab_size, 7)


# --------------------------------------------------------------------------- data


def test_repeated_sequences_layout() -> None:
    x = repeated_sequences(50, 6, 10, seed=3)
    assert x.shape == (50, 13) and x.dtype == torch.long
    assert (x[:, 0] == 0).all() and (x[:, 1:] >= 1).all() and (x[:, 1:] < 10).all()
    assert torch.equal(x[:, 1:7], x[:, 7:])
    for row in x.tolist():  # distinct within a half: previous occurrences are unique
        assert len(set(row[1:7])) == 6
    assert torch.equal(x, repeated_sequences(50, 6, 10, seed=3))
    assert not torch.equal(x, repeated_sequences(50, 6, 10, seed=4))
    with pytest.raises(ValueError):
        repeated_sequences(1, 10, 10)


def test_training_batch_repeats_with_varying_offsets() -> None:
    L, V = 8, 20
    ids, mask = training_batch(200, L, V, 3, torch.Generator().manual_seed(0))
    assert ids.shape == mask.shape == (200, 2 * L + 1)
    offsets = set()
    for row, m in zip(ids.tolist(), mask.tolist()):
        assert row[0] == 0
        body = row[1:]
        # the repeat length: the last m tokens repeat the m before them
        reps = [k for k in range(3, L + 1) if body[-k:] == body[-2 * k : -k]]
        assert len(reps) == 1
        k = reps[0]
        offsets.add(k)
        assert len(set(body[: 2 * L - k])) == 2 * L - k  # fillers and repeat distinct
        # predictable next tokens: from the second occurrence's first token on
        start = 1 + 2 * L - k
        assert m == [start <= t <= 2 * L - 1 for t in range(2 * L + 1)]
    assert offsets == set(range(3, L + 1))


def test_corrupt_resamples_the_first_half(ids: torch.Tensor) -> None:
    L = SMALL_CONFIG.half_length
    bad = corrupt(ids, seed=1, vocab_size=SMALL_CONFIG.vocab_size)
    assert torch.equal(bad[:, L + 1 :], ids[:, L + 1 :]) and (bad[:, 0] == 0).all()
    assert (bad[:, 1 : L + 1] != ids[:, 1 : L + 1]).float().mean() > 0.8
    fresh = corrupt(
        ids, seed=1, vocab_size=SMALL_CONFIG.vocab_size, keep_second_half=False
    )
    assert torch.equal(fresh[:, 1 : L + 1], fresh[:, L + 1 :])
    assert (fresh[:, L + 1 :] != ids[:, L + 1 :]).float().mean() > 0.8


# --------------------------------------------------------------------------- model


def test_model_runs_from_embeddings_and_patterns_are_causal() -> None:
    torch.manual_seed(0)
    model = AttentionOnlyTransformer(SMALL_CONFIG)
    x = repeated_sequences(3, SMALL_CONFIG.half_length, SMALL_CONFIG.vocab_size, 0)
    assert torch.allclose(model(inputs_embeds=model.embed(x)), model(x))
    pats = model.attention_patterns(x)
    T = x.shape[1]
    assert pats.shape == (2, 3, SMALL_CONFIG.n_heads, T, T)
    assert torch.allclose(pats.sum(-1), torch.ones(()))
    assert (pats.triu(diagonal=1) == 0).all()
    names = {n for n, _ in model.named_modules()}
    assert {"embed", "pos_embed", "unembed", "blocks.1.attn.q", "blocks.1.attn.o"} <= (
        names
    )


def test_head_scores_read_the_right_diagonals() -> None:
    torch.manual_seed(0)
    model = AttentionOnlyTransformer(SMALL_CONFIG)
    x = repeated_sequences(4, SMALL_CONFIG.half_length, SMALL_CONFIG.vocab_size, 0)
    L, T = SMALL_CONFIG.half_length, x.shape[1]
    pats = model.attention_patterns(x)
    s = head_scores(model, x)
    for layer in range(2):
        for h in range(SMALL_CONFIG.n_heads):
            p = pats[layer, :, h]
            prev = sum(p[:, t, t - 1].mean() for t in range(1, T)) / (T - 1)
            # the token at t (second half) last occurred at t - L; the next one after
            ind = sum(p[:, t, t - L + 1].mean() for t in range(L + 1, 2 * L + 1)) / L
            assert float(s.previous_token[layer, h]) == pytest.approx(float(prev))
            assert float(s.induction[layer, h]) == pytest.approx(float(ind))


# --------------------------------------------------------------------------- training


def test_training_reaches_high_second_half_accuracy(
    trained: TrainedInductionModel, ids: torch.Tensor
) -> None:
    assert trained.accuracy > 0.95
    assert evaluate(trained.model, ids) > 0.95
    torch.manual_seed(0)
    untrained = AttentionOnlyTransformer(SMALL_CONFIG)
    assert evaluate(untrained, ids) < 3 * CHANCE


def test_training_is_deterministic() -> None:
    quick = replace(SMALL_CONFIG, steps=40, lasso_warmup=20)
    a = train_induction_model(quick, seed=3).model.state_dict()
    b = train_induction_model(quick, seed=3).model.state_dict()
    c = train_induction_model(quick, seed=4).model.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_head_scores_find_a_previous_token_and_an_induction_head(
    trained: TrainedInductionModel, ids: torch.Tensor
) -> None:
    heads = identify_heads(trained.model, ids)
    s = heads.scores
    assert len(heads.previous_token) == 1 and len(heads.induction) == 1
    (prev,), (ind,) = heads.previous_token, heads.induction
    assert float(s.previous_token[prev]) > 0.5 and float(s.induction[ind]) > 0.7
    # no positional shortcut: layer 0 does not attend to the answer by itself
    assert float(s.induction[0].max()) < 0.2
    # the other heads are far from both roles
    others_0 = [h for h in range(SMALL_CONFIG.n_heads) if (0, h) != prev]
    others_1 = [h for h in range(SMALL_CONFIG.n_heads) if (1, h) != ind]
    assert float(s.previous_token[0, others_0].max()) < 0.3
    assert float(s.induction[1, others_1].max()) < 0.3


# --------------------------------------------------------------------------- circuit


@pytest.mark.parametrize("mode", ["zero", "mean"])
def test_ablating_the_induction_head_breaks_induction(
    trained: TrainedInductionModel, ids: torch.Tensor, mode: str
) -> None:
    model = trained.model
    heads = identify_heads(model, ids)
    clean = evaluate(model, ids)
    broken = second_half_accuracy(ablate_heads(model, ids, heads.induction, mode), ids)
    assert broken < 2 * CHANCE
    for h in range(SMALL_CONFIG.n_heads):
        if (1, h) not in heads.induction:
            other = second_half_accuracy(ablate_heads(model, ids, [(1, h)], mode), ids)
            assert other > clean - 0.02
    # the previous-token head is needed too
    no_prev = ablate_heads(model, ids, heads.previous_token, mode)
    assert second_half_accuracy(no_prev, ids) < 0.5


def test_known_circuit_edges_are_essential_and_sufficient(
    trained: TrainedInductionModel, ids: torch.Tensor
) -> None:
    model = trained.model
    heads = identify_heads(model, ids)
    (prev,), (ind,) = heads.previous_token, heads.induction
    P, I = head_name(*prev), head_name(*ind)
    core = known_circuit(model, ids, core=True)
    full = known_circuit(model, ids)
    assert core == {(P, I, "k"), (I, LOGITS, "in"), (EMBED, I, "q"), (EMBED, I, "v")}
    assert full == core | {(EMBED, P, s) for s in ("q", "k", "v")}
    edges = all_edges(model)
    assert full < edges and len(edges) == 29
    assert torch.allclose(run_with_edges(model, ids), model(ids), atol=1e-4)
    for edge in full:  # each circuit edge is needed
        assert second_half_accuracy(run_with_edges(model, ids, [edge]), ids) < 0.5
    # the circuit alone does the task
    alone = run_with_edges(model, ids, edges - full)
    assert second_half_accuracy(alone, ids) > 0.85
    # patching from the corrupted run: the query edge changes nothing in the second
    # half, whose tokens the corruption keeps
    bad = corrupt(ids, seed=1, vocab_size=SMALL_CONFIG.vocab_size)
    patched_q = run_with_edges(model, ids, [(EMBED, I, "q")], patch_ids=bad)
    L = SMALL_CONFIG.half_length
    assert torch.allclose(patched_q[:, L + 1 :], model(ids)[:, L + 1 :], atol=1e-4)
    patched_v = run_with_edges(model, ids, [(EMBED, I, "v")], patch_ids=bad)
    assert second_half_accuracy(patched_v, ids) < 0.5


# --------------------------------------------------------------------------- recording


def test_record_sum_product_equals_autograd(trained: TrainedInductionModel) -> None:
    model = trained.model
    x = trained.eval_ids[:4]
    embeds = model.embed(x).detach()
    with cs.record(embeds) as graph:
        out = target_logit(model, x, inputs_embeds=embeds)
    got = graph.backward(out, cs.SumProduct())[embeds]
    leaf = embeds.clone().requires_grad_(True)
    (want,) = torch.autograd.grad(
        target_logit(model, x, inputs_embeds=leaf).sum(), leaf
    )
    assert got.shape == embeds.shape
    assert float(want.abs().max()) > 0
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    # the target is the correct next token's logit at 2L - 1
    assert torch.equal(out.detach(), model(x)[torch.arange(4), -2, x[:, -1]])
