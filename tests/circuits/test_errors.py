"""Bad input to the circuits gets a clear error."""

from __future__ import annotations

import pytest
import torch
from circuit_models import toy

from captum_semiring import RecordingError, circuits
from captum_semiring.circuits.components import head_mask


def test_output_must_hold_one_scalar_per_example() -> None:
    model, x = toy(batch=2, tokens=3)
    with pytest.raises(ValueError, match="one scalar per example"):
        circuits.trace(lambda e: model(e)[:, -1], x)


def test_heads_not_on_a_known_axis_name_the_module() -> None:
    with pytest.raises(RecordingError, match="module 'enc.attn'.*heads"):
        head_mask((6, 4, 4), heads=2, batch=2, h=0, module="enc.attn")


def test_corrupted_input_of_another_shape() -> None:
    model, x = toy(batch=2, tokens=3)
    f = lambda e: model(e)[:, -1, 0]  # noqa: E731
    with pytest.raises(RecordingError, match="different ops on the corrupted input"):
        circuits.eap(f, x, torch.randn(2, 4, x.shape[-1], dtype=x.dtype))


def test_patching_refuses_unknown_edges_and_modes() -> None:
    model, x = toy(batch=2, tokens=3)
    f = lambda e: model(e)[:, -1, 0]  # noqa: E731
    with pytest.raises(ValueError, match="mode must be"):
        circuits.EdgePatching(f, x, mode="shuffle")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="needs the corrupted input"):
        circuits.EdgePatching(f, x)
    patching = circuits.EdgePatching(f, x, mode="zero")
    with pytest.raises(ValueError, match="not edges of this component graph"):
        patching.output([circuits.Edge("embed", "nowhere", "q")])
