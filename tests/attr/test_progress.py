"""``show_progress``: as in Captum's attribution methods, a tqdm bar on stderr over
IG's steps, off by default, and the same attributions either way."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import captum_semiring as cs


@pytest.mark.parametrize("internal_batch_size", [None, 3], ids=["whole", "by-step"])
def test_a_bar_over_the_steps_that_changes_nothing(
    two_input, capsys: pytest.CaptureFixture[str], internal_batch_size: int | None
) -> None:
    model, inputs, args = two_input  # 3 examples: size 3 records one step at a time
    explainer = cs.TopGradientPath(model)
    kwargs = dict(
        baselines=(0.0, -0.5),
        target=[0, 1, 2],
        additional_forward_args=args,
        n_steps=4,
        internal_batch_size=internal_batch_size,
    )
    quiet = explainer.attribute(inputs, **kwargs)
    assert capsys.readouterr() == ("", "")
    shown = explainer.attribute(inputs, show_progress=True, **kwargs)
    out, err = capsys.readouterr()
    assert out == ""
    assert "Top Gradient Path attribution" in err and "4/4" in err
    assert all(torch.equal(a, b) for a, b in zip(quiet, shown))


def test_the_layer_class_shows_its_steps_too(
    capsys: pytest.CaptureFixture[str],
) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Embedding(8, 3), nn.Flatten(), nn.Linear(9, 2))
    ids = torch.tensor([[1, 5, 2], [4, 4, 3]])
    explainer = cs.SemiringLayerAttribution(model, model[0], semiring="entropy")
    kwargs = dict(baselines=0, target=1, n_steps=5, internal_batch_size=4)
    quiet = explainer.attribute(ids, **kwargs)
    assert capsys.readouterr() == ("", "")
    shown = explainer.attribute(ids, show_progress=True, **kwargs)
    out, err = capsys.readouterr()
    assert out == "" and "Semiring Layer Attribution attribution" in err
    assert "5/5" in err
    assert torch.equal(quiet, shown)
