"""The recorder: sources, module paths, in-place writes, and bad input."""

from __future__ import annotations

import subprocess
import sys
import warnings

import pytest
import torch
from builders import tiny_bert
from torch import nn
from torch.nn.modules import module as module_lib
from torch.utils._python_dispatch import _get_current_dispatch_mode

import captum_semiring as cs
from captum_semiring import _capture
from captum_semiring.rules import dense_jacobian


def _global_hooks():
    from torch.nn.modules import module as m

    return len(m._global_forward_hooks), len(m._global_forward_pre_hooks)


def test_layer_input_of_a_padded_hf_batch_is_the_hidden_states():
    # The layer also receives a float attention mask; only the hidden states count.
    model = tiny_bert(layers=2)
    layer = model.encoder.layer[1]
    ids = torch.tensor([[1, 5, 7, 3], [2, 4, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    with cs.record(cs.layer_input(layer)) as graph:
        out = model(ids, attention_mask=mask).last_hidden_state[:, 0].sum()
    got = graph.backward(out, "sum")[cs.layer_input(layer)]

    calls: list[tuple] = []
    handle = layer.register_forward_pre_hook(
        lambda m, args, kwargs: calls.append((args, kwargs)), with_kwargs=True
    )
    try:
        model(ids, attention_mask=mask)
    finally:
        handle.remove()
    (first, *rest), kwargs = calls[0]
    hidden = first.detach().requires_grad_(True)
    o = layer(hidden, *rest, **kwargs)
    o = o[0] if isinstance(o, tuple) else o
    want = torch.autograd.grad(o[:, 0].sum(), hidden)[0]
    assert got.shape == hidden.shape
    torch.testing.assert_close(got, want)


def test_unsupported_op_names_overload_and_module(monkeypatch):
    # svdvals has no rule; past the dense-Jacobian budget it is unsupported.
    monkeypatch.setattr(dense_jacobian, "MAX_ENTRIES", 4)

    class Block(nn.Module):
        def forward(self, x):
            return torch.linalg.svdvals(x).sum()

    model = nn.Sequential(nn.Linear(3, 3), Block())
    x = torch.randn(3, 3)
    before = _global_hooks()
    with pytest.raises(
        cs.UnsupportedOpError,
        match=r"aten\._linalg_svd\.default, and its dense Jacobian \(\d+ × 9 entries\).*module '1'",
    ):
        cs.semiring_grad(model, x, "sum")
    assert _global_hooks() == before
    assert _get_current_dispatch_mode() is None


def test_model_raising_mid_forward_leaves_nothing_installed():
    class Boom(nn.Module):
        def forward(self, x):
            raise RuntimeError("boom")

    model = nn.Sequential(nn.Linear(2, 2), Boom())
    source_module = model[0]
    before = _global_hooks()
    with pytest.raises(RuntimeError, match="boom"):
        with cs.record(source_module, cs.layer_input(model[1])):
            model(torch.randn(1, 2))
    assert _global_hooks() == before
    assert not source_module._forward_hooks and not model[1]._forward_pre_hooks
    assert _get_current_dispatch_mode() is None


def test_output_not_recorded():
    x = torch.randn(2)
    with cs.record(x) as graph:
        pass
    with pytest.raises(ValueError, match="not computed from the sources"):
        graph.backward((x * 2).sum(), "sum")


@pytest.mark.parametrize("dtype", [torch.int64, torch.bool, torch.complex64])
def test_integer_and_complex_sources_are_rejected(dtype):
    with pytest.raises(TypeError, match="floating-point"):
        with cs.record(torch.zeros(3, dtype=dtype)):
            pass


@pytest.mark.parametrize(
    "other, message",
    [
        (lambda x: x[1], "share memory"),
        (lambda x: x.view(4), "share memory"),
        (lambda x: x.detach(), "share memory"),
        (lambda x: x * 2, "computed from tensor source 0"),
    ],
)
def test_sources_that_depend_on_each_other_are_rejected(other, message):
    """A source that is a view of another, or was computed from it, would lose
    the paths between them, which autograd credits to the first (it gave
    res[x] = 1 where autograd gives 1 + 2 x[1])."""
    x = torch.randn(2, 2, requires_grad=True)
    y = other(x)
    with pytest.raises(ValueError, match=message):
        with cs.record(x, y):
            pass
    assert x.requires_grad and not (y.is_leaf and y.requires_grad)


def test_disjoint_views_of_one_tensor_are_independent_sources():
    """Slices of one input (as a tuple of Captum inputs may be) share storage but
    no element, so each is its own source."""
    base = torch.randn(2, 4, dtype=torch.float64)
    a, b = base[:, :2], base[:, 2:]
    with cs.record(a, b) as graph:
        out = (a * b.exp()).sum()
    torch.testing.assert_close(graph.backward(out, "sum")[a], b.exp())


def test_a_complex_intermediate_is_a_clear_error():
    """Paths through complex values have no real weights: rfft(x).abs() used to
    drop the imaginary part's paths silently."""
    x = torch.randn(4)
    with pytest.raises(cs.UnsupportedOpError, match="_fft_r2c.*complex"):
        with cs.record(x):
            torch.fft.rfft(x).abs().sum()


def test_inplace_on_recorded_tensor_is_exact():
    x = torch.randn(4, dtype=torch.float64)
    with cs.record(x) as graph:
        y = x * 2
        z = y * 3  # reads y before it changes
        y.mul_(y)  # then y changes in place
        out = (z + y).sum()
    leaf = x.detach().requires_grad_(True)
    y2 = leaf * 2
    (expected,) = torch.autograd.grad((y2 * 3 + y2 * y2).sum(), leaf)
    torch.testing.assert_close(graph.backward(out, "sum")[x], expected)


def test_inplace_through_an_alias_then_read_is_an_error():
    x = torch.randn(2, 3)
    with pytest.raises(
        cs.RecordingError,
        match=r"changed in place through an alias \(aten\.add_\.Tensor",
    ):
        with cs.record(x):
            y = x * 2
            flat, row = y.view(-1), y[0]
            row.add_(1.0)  # changes y, and its other view flat, too
            (flat * 1).sum()


def test_mutation_after_recording_is_detected():
    x = torch.randn(3)
    w = torch.randn(3)
    with cs.record(x) as graph:
        out = (x * w).sum()
    w.add_(1.0)
    with pytest.raises(
        cs.RecordingError, match="changed in place after it was recorded"
    ):
        graph.backward(out, "sum")


def test_nan_in_forward_warns_with_op_name():
    x = torch.tensor([1.0, -1.0])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with cs.record(x) as graph:
            torch.sqrt(x).sum()
    messages = [
        str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)
    ]
    assert any("aten.sqrt.default" in m for m in messages)
    assert graph.records


def test_sources_restore_requires_grad():
    x = torch.randn(2)
    with cs.record(x):
        assert x.requires_grad
    assert not x.requires_grad


def test_module_source_that_never_runs():
    used, unused = nn.Linear(2, 2), nn.Linear(2, 2)
    with cs.record(unused) as graph:
        out = used(torch.randn(1, 2)).sum()
    del out
    with pytest.raises(KeyError, match="never ran"):
        graph.node_of(unused)


def test_inplace_under_no_grad_keeps_history_like_autograd():
    """F.cosine_similarity clamps a norm in place under no_grad; autograd keeps the
    norm's history, so the recording must too."""
    x = torch.randn(3, 4, dtype=torch.float64)

    def f(t):
        n = t.norm(dim=-1, keepdim=True).clone()
        with torch.no_grad():
            n.clamp_min_(1e-8)
        return (t / n).sum(-1)

    leaf = x.clone().requires_grad_(True)
    (expected,) = torch.autograd.grad(f(leaf).sum(), leaf)
    torch.testing.assert_close(cs.semiring_grad(f, x, "sum"), expected)


# ----- torch.autograd.Function -----------------------------------------------------


class _TanhGelu(torch.autograd.Function):
    """A custom GeLU as BLOOM writes it: its forward runs under no_grad."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * 0.5 * (1.0 + torch.tanh(0.79788456 * x * (1 + 0.044715 * x * x)))

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        y = torch.tanh(0.79788456 * x * (1 + 0.044715 * x * x))
        inner = (1 - y * y) * (0.79788456 + 0.1070322243 * x * x)
        return g * (0.5 * x * inner + 0.5 * (1 + y))


def _hooked_tanh():
    net = nn.Sequential(nn.Linear(4, 4), nn.Tanh()).double()
    net[0].register_full_backward_hook(lambda module, grad_in, grad_out: None)
    return net


def _reentrant_checkpoint(lin):
    from torch.utils.checkpoint import checkpoint

    return lambda x: checkpoint(lambda y: torch.tanh(lin(y)), x, use_reentrant=True) + x


@pytest.mark.parametrize(
    "make",
    [
        lambda lin: lambda x: _TanhGelu.apply(lin(x)) + x,  # on a branch
        lambda lin: lambda x: _TanhGelu.apply(lin(x)),  # the only path
        _reentrant_checkpoint,
        lambda lin: lambda x, net=_hooked_tanh(): net(x) + x,
    ],
    ids=[
        "function-branch",
        "function-only-path",
        "reentrant-checkpoint",
        "backward-hook",
    ],
)
def test_paths_pass_through_autograd_functions(make):
    torch.manual_seed(0)
    f = make(nn.Linear(4, 4).double())
    x = torch.randn(3, 4, dtype=torch.float64)
    with cs.record(x) as graph:
        out = f(x).sum(-1)
    xr = x.clone().requires_grad_(True)
    f(xr).sum().backward()  # reentrant checkpoint does not support autograd.grad
    torch.testing.assert_close(graph.backward(out, "sum")[x], xr.grad)
    assert torch.isfinite(graph.backward(out, "max")[x]).all()


def test_no_grad_outside_a_function_still_cuts_the_path():
    x = torch.randn(3, dtype=torch.float64)
    with cs.record(x) as graph:
        with torch.no_grad():
            scale = x.abs().sum()
        out = (x / scale).sum()
    expected = 1.0 / x.abs().sum()  # scale is a constant, as autograd sees it
    torch.testing.assert_close(graph.backward(out, "sum")[x], expected.expand(3))
    with cs.record(x) as graph, torch.no_grad():
        out = (2 * x).sum()
    with pytest.raises(ValueError, match="not computed from the sources"):
        graph.backward(out, "sum")


# ----- writes through views ------------------------------------------------------


def _fresh_buffer_slice(x):
    buf = torch.zeros(2, 7, dtype=x.dtype)
    buf[:, 1:6] = 2 * x
    return buf[:, 1:6] * 3 + x


def _fresh_buffer_rows(x):
    buf = torch.zeros(3, 5, dtype=x.dtype)
    buf[0] = x[0]
    buf[2] = x[1] * x[0]
    return buf.sum(0, keepdim=True).expand(2, 5) + x


def _write_into_a_recorded_base(x):
    y = x * 2
    y[0].add_(1.0)  # through a view: y changes too
    return y * 1


def _circular_padding(x):
    return torch.nn.functional.pad(x[:, None], (2, 2), mode="circular")[:, 0, :5] + x


@pytest.mark.parametrize(
    "f",
    [
        _fresh_buffer_slice,
        _fresh_buffer_rows,
        _write_into_a_recorded_base,
        _circular_padding,
    ],
)
def test_writes_through_a_view_reach_the_base(f):
    torch.manual_seed(0)
    x = torch.randn(2, 5, dtype=torch.float64)
    with cs.record(x) as graph:
        out = f(x).sum(-1)
    xr = x.clone().requires_grad_(True)
    (expected,) = torch.autograd.grad(f(xr).sum(), xr)
    torch.testing.assert_close(graph.backward(out, "sum")[x], expected)
    assert torch.isfinite(graph.backward(out, "max")[x]).all()


@pytest.mark.parametrize(
    "call",
    [
        lambda x, w, b, rm, rv: torch.ops.aten._native_batch_norm_legit(
            x, w, b, rm, rv, True, 0.1, 1e-5
        ),
        lambda x, w, b, rm, rv: torch.ops.aten._batch_norm_with_update(
            x, w, b, rm, rv, 0.1, 1e-5
        ),
    ],
    ids=["native_batch_norm_legit", "batch_norm_with_update"],
)
def test_ops_that_also_update_running_stats_keep_their_result(call):
    torch.manual_seed(0)
    w, b = torch.randn(5, dtype=torch.float64), torch.randn(5, dtype=torch.float64)

    def f(x):
        stats = torch.zeros(5, dtype=x.dtype), torch.ones(5, dtype=x.dtype)
        return call(x, w, b, *stats)[0] + x

    x = torch.randn(4, 5, dtype=torch.float64)
    with cs.record(x) as graph:
        out = f(x).sum(-1)
    xr = x.clone().requires_grad_(True)
    (expected,) = torch.autograd.grad(f(xr).sum(), xr)
    torch.testing.assert_close(graph.backward(out, "sum")[x], expected)


def test_a_bad_source_leaves_no_hook_and_no_requires_grad():
    net = nn.Sequential(nn.Linear(3, 2))
    x = torch.randn(2, 3)
    before = _global_hooks()
    with pytest.raises(TypeError, match="a source must be"):
        with cs.record(net[0], x, "oops"):
            pass
    assert not net[0]._forward_hooks and not x.requires_grad
    assert _global_hooks() == before and _get_current_dispatch_mode() is None


def test_module_paths_ignore_models_running_in_other_threads():
    import threading

    torch.manual_seed(0)
    ours = nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 1))
    theirs = nn.Sequential(*[nn.Linear(4, 4) for _ in range(8)])
    stop = threading.Event()

    def busy():
        with torch.no_grad():
            while not stop.is_set():
                theirs(torch.randn(2, 4))

    worker = threading.Thread(target=busy)
    worker.start()
    try:
        for _ in range(30):
            x = torch.randn(2, 4)
            with cs.record(x) as graph:
                out = ours(x)[:, 0]
            modules = graph.backward(out, "max").path(x, (0, 0)).modules()
            assert set(modules) <= {"0", "1", "2", ""}, modules  # "": the [:, 0]
    finally:
        stop.set()
        worker.join()


class _StraightThrough(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return torch.round(x * 3) / 3

    @staticmethod
    def backward(ctx, g):
        return g  # not the derivative of round


def test_a_function_whose_backward_is_not_its_derivative_warns_once():
    x = torch.randn(3, 4, dtype=torch.float64)
    with pytest.warns(RuntimeWarning, match="Function _StraightThrough in module '0'"):
        net = nn.Sequential(_Apply(_StraightThrough), nn.Tanh())
        with cs.record(x):
            (net(x) + net(x)).sum(-1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an exact Function: no warning
        with cs.record(x):
            _TanhGelu.apply(x).sum(-1)


class _Apply(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn.apply(x)


def test_in_place_ops_whose_out_of_place_form_only_decomposes_are_exact():
    # tril_, addr_, renorm_ and index_copy_ have no rule of their own: their
    # decompositions are recorded (the sweep used to fail on the bare op).
    def f(x, v):
        y = x * 1.0
        y.tril_()
        y.addr_(v, v)
        y.renorm_(2, 0, 1.0)
        z = x * 2.0
        z.index_copy_(0, torch.tensor([2, 0]), x[:2] * 3)
        return (y + z).sum(1)

    torch.manual_seed(0)
    x, v = torch.randn(3, 3, dtype=torch.float64), torch.randn(3, dtype=torch.float64)
    with cs.record(x, v) as graph:
        out = f(x, v)
    xr, vr = x.clone().requires_grad_(True), v.clone().requires_grad_(True)
    expected = torch.autograd.grad(f(xr, vr).sum(), (xr, vr))
    res = graph.backward(out, "sum")
    torch.testing.assert_close(res[x], expected[0])
    torch.testing.assert_close(res[v], expected[1])


def test_inference_mode_sources_and_float_targets_are_clear_errors():
    with torch.inference_mode():
        x = torch.randn(2, 3)
    with pytest.raises(TypeError, match="inference_mode"):
        with cs.record(x):
            pass
    net = nn.Linear(3, 2)
    with pytest.raises(
        TypeError, match="integer class indices; got dtype torch.float32"
    ):
        cs.semiring_grad(net, torch.randn(2, 3), "sum", target=torch.tensor([0.5, 1.0]))


def test_a_decomposition_that_does_not_cover_its_arguments_falls_back():
    # The avg_pool2d decomposition does not cover ceil_mode=True: the
    # dense-Jacobian fallback does, exactly.
    net = nn.Sequential(nn.AvgPool2d(2, ceil_mode=True))
    y = torch.randn(1, 2, 3, 3, dtype=torch.float64)
    got = cs.semiring_grad(lambda v: (net(v) ** 2).flatten(1).sum(1), y, "sum")
    y_ = y.clone().requires_grad_()
    (want,) = torch.autograd.grad((net(y_) ** 2).sum(), y_)
    torch.testing.assert_close(got, want)


def _state():
    return (
        _global_hooks(),
        _get_current_dispatch_mode(),
        torch._C._get_mkldnn_enabled(),
        torch.backends.mha.get_fastpath_enabled(),
    )


@pytest.mark.parametrize(
    "owner, name",
    [
        (module_lib, "register_module_forward_hook"),  # the 2nd global hook
        (torch.backends.mha, "set_fastpath_enabled"),  # the 2nd kernel flag
        (_capture._Recorder, "__enter__"),  # the dispatch mode
    ],
)
def test_an_interrupt_during_set_up_leaves_nothing_behind(monkeypatch, owner, name):
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    net = nn.Linear(3, 2)
    x = torch.randn(2, 3)
    before = _state()
    monkeypatch.setattr(owner, name, interrupt)
    with pytest.raises(KeyboardInterrupt):
        with cs.record(x, net):
            net(x)
    monkeypatch.undo()
    assert _state() == before
    assert not x.requires_grad
    assert not net._forward_hooks


def test_a_first_recording_imports_neither_dynamo_nor_sympy():
    """A fresh process's first recording and sweep of a plain module stay fast: the
    dispatch mode's torch.compile guard imports ``torch._dynamo`` on its first call,
    and ``torch.broadcast_shapes`` imports sympy (each a second or two)."""
    script = (
        "import sys, torch, captum_semiring as cs\n"
        "net = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Tanh(),"
        " torch.nn.Linear(4, 2))\n"
        "x = torch.randn(3, 4)\n"
        "with cs.record(x) as graph:\n"
        "    out = torch.softmax(net(x), -1)[:, 0]\n"
        "for semiring in ('sum', 'max', 'entropy', 'logsum', cs.TopK(3)):\n"
        "    graph.backward(out, semiring)[x]\n"
        "print(sorted(m for m in ('torch._dynamo', 'sympy') if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]", done.stdout
