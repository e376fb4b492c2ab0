"""Edge patching and EAP / EAP-IG against a hand-written forward of the toy model
with explicit per-head, per-slot residual inputs (tests/circuit_models.py)."""

from __future__ import annotations

import random

import pytest
import torch
from circuit_models import reference_run, toy

from captum_semiring import circuits


@pytest.fixture(scope="module")
def setup():
    model, x = toy(batch=3, tokens=4, d=8, heads=2, layers=2, vocab=5)
    corrupted = torch.randn_like(x)
    f = lambda e: model(e)[:, -1, 1]  # noqa: E731
    return model, x, corrupted, f


def _metric(out: torch.Tensor) -> torch.Tensor:
    return out[:, -1, 1]


def test_patched_runs_equal_the_reference(setup) -> None:
    model, x, corrupted, f = setup
    patching = circuits.EdgePatching(f, x, corrupted)
    edges = patching.graph.edges
    with torch.no_grad():
        _, corrupt_writes, _ = reference_run(model, corrupted, lambda e: True, None)
    rng = random.Random(0)
    for trial in range(6):
        keep = {e for e in edges if rng.random() < trial / 5}
        keys = {(e.upstream, e.downstream, e.slot) for e in keep}
        with torch.no_grad():
            want, _, _ = reference_run(model, x, keys.__contains__, corrupt_writes)
        torch.testing.assert_close(patching.output(keep), _metric(want))
    torch.testing.assert_close(patching.output(edges), f(x).detach())
    torch.testing.assert_close(patching.output([]), f(corrupted).detach())
    assert patching.faithfulness(edges) == pytest.approx(1.0)
    assert patching.faithfulness([]) == pytest.approx(0.0)


@pytest.mark.parametrize("mode", ["zero", "mean"])
def test_zero_and_mean_patching_equal_the_reference(setup, mode: str) -> None:
    model, x, _, f = setup
    patching = circuits.EdgePatching(f, x, mode=mode)
    with torch.no_grad():
        _, writes, _ = reference_run(model, x, lambda e: True, None)
    if mode == "zero":
        replacement = {u: torch.zeros_like(w) for u, w in writes.items()}
    else:
        replacement = {
            u: w.mean(0, keepdim=True).expand_as(w) for u, w in writes.items()
        }
    keep = set(patching.graph.edges[::3])
    keys = {(e.upstream, e.downstream, e.slot) for e in keep}
    with torch.no_grad():
        want, _, _ = reference_run(model, x, keys.__contains__, replacement)
    torch.testing.assert_close(patching.output(keep), _metric(want))


def _reference_gradients(model, point):
    point = point.detach().requires_grad_()
    out, writes, reads = reference_run(model, point, lambda e: True, None)
    _metric(out).sum().backward()
    return writes, {k: v.grad for k, v in reads.items()}


def test_eap_equals_gradient_times_activation_difference(setup) -> None:
    model, x, corrupted, f = setup
    scores = circuits.eap(f, x, corrupted)
    writes, grads = _reference_gradients(model, x)
    with torch.no_grad():
        _, corrupt_writes, _ = reference_run(model, corrupted, lambda e: True, None)
    got = scores.finalize()
    for i, e in enumerate(scores.edges):
        diff = writes[e.upstream].detach() - corrupt_writes[e.upstream]
        want = (diff * grads[e.downstream, e.slot]).sum((1, 2))
        torch.testing.assert_close(got[i], want, msg=str(e))


def test_eap_ig_averages_gradients_along_the_line(setup) -> None:
    model, x, corrupted, f = setup
    steps = 4
    scores = circuits.eap_ig(f, x, corrupted, n_steps=steps)
    with torch.no_grad():
        _, clean_writes, _ = reference_run(model, x, lambda e: True, None)
        _, corrupt_writes, _ = reference_run(model, corrupted, lambda e: True, None)
    mean_grads: dict = {}
    for k in range(1, steps + 1):
        point = corrupted + k / steps * (x - corrupted)
        _, grads = _reference_gradients(model, point)
        for key, g in grads.items():
            mean_grads[key] = mean_grads.get(key, 0) + g / steps
    got = scores.finalize()
    for i, e in enumerate(scores.edges):
        diff = clean_writes[e.upstream] - corrupt_writes[e.upstream]
        want = (diff * mean_grads[e.downstream, e.slot]).sum((1, 2))
        torch.testing.assert_close(got[i], want, msg=str(e))
    # one step is EAP at the clean input
    torch.testing.assert_close(
        circuits.eap_ig(f, x, corrupted, n_steps=1).values,
        circuits.eap(f, x, corrupted).values,
    )
