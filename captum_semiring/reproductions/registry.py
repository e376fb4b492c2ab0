"""The registry behind ``captum-semiring reproduce NAME``.

A reproduction is a function ``run(out_dir, options) -> list[Path]`` that writes a CSV,
a PNG and ``NAME_summary.json`` into ``out_dir`` (with the writers of
:mod:`captum_semiring.analysis.io`). Modules listed in :data:`MODULES` register theirs
with :func:`register_reproduction` when imported; :func:`available` imports them.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Modules of :mod:`captum_semiring.reproductions` that define reproductions.
MODULES = ("fig2", "fig4", "appb", "fig5", "ablation", "circuits")


@dataclass
class ReproduceOptions:
    """Options of ``captum-semiring reproduce``.

    Attributes:
        max_sentences: use only the first N evaluation sentences (quick checks).
        hf_model: a local Hugging Face model directory, for reproductions that can run
            on one (``fig4``).
        allow_random_head: with ``hf_model``: go on when the checkpoint lacks some
            weights (refused by default: the outputs would be noise).
        extra: options particular to one reproduction.
    """

    max_sentences: int | None = None
    hf_model: str | None = None
    allow_random_head: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


Runner = Callable[[Path, ReproduceOptions], list[Path]]


class ReproduceError(ValueError):
    """Bad options for a reproduction; the command line prints it as one line."""


def pick_scale(options: ReproduceOptions, scales: Mapping[str, Any]) -> tuple[str, Any]:
    """The scale named by ``options.extra["scale"]`` (else
    ``$CAPTUM_SEMIRING_REPRO_SCALE``, else ``"full"``), and its value in ``scales``."""
    name = str(
        options.extra.get(
            "scale", os.environ.get("CAPTUM_SEMIRING_REPRO_SCALE", "full")
        )
    )
    if name not in scales:
        raise ReproduceError(
            f"this reproduction has no scale {name!r}; use one of {', '.join(scales)}"
        )
    return name, scales[name]


@dataclass
class Reproduction:
    """A registered reproduction: ``run(out_dir, options)`` writes its files and
    returns their paths."""

    name: str
    description: str
    run: Runner


REPRODUCTIONS: dict[str, Reproduction] = {}


def register_reproduction(name: str, description: str) -> Callable[[Runner], Runner]:
    """Decorator: register ``run(out_dir, options) -> list[Path]`` as
    ``reproduce NAME``."""

    def deco(run: Runner) -> Runner:
        if name in REPRODUCTIONS:
            raise ValueError(f"reproduction {name!r} is already registered")
        REPRODUCTIONS[name] = Reproduction(name, description, run)
        return run

    return deco


def available() -> dict[str, Reproduction]:
    """Every reproduction, after importing the modules that define them."""
    for module in MODULES:
        try:
            importlib.import_module(f"{__package__}.{module}")
        except ModuleNotFoundError as err:
            if err.name != f"{__package__}.{module}":
                raise
    return dict(sorted(REPRODUCTIONS.items()))
