"""The architecture zoo (issue 12): every Hugging Face architecture of the issue's
list, with eager and sdpa attention where the installed transformers has both, and
plain torch blocks, each on a padded batch of 2 examples.

Per case (see ``arch_zoo.check``): SumProduct equals ``torch.autograd.grad`` on the
same source; MaxProduct, Entropy and TopK(2) are finite; the best path of example 0
multiplies out to its value; example 0 gets the same result alone as next to the
padded example.

Cases that fail today are ``xfail(strict=True)`` with the exception they raise, so the
list can only shrink: a case that starts to pass, or fails differently, fails the
suite. For an expected ``UnsupportedOpError`` the test also requires the message to
name the op listed here.

Eager only, because the installed transformers refuses ``attn_implementation="sdpa"``
for them: DeBERTa-v2, GPT-Neo, BLOOM and Gemma2 (``arch_zoo.NO_SDPA``; a test notices
when that changes).
"""

from __future__ import annotations

import pytest
from arch_zoo import NO_SDPA, ZOO, build, case_ids, check

from captum_semiring.rules import UnsupportedOpError

# case id -> (exception class, the op the message must name or None, why); the
# classes: UnsupportedOpError, arch_zoo.Mismatch (a silent wrong answer),
# arch_zoo.NonFinite, or the crash's own class
XFAIL: dict[str, tuple[type[BaseException], str | None, str]] = {}

# the slowest cases on 2 cores (several seconds each); the CI part keeps one of
# each family
SLOW: set[str] = set()


def _param(case_id: str) -> object:
    marks = []
    if case_id in XFAIL:
        error, _, why = XFAIL[case_id]
        marks.append(pytest.mark.xfail(raises=error, strict=True, reason=why))
    if case_id in SLOW:
        marks.append(pytest.mark.slow)
    return pytest.param(case_id, marks=marks, id=case_id)


@pytest.mark.parametrize("case_id", [_param(c) for c in case_ids()])
def test_architecture(case_id):
    case = build(case_id)
    op = XFAIL[case_id][1] if case_id in XFAIL else None
    try:
        check(case)
    except UnsupportedOpError as e:
        if op is not None:
            assert op in str(e), f"expected the error to name {op}; got: {e}"
        raise


@pytest.mark.parametrize("name", sorted(NO_SDPA))
def test_sdpa_still_refused_by_transformers(name):
    """When transformers adds sdpa to one of these, add the case to the zoo."""
    builder, _ = ZOO[name]
    with pytest.raises(ValueError, match="scaled_dot_product_attention"):
        builder("sdpa")


def test_xfail_list_names_real_cases():
    assert set(XFAIL) <= set(case_ids())
    assert SLOW <= set(case_ids())
