"""The OpInfo sweep's machinery, shared by ``tests/test_opinfo.py`` and
``benchmarks/opinfo_report.py``.

For one OpInfo sample: record the op on its float64 inputs with every
differentiable tensor argument as a source, reduce the float outputs to one 0-d
scalar (a weighted sum, fixed random weights, so that errors of opposite sign in
different elements cannot cancel), and compare SumProduct with
``torch.autograd.grad`` on the same forward run. MaxProduct, Entropy and TopK(2)
must be finite. Each sample is classified:

- ``MATCH``: SumProduct equals autograd and the other semirings are finite;
- ``UNSUPPORTED``: :class:`captum_semiring.UnsupportedOpError` naming an ATen op;
- ``MISMATCH``: a wrong gradient or a non-finite result (a silent wrong answer);
- ``CRASH``: any other exception;
- ``SKIP``: nothing to compare (no differentiable float output, no source).
"""

from __future__ import annotations

import contextlib
import signal
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils._pytree import tree_flatten

import captum_semiring as cs

MATCH, UNSUPPORTED, MISMATCH, CRASH, SKIP = (
    "MATCH",
    "UNSUPPORTED",
    "MISMATCH",
    "CRASH",
    "SKIP",
)
# Worst first: an op's class is the worst over its samples.
SEVERITY = {MISMATCH: 0, CRASH: 1, UNSUPPORTED: 2, MATCH: 3, SKIP: 4}

RTOL = 1e-6
ATOL = 1e-9
SAMPLE_SECONDS = 60  # a sample slower than this is a CRASH (a hang, not an answer)
DTYPE = torch.float64

# Ops left out of the sweep, with the reason: results that SumProduct cannot be
# compared with autograd on, for reasons that are not the library's.
SKIPPED_PREFIXES: dict[str, str] = {
    # Random draws: each call differs, and the "gradient" is a convention
    # (issue 12 item 6 covers normal's separately).
    "normal": "random",
    "bernoulli": "random",
    "multinomial": "random",
    "uniform": "random",
    "nn.functional.dropout": "random",
    "nn.functional.alpha_dropout": "random",
    "nn.functional.feature_alpha_dropout": "random",
    "nn.functional.rrelu": "random (training-mode slopes)",
    "cauchy": "random",
    "exponential": "random",
    "geometric": "random",
    "log_normal": "random",
    "randn": "random",
    "rand": "random",
    # Complex-valued outputs from real inputs: gradients through complex values
    # are outside the semiring model (real path products).
    "fft.": "complex-valued intermediate results",
    "stft": "complex-valued output",
    "istft": "complex-valued input",
    "view_as_complex": "complex-valued output",
    "polar": "complex-valued output",
    "complex": "complex-valued output",
    "linalg.eig": "complex-valued output",
    "linalg.eigvals": "complex-valued output",
}


_NOT_SKIPPED = {"nn.functional.feature_alpha_dropout.without_train"}  # the identity


# Ops whose autograd gradient is known to be wrong (OpInfo itself marks their
# gradcheck as an expected failure): compared with central differences instead.
NUMERICAL_REFERENCE: dict[str, str] = {
    "as_strided_scatter": "autograd's gradient for self is the complement of the "
    "true one (torch 2.13, gradcheck fails)",
}


def op_key(op: Any) -> str:
    """The sweep's name for an OpInfo entry: ``name`` or ``name.variant``."""
    return f"{op.name}.{op.variant_test_name}" if op.variant_test_name else op.name


def skip_reason(op: Any) -> str | None:
    name = op.name
    if name in ("fft.fftshift", "fft.ifftshift") or op_key(op) in _NOT_SKIPPED:
        return None  # real index maps (a roll), deterministic
    for prefix, reason in SKIPPED_PREFIXES.items():
        if name == prefix or (prefix.endswith(".") and name.startswith(prefix)):
            return reason
        if name.startswith(prefix + "_") and reason == "random":
            return reason  # normal_, bernoulli_ ...
    return None


def swept_ops() -> list[Any]:
    """Every OpInfo entry with autograd and float64 on CPU (the issue's 540)."""
    from torch.testing._internal.common_methods_invocations import op_db

    return [
        op
        for op in op_db
        if op.supports_autograd and DTYPE in op.supported_dtypes("cpu")
    ]


@dataclass
class Outcome:
    status: str
    reason: str = ""
    sample: int = 0
    seconds: float = 0.0


class _Timeout(Exception):
    pass


@contextlib.contextmanager
def _time_limit(seconds: int) -> Iterator[None]:
    if not hasattr(signal, "SIGALRM"):
        yield
        return

    def fire(signum: int, frame: Any) -> None:
        raise _Timeout(f"sample took longer than {seconds} s")

    old = signal.signal(signal.SIGALRM, fire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _float_tensors(tree: Any) -> list[torch.Tensor]:
    leaves, _ = tree_flatten(tree)
    return [t for t in leaves if isinstance(t, torch.Tensor)]


def _sources(sample: Any) -> list[torch.Tensor]:
    """The differentiable float64 tensors of a sample, each once."""
    seen: dict[int, torch.Tensor] = {}
    for t in _float_tensors((sample.input, sample.args, sample.kwargs)):
        if t.dtype == DTYPE and t.requires_grad and id(t) not in seen:
            seen[id(t)] = t
    return list(seen.values())


def _short(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text[:300]}"


def _names_an_op(message: str) -> bool:
    return any(ns in message for ns in ("aten.", "aten::", "prims."))


def check_sample(op: Any, sample: Any, index: int = 0) -> Outcome:
    """Classify one sample of ``op``."""
    start = time.perf_counter()
    outcome = _check(op, sample)
    outcome.sample = index
    outcome.seconds = time.perf_counter() - start
    return outcome


def _check(op: Any, sample: Any) -> Outcome:
    sources = _sources(sample)
    if not sources:
        return Outcome(SKIP, "no differentiable float64 input")
    if any(t.is_complex() for t in _float_tensors((sample.input, sample.args))):
        return Outcome(SKIP, "complex input")
    try:
        with _time_limit(SAMPLE_SECONDS), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return _compare(op, sample, sources)
    except cs.UnsupportedOpError as err:
        if not _names_an_op(str(err)):
            return Outcome(CRASH, "UnsupportedOpError names no op: " + _short(err))
        return Outcome(UNSUPPORTED, _short(err))
    except _Timeout as err:
        return Outcome(CRASH, str(err))
    except Exception as err:  # noqa: BLE001 - a crash is a result here
        return Outcome(CRASH, _short(err))


def _weighted_scalar(outputs: list[torch.Tensor]) -> torch.Tensor:
    gen = torch.Generator().manual_seed(1234)
    total = None
    for t in outputs:
        w = torch.rand(t.shape, generator=gen, dtype=DTYPE) + 0.5
        w = w * (torch.randint(0, 2, t.shape, generator=gen, dtype=DTYPE) * 2 - 1)
        term = (t * w.to(t.dtype)).sum()
        total = term if total is None else total + term
    assert total is not None
    return total


def _compare(op: Any, sample: Any, sources: list[torch.Tensor]) -> Outcome:
    # A first, plain run: which outputs autograd differentiates.
    probe = sample.output_process_fn_grad(
        op(sample.input, *sample.args, **sample.kwargs)
    )
    plain = [t for t in _float_tensors(probe) if t.requires_grad]
    if any(t.is_complex() for t in plain):
        return Outcome(SKIP, "complex output")
    plain = [t for t in plain if t.dtype == DTYPE]
    if not plain:
        return Outcome(SKIP, "no differentiable float64 output")
    numerical = None  # before recording: it writes into the sources
    if op_key(op) in NUMERICAL_REFERENCE:
        numerical = _central_differences(op, sample, sources)
    with cs.record(*sources) as graph:
        result = sample.output_process_fn_grad(
            op(sample.input, *sample.args, **sample.kwargs)
        )
        outputs = [
            t for t in _float_tensors(result) if t.requires_grad and t.dtype == DTYPE
        ]
        out = _weighted_scalar(outputs)
    expected = torch.autograd.grad(out, sources, allow_unused=True)
    expected = [
        torch.zeros_like(s) if g is None else g.detach()
        for s, g in zip(sources, expected, strict=True)
    ]
    rtol, atol = RTOL, ATOL
    if numerical is not None:
        expected, rtol, atol = numerical, 1e-5, 1e-6
    try:
        sums = graph.backward(out, "sum")
    except ValueError as err:
        # No recorded path to the output: right exactly when autograd's is zero.
        if "not computed from the sources" in str(err) and not any(
            bool(g.any()) for g in expected
        ):
            return Outcome(MATCH, "no path; autograd's gradient is zero")
        raise
    for k, (s, want) in enumerate(zip(sources, expected, strict=True)):
        got = sums[s]
        if got.shape != want.shape:
            return Outcome(
                MISMATCH, f"source {k}: shape {tuple(got.shape)} != {tuple(want.shape)}"
            )
        if not torch.allclose(got, want, rtol=rtol, atol=atol, equal_nan=True):
            err = (got - want).abs().nan_to_num(nan=float("inf"))
            worst = int(err.argmax()) if err.numel() else 0
            return Outcome(
                MISMATCH,
                f"source {k} (shape {tuple(want.shape)}): SumProduct "
                f"{got.reshape(-1)[worst].item():.6g} != autograd "
                f"{want.reshape(-1)[worst].item():.6g} at flat index {worst}",
            )
    grads_finite = all(bool(torch.isfinite(g).all()) for g in expected)
    if grads_finite:  # a NaN gradient carries NaN through every semiring
        for name, semiring in (
            ("max", "max"),
            ("entropy", "entropy"),
            ("topk2", cs.TopK(2)),
        ):
            res = graph.backward(out, semiring)
            for k, s in enumerate(sources):
                value = res[s]
                if not bool(torch.isfinite(value).all()):
                    return Outcome(MISMATCH, f"{name} not finite for source {k}")
    return Outcome(MATCH)


def _central_differences(
    op: Any, sample: Any, sources: list[torch.Tensor], eps: float = 1e-6
) -> list[torch.Tensor]:
    """The gradient of the weighted scalar by central differences, element by
    element (in place, so that views see the change as the op does)."""

    def scalar() -> float:
        result = sample.output_process_fn_grad(
            op(sample.input, *sample.args, **sample.kwargs)
        )
        outs = [t for t in _float_tensors(result) if t.dtype == DTYPE]
        return float(_weighted_scalar(outs))

    grads = []
    with torch.no_grad():
        for s in sources:
            g = torch.zeros_like(s)
            for idx in (
                torch.cartesian_prod(*[torch.arange(n) for n in s.shape])
                .reshape(s.numel(), -1)
                .tolist()
                if s.dim()
                else [[]]
            ):
                at = tuple(idx)
                s[at] += eps
                up = scalar()
                s[at] -= 2 * eps
                down = scalar()
                s[at] += eps
                g[at] = (up - down) / (2 * eps)
            grads.append(g)
    return grads


def samples(op: Any) -> Iterator[Any]:
    torch.manual_seed(0)
    yield from op.sample_inputs("cpu", DTYPE, requires_grad=True)


def classify(op: Any, all_samples: bool, stop_on_unsupported: bool = False) -> Outcome:
    """The op's class: the worst over its first sample (or all of them)."""
    reason = skip_reason(op)
    if reason is not None:
        return Outcome(SKIP, reason)
    worst: Outcome | None = None
    start = time.perf_counter()
    for index, sample in enumerate(samples(op)):
        outcome = check_sample(op, sample, index)
        if worst is None or SEVERITY[outcome.status] < SEVERITY[worst.status]:
            worst = outcome
        if worst.status in (MISMATCH, CRASH):
            break
        if stop_on_unsupported and worst.status == UNSUPPORTED:
            break
        if not all_samples and not stop_on_unsupported and outcome.status != SKIP:
            break  # the first sample that has something to compare
    if worst is None:
        worst = Outcome(SKIP, "no samples")
    worst.seconds = time.perf_counter() - start
    return worst
