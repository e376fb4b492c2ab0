"""``reproduce ablation`` (``reproductions.ablation``): the files it writes, the fig4
model skipped when it is missing, the saturated case's cross-checks, and the fig4
comparison on the trained agreement model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn
from zoo import tiny_mlm

from captum_semiring.analysis.ablation import (
    compare_with_ablation,
    transformer_components,
)
from captum_semiring.cli import main
from captum_semiring.reproductions import ablation as rab

#: Captum's tuple target on MLM logits (batch, seq, vocab): position 2, token 3.
TARGET = (2, 3)


def test_saturated_summary_cross_checks() -> None:
    summary = rab.saturated_summary(n_steps=16)
    key = summary["key"]
    assert key["autograd max |∂target/∂key|"] < 1e-6
    assert key["SemiringLayerAttribution max |top path| (n_steps=1)"] < 1e-6
    integrated = [v for k, v in key.items() if "n_steps=16" in k]
    assert integrated and integrated[0] > 0.05


def test_reproduce_ablation_writes_its_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The trained fig4 model takes minutes to sweep; a tiny masked LM stands in for
    # it so the fig4 branch of the reproduction runs.
    tiny, words = tiny_mlm(1), torch.randint(1, 12, (4, 6))

    def fake_fig4(max_sentences: int | None, n_steps: int) -> tuple:
        cmp = compare_with_ablation(tiny, words, target=TARGET, n_steps=n_steps)
        return cmp, {"model": "tiny stand-in", "n_examples": cmp.n_examples}

    monkeypatch.setattr(rab, "fig4_comparison", fake_fig4)
    out = tmp_path / "ablation"
    out.mkdir()
    assert (
        main(["reproduce", "ablation", "--out", str(out), "--max-sentences", "6"]) == 0
    )
    for name in ("ablation_components.csv", "ablation_scatter.png"):
        assert (out / name).stat().st_size > 0
    assert (out / "ablation_scatter.png").read_bytes()[:4] == b"\x89PNG"
    summary = json.loads((out / "ablation_summary.json").read_text())
    assert set(summary["models"]) == {"fig2", "fig4"}
    assert summary["models"]["fig2"]["n_examples"] == 6
    assert "Answer:" in summary["answer"]
    assert summary["saturated_softmax"]["key"]["zero_ablation |Δ|"] > 1
    lines = (out / "ablation_components.csv").read_text().splitlines()
    assert lines[0].split(",") == list(rab.CSV_COLUMNS)
    assert len(lines) == 1 + 6 + 6 + 5  # fig2, the stand-in, the saturated case


def test_reproduce_ablation_skips_a_missing_fig4_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def missing(*args: object) -> tuple:
        raise ImportError("no agreement model")

    monkeypatch.setattr(rab, "fig4_comparison", missing)
    # the fig2 branch ran in the test above; a tiny stand-in keeps this one fast
    tiny, words = tiny_mlm(1), torch.randint(1, 12, (4, 6))

    def fake_fig2(max_sentences: int | None, n_steps: int) -> tuple:
        cmp = compare_with_ablation(tiny, words, target=TARGET, n_steps=2)
        return cmp, {"model": "tiny stand-in", "n_examples": cmp.n_examples}

    monkeypatch.setattr(rab, "fig2_comparison", fake_fig2)
    out = tmp_path / "ablation"
    out.mkdir()
    assert (
        main(["reproduce", "ablation", "--out", str(out), "--max-sentences", "4"]) == 0
    )
    summary = json.loads((out / "ablation_summary.json").read_text())
    assert set(summary["models"]) == {"fig2"}
    assert summary["models"]["fig2"]["n_examples"] == 4
    assert any("fig4 model skipped" in note for note in summary["notes"])


@pytest.mark.slow
def test_fig4_comparison_on_the_agreement_model() -> None:
    pytest.importorskip("captum_semiring.reproductions.tasks.agreement")
    cmp, meta = rab.fig4_comparison(max_sentences=2, n_steps=2)
    assert meta["n_examples"] == 2
    assert len(cmp.rows) == len(transformer_components(cmp_model_layers()))


def cmp_model_layers() -> nn.Module:
    from captum_semiring.reproductions.tasks.agreement import agreement_model

    return agreement_model().model
