"""The OpInfo sweep (issue 12): every op in PyTorch's OpInfo database with autograd
and float64 on CPU, recorded on its sample inputs. SumProduct must equal
``torch.autograd.grad`` (rtol 1e-6), and MaxProduct, Entropy and TopK(2) must be
finite; an op without a rule must raise :class:`captum_semiring.UnsupportedOpError`
naming the ATen op. The machinery is in ``tests/opinfo_sweep.py``;
``benchmarks/opinfo_report.py`` prints the counts per class.

By default each op is checked on its first sample (the CI budget); ``-m slow``
checks every sample. An op on ``EXPECTED_UNSUPPORTED`` may raise
``UnsupportedOpError`` (in CI: its samples are tried until one does); it fails
once it fully MATCHes, so that the list can only shrink.
"""

from __future__ import annotations

import pytest
from opinfo_sweep import (
    CRASH,
    MATCH,
    MISMATCH,
    SKIP,
    UNSUPPORTED,
    classify,
    op_key,
    swept_ops,
)

# OpInfo name -> the op that has no rule (where the sweep stops). Ops the
# semirings cannot cover are skipped in opinfo_sweep.SKIPPED_PREFIXES instead.
EXPECTED_UNSUPPORTED: dict[str, str] = {
    # Sparse layouts are outside the semiring model (dense tensors only).
    "sparse.sampled_addmm": "aten.sparse_sampled_addmm.default",
    "sparse.mm.reduce": "aten._sparse_mm_reduce_impl.default",
    "to_sparse": "aten._to_sparse.default",
    # No rule, and the dense-Jacobian fallback is over its budget on these samples.
    "nn.functional.adaptive_avg_pool3d": "aten._adaptive_avg_pool3d.default",
    "_upsample_bilinear2d_aa": "aten._upsample_bilinear2d_aa.default",
    "grid_sampler_3d": "aten.grid_sampler_3d.default",
    "nn.functional.ctc_loss": "aten._ctc_loss.default",
    "linalg.pinv.singular": "aten.linalg_pinv.atol_rtol_tensor",
}

# OpInfo name -> why it still gives a wrong answer or crashes. Each is an expected
# failure (in CI every sample is tried until one fails); once it passes, the test
# says to remove it.
KNOWN_FAILURES: dict[str, str] = {}

_OPS = {op_key(op): op for op in swept_ops()}


def _check(key: str, all_samples: bool) -> None:
    op = _OPS[key]
    listed = key in EXPECTED_UNSUPPORTED
    known = key in KNOWN_FAILURES
    outcome = classify(op, all_samples=all_samples or known, stop_on_unsupported=listed)
    where = f"{key} (sample {outcome.sample})"
    if outcome.status == SKIP:
        pytest.skip(f"{key}: {outcome.reason}")
    if known:
        if outcome.status in (MISMATCH, CRASH):
            pytest.xfail(f"{KNOWN_FAILURES[key]}: {outcome.reason}")
        pytest.fail(f"{key} now passes: remove it from KNOWN_FAILURES")
    assert outcome.status not in (MISMATCH, CRASH), (
        f"{outcome.status} {where}: {outcome.reason}"
    )
    if listed:
        assert outcome.status == UNSUPPORTED, (
            f"{key} now MATCHes on every sample: remove it from EXPECTED_UNSUPPORTED"
        )
    else:
        assert outcome.status == MATCH, (
            f"{outcome.status} {where}: {outcome.reason} (if this op has no rule on "
            "purpose, add it to EXPECTED_UNSUPPORTED)"
        )


def test_expected_lists_name_real_ops() -> None:
    assert not set(EXPECTED_UNSUPPORTED) - set(_OPS)
    assert not set(KNOWN_FAILURES) - set(_OPS)
    assert not set(KNOWN_FAILURES) & set(EXPECTED_UNSUPPORTED)


@pytest.mark.parametrize("key", list(_OPS))
def test_opinfo_first_sample(key: str) -> None:
    _check(key, all_samples=False)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # Every sample of every op takes minutes: only when asked for with -m slow
    # (the plain run does not deselect slow tests).
    if metafunc.function.__name__ == "test_opinfo_all_samples":
        asked = "slow" in (metafunc.config.option.markexpr or "")
        metafunc.parametrize("key", list(_OPS) if asked else [])


@pytest.mark.slow
def test_opinfo_all_samples(key: str) -> None:
    _check(key, all_samples=True)
