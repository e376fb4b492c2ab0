"""Native, compiled and eager semiring kernels give the same numbers."""

from __future__ import annotations

import pytest
import torch

import captum_semiring as cs
from captum_semiring import kernels
from captum_semiring.kernels import native

BACKENDS = ["native", "compiled", "eager"]


def use_backend(monkeypatch, backend: str) -> None:
    """Route the kernels to one backend: native; compiled (native off, every size
    compiled); or eager (both off). Size thresholds are off."""
    monkeypatch.setenv("CAPTUM_SEMIRING_NATIVE", "1" if backend == "native" else "0")
    monkeypatch.setenv("CAPTUM_SEMIRING_COMPILE", "1" if backend == "compiled" else "0")
    monkeypatch.setattr(kernels, "COMPILE_THRESHOLD", 0)
    monkeypatch.setattr(kernels, "TREE_MERGE_MIN", 0)
    if backend == "native" and not native.available(torch.zeros(1)):
        pytest.skip("no C++ compiler for the native kernels")


@pytest.mark.parametrize("backend", ["native", "compiled"])
@pytest.mark.parametrize("semiring", [cs.MaxProduct("absolute"), cs.TopK(3)])
def test_fast_kernels_match_eager(monkeypatch, semiring, backend):
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(6, 7), torch.nn.Tanh(), torch.nn.Linear(7, 1)
    )
    x = torch.randn(3, 6)
    with cs.record(x) as graph:
        out = net(x)[:, 0]
    use_backend(monkeypatch, "eager")
    eager = graph.backward(out, semiring)[x]
    use_backend(monkeypatch, backend)
    fast = graph.backward(out, semiring)[x]
    torch.testing.assert_close(fast, eager, rtol=0, atol=0)


def test_eager_kernels_chunk_rows(monkeypatch):
    """Row chunks under a small memory budget give the unchunked result."""
    torch.manual_seed(0)
    pos, w = torch.randn(2, 9, 5), torch.randn(2, 5, 4)
    neg = pos - 1.0
    whole = kernels.max_times(pos, neg, w)
    monkeypatch.setattr(kernels, "CHUNK_ELEMENTS", 7)
    use_backend(monkeypatch, "eager")
    for a, b in zip(kernels.max_times(pos, neg, w), whole, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def _path_lists(k: int, shape: tuple[int, ...], generator: torch.Generator):
    """TopK values: k non-negative paths, best first, then k negative ones, most
    negative first; NaN marks missing paths (whole inputs without any, too)."""
    mags = torch.rand(2, k, *shape, generator=generator).sort(1, descending=True).values
    mags = mags.round(decimals=1)  # ties
    count = torch.randint(0, k + 1, (2, 1, *shape), generator=generator)
    mags = torch.where(
        torch.arange(k).view(1, k, *[1] * len(shape)) < count, mags, torch.nan
    )
    return torch.cat((mags[0], -mags[1]))


@pytest.mark.parametrize("backend", ["native", "compiled"])
# fewer inputs than k, and more; outputs in one vector, and over two column tiles;
# and mostly zero-valued paths (a causal model's positions that the target misses),
# whose heads all tie with the k-th best
@pytest.mark.parametrize(
    "n, p, zeros", [(3, 7, 0), (40, 7, 0), (70, 300, 0), (60, 40, 0.9)]
)
def test_fast_top_k_times_matches_eager(monkeypatch, n, p, zeros, backend):
    k = 5
    generator = torch.Generator().manual_seed(n)
    values = _path_lists(k, (2, 6, n), generator)
    zeroed = torch.rand(2, 6, n, generator=generator) < zeros
    values = torch.where(zeroed & ~values.isnan(), 0.0, values)
    w = torch.randn(2, n, p, generator=generator).round(decimals=1)
    w[0, 0] = 0.0  # a zero weight
    use_backend(monkeypatch, "eager")
    eager = kernels.top_k_times(values, w, k)
    use_backend(monkeypatch, backend)
    fast = kernels.top_k_times(values, w, k)
    torch.testing.assert_close(fast, eager, rtol=0, atol=0, equal_nan=True)
    # Against all 2k·n candidates of every output. (Zero weights are left out here:
    # a negative path times 0 gives -0.0, which TopK keeps on the negative side.)
    w = torch.where(w == 0, 0.5, w)
    got = kernels.top_k_times(values, w, k)
    cand = values.unsqueeze(-1) * w.unsqueeze(0).unsqueeze(-3)  # (2k, 2, 6, n, p)
    cand = cand.movedim(-2, 1).flatten(0, 1)  # (2k·n, 2, 6, p)
    hi = torch.nan_to_num(cand, nan=-torch.inf).topk(k, 0).values
    lo = torch.nan_to_num(cand, nan=torch.inf).topk(k, 0, largest=False).values
    want = torch.cat((hi.where(hi >= 0, torch.nan), lo.where(lo < 0, torch.nan)))
    torch.testing.assert_close(got, want, rtol=0, atol=0, equal_nan=True)


@pytest.mark.parametrize(
    "pos_shape, w_shape",
    [
        ((2, 3, 9, 5), (5, 4)),  # a 2-d weight: batch folded into the rows
        ((1, 9, 5), (3, 5, 4)),  # a broadcast batch
        ((2, 1, 9, 5), (3, 5, 4)),
        ((9, 5), (5, 4)),
    ],
)
@pytest.mark.parametrize("backend", ["native", "compiled"])
def test_fast_max_times_matches_eager_on_every_layout(
    monkeypatch, pos_shape, w_shape, backend
):
    generator = torch.Generator().manual_seed(0)
    pos = torch.randn(pos_shape, generator=generator)
    neg = pos - torch.rand(pos_shape, generator=generator)
    w = torch.randn(w_shape, generator=generator)
    pos[..., 0, 1] = -torch.inf  # no path
    use_backend(monkeypatch, "eager")
    eager = kernels.max_times(pos, neg, w)
    use_backend(monkeypatch, backend)
    fast = kernels.max_times(pos, neg, w)
    for a, b in zip(fast, eager, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("layout", ["contiguous", "transposed", "batched transposed"])
def test_max_times_against_every_product(monkeypatch, backend, dtype, layout):
    """Each output's most positive and most negative ``x_ij · w_jk`` over the
    pairs' both members, by brute force; tile edges (m, p not multiples of the
    native tiles) and a row without any path included. The weight also arrives as
    a transposed view (GPT-2's Conv1D), which the native kernel reads in place."""
    generator = torch.Generator().manual_seed(1)
    pos = torch.randn(2, 7, 37, generator=generator, dtype=dtype)
    neg = pos - torch.rand(2, 7, 37, generator=generator, dtype=dtype)
    w = torch.randn(37, 19, generator=generator, dtype=dtype)
    if layout == "transposed":
        w = w.T.contiguous().T
    elif layout == "batched transposed":
        w = torch.stack((w, -w)).mT.contiguous().mT
    pos[0, 3], neg[0, 3] = -torch.inf, torch.inf  # no path into any input
    pos[1, 2, :5], neg[1, 2, :5] = -torch.inf, torch.inf
    use_backend(monkeypatch, backend)
    hi, lo = kernels.max_times(pos, neg, w)
    live = ~torch.isinf(pos).unsqueeze(-1)
    both = torch.stack((pos, neg)).unsqueeze(-1) * w.unsqueeze(-3)  # (2, 2, 7, 37, 19)
    want_hi = torch.where(live, both.amax(0), -torch.inf).amax(-2)
    want_lo = torch.where(live, both.amin(0), torch.inf).amin(-2)
    assert torch.equal(hi, want_hi) and torch.equal(lo, want_lo)
    assert torch.isinf(hi[0, 3]).all() and (hi[0, 3] < 0).all()


def test_native_kernels_step_aside_for_non_finite_weights(monkeypatch):
    """A NaN weight propagates as in torch's reductions: the native loops, whose
    comparisons would drop it, are not used."""
    use_backend(monkeypatch, "native")
    pos = torch.randn(3, 4)
    w = torch.randn(4, 2)
    w[1, 0] = torch.nan
    hi, lo = kernels.max_times(pos, pos - 1, w)
    assert torch.isnan(hi[:, 0]).all() and torch.isnan(lo[:, 0]).all()
    assert not torch.isnan(hi[:, 1]).any()


def _eager(monkeypatch, fn):
    with monkeypatch.context() as m:
        use_backend(m, "eager")
        return fn()


@pytest.mark.parametrize("where", ["weight nan", "weight inf", "value nan"])
@pytest.mark.parametrize("batched", [False, True])
def test_native_kernels_find_every_non_finite_operand(monkeypatch, where, batched):
    """The kernels check their operands as they read them, each weight once (in its
    batch's first row block): a bad entry in any tile, and in any batch of a batched
    weight, sends the call to torch, whose numbers it then equals."""
    generator = torch.Generator().manual_seed(3)
    b = 2 if batched else 1
    pos = torch.randn(b, 9, 21, generator=generator)
    neg = pos - torch.rand(b, 9, 21, generator=generator)
    w = torch.randn(b, 21, 37, generator=generator)  # 3 column tiles, 3 row blocks
    lists = torch.randn(2, 2, b, 9, 21, generator=generator).abs()
    lists = torch.cat((lists[0].sort(0, descending=True).values, -lists[1]))
    if where == "value nan":
        pos[-1, 7, 3] = neg[-1, 7, 3] = torch.nan
    else:
        w[-1, 3, 35] = torch.nan if where == "weight nan" else torch.inf
    use_backend(monkeypatch, "native")
    got = kernels.max_times(pos, neg, w)
    want = _eager(monkeypatch, lambda: kernels.max_times(pos, neg, w))
    for g, e in zip(got, want, strict=True):
        assert torch.equal(g.nan_to_num(1234.5), e.nan_to_num(1234.5))
    if where != "value nan":  # NaN values mark "no path" in TopK
        got_k = kernels.top_k_times(lists, w, 2)
        want_k = _eager(monkeypatch, lambda: kernels.top_k_times(lists, w, 2))
        assert torch.equal(got_k.nan_to_num(1234.5), want_k.nan_to_num(1234.5))


def test_native_library_is_cached(monkeypatch, tmp_path):
    """A fresh cache builds the library once; a second process reuses it."""
    monkeypatch.setenv("CAPTUM_SEMIRING_CACHE", str(tmp_path))
    if not native.enabled():
        pytest.skip("native kernels are off (CAPTUM_SEMIRING_NATIVE)")
    if native.available(torch.zeros(1)) is False:
        pytest.skip("no C++ compiler for the native kernels")
    path = native.build()
    assert path.parent == tmp_path and path.exists()
    stamp = path.stat().st_mtime_ns
    assert native.build() == path and path.stat().st_mtime_ns == stamp


@pytest.mark.parametrize("backend", ["native", "eager"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_magnitude_log_is_xlogy_of_the_magnitude(monkeypatch, backend, dtype):
    w = torch.randn(5, 7, dtype=dtype)
    w[0, :3] = torch.tensor([0.0, -0.0, 1.0])
    use_backend(monkeypatch, backend)
    magnitude, m_log = kernels.magnitude_log(w.mT)  # a transposed view, too
    assert torch.equal(magnitude, w.mT.abs())
    want = torch.xlogy(w.mT.abs(), w.mT.abs())
    torch.testing.assert_close(m_log, want, rtol=4 * torch.finfo(dtype).eps, atol=0)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", ["max", "sum", "entropy"])
def test_layer_norm_kernels_agree_across_backends(monkeypatch, backend, kind):
    """Every backend against the eager blocks built whole, unchunked, in float64."""
    generator = torch.Generator().manual_seed(2)
    s = torch.randn(9, 13, generator=generator, dtype=torch.float64)
    x = torch.rand(9, 13, generator=generator, dtype=torch.float64)
    values = {"max": [x, x - 0.5], "sum": [x], "entropy": [x, -x]}[kind]
    if kind == "max":  # an input without a path
        values[0][2, 3], values[1][2, 3] = -torch.inf, torch.inf
    k = kernels.layer_norm_block(s)  # (rows, n, n), symmetric
    if kind == "max":
        ext = torch.stack((values[0], values[1])).unsqueeze(-2) * k
        live = ~torch.isinf(values[0]).unsqueeze(-2)
        want = (
            torch.where(live, ext.amax(0), -torch.inf).amax(-1),
            torch.where(live, ext.amin(0), torch.inf).amin(-1),
        )
    else:
        m = k.abs()
        want = ((x.unsqueeze(-2) * m).sum(-1),)
        if kind == "entropy":
            xlogx = torch.xlogy(m, m)
            want += ((values[1].unsqueeze(-2) * m + x.unsqueeze(-2) * xlogx).sum(-1),)
    use_backend(monkeypatch, backend)
    got = kernels.layer_norm_times(kind, s, *values)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_without_a_compiler_the_torch_kernels_take_over(monkeypatch, tmp_path):
    """A machine whose compiler fails gets one warning and the same numbers."""
    pos = torch.randn(3, 4)
    w = torch.randn(4, 2)
    use_backend(monkeypatch, "eager")
    want = kernels.max_times(pos, pos - 1, w)
    monkeypatch.setenv("CAPTUM_SEMIRING_NATIVE", "1")
    monkeypatch.setenv("CAPTUM_SEMIRING_CACHE", str(tmp_path))  # nothing built
    monkeypatch.setenv("CXX", "false")  # a compiler that always fails
    monkeypatch.setattr(native, "_tried", False)
    monkeypatch.setattr(native, "_library", None)
    with pytest.warns(UserWarning, match="native semiring kernels unavailable"):
        got = kernels.max_times(pos, pos - 1, w)
    assert not native.available(pos)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("backend", ["native", "eager"])
@pytest.mark.parametrize("k", [1, 3, 5])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_merge_best_is_keep_best_of_both_lists(monkeypatch, backend, k, dtype):
    """TopK's ⊕ of two sorted path lists, against the k best of their union:
    missing paths (NaN), ties, zeros, both directions, elements not a multiple of
    the kernel's vector."""
    generator = torch.Generator().manual_seed(k)
    use_backend(monkeypatch, backend)
    lists = _path_lists(k, (2, 3, 37), generator).to(dtype)
    a_pos, a_neg = lists[:k], lists[k:]
    lists = _path_lists(k, (2, 3, 37), generator).to(dtype)
    b_pos, b_neg = lists[:k], lists[k:]
    b_pos[:, 0, 0] = 0.0  # zero-valued paths
    for a, b, largest in ((a_pos, b_pos, True), (a_neg, b_neg, False)):
        got = kernels.merge_best(a, b, k, largest)
        want = kernels.keep_best(torch.cat((a, b)), k, largest)
        torch.testing.assert_close(got, want, rtol=0, atol=0, equal_nan=True)


@pytest.mark.parametrize("backend", ["native", "eager"])
@pytest.mark.parametrize("k", [1, 3, 5])
@pytest.mark.parametrize("n", [1, 2, 3, 7, 9])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_best_of_lists_is_keep_best_of_all_lists(monkeypatch, backend, k, n, dtype):
    """TopK's ⊕ over an axis of ``n`` sorted path lists (a tree of merges, odd
    counts leaving one list over), against the k best of all their paths."""
    generator = torch.Generator().manual_seed(10 * k + n)
    use_backend(monkeypatch, backend)
    values = _path_lists(k, (n, 2, 37), generator).to(dtype)
    values[:k, 0, 0, 0] = 0.0  # zero-valued paths
    for lists, largest in ((values[:k], True), (values[k:], False)):
        got = kernels.best_of_lists(lists, k, largest)
        want = kernels.keep_best(lists.flatten(0, 1), k, largest)
        torch.testing.assert_close(got, want, rtol=0, atol=0, equal_nan=True)
