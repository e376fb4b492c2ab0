"""The App. B sanity checks (``reproductions.appb`` and ``reproductions.tasks.appb``):
the App. B data, entropies against path enumeration, the summary's claims, and
``reproduce appB`` at a small scale."""

from __future__ import annotations

import csv
import itertools
import json
import math
from pathlib import Path

import pytest
import torch

from captum_semiring.reproductions.appb import (
    AppBScale,
    appb_mlp_entropy,
    feature_entropy,
    summarize_appb,
)
from captum_semiring.reproductions.tasks.appb import appb_data, appb_label, appb_mlp

# One intra-op thread for every test here (the ``one_thread`` fixture of conftest.py):
# on a shared 2-core machine a second thread waiting for a busy core makes the small
# sweeps several times slower.
pytestmark = pytest.mark.usefixtures("one_thread")


# --------------------------------------------------------------------------- App. B


def test_appb_data_relevant_and_irrelevant() -> None:
    X, y = appb_data(20_000, seed=3)
    assert X.shape == (20_000, 4) and X.min() >= 0 and X.max() < 1
    assert torch.equal(y, (X[:, 0] > 0.5).long())
    # the irrelevant features do not matter: redraw them, the labels stay
    X2 = X.clone()
    X2[:, 1:] = torch.rand(20_000, 3, generator=torch.Generator().manual_seed(9))
    assert torch.equal(appb_label(X2), y)
    # ... and they are independent of the label (per-class means ~0.5; 5 sigma)
    for j in range(1, 4):
        diff = X[y == 1, j].mean() - X[y == 0, j].mean()
        assert abs(float(diff)) < 0.02
    assert float(X[y == 1, 0].mean() - X[y == 0, 0].mean()) > 0.45
    assert torch.equal(appb_data(50, seed=3)[0], appb_data(50, seed=3)[0])
    assert not torch.equal(appb_data(50, seed=3)[0], appb_data(50, seed=4)[0])


def _entropy(weights: torch.Tensor) -> torch.Tensor:
    p = weights / weights.sum()
    p = p[p > 0]
    return -(p * p.log()).sum()


@pytest.mark.parametrize("depth", [1, 2])
def test_feature_entropy_against_path_enumeration(depth: int) -> None:
    torch.manual_seed(0)
    net = appb_mlp(hidden=3, depth=depth, seed=1)
    X = torch.rand(4, 4) * 2 - 0.5
    target = torch.tensor([0, 1, 1, 0])
    got = feature_entropy(net, X, target)
    with torch.no_grad():  # the enumeration below needs no autograd
        linears = [m for m in net if isinstance(m, torch.nn.Linear)]
        for b in range(4):
            # relu gates of this example, layer by layer
            gates, h = [], X[b]
            for lin in linears[:-1]:
                z = lin(h)
                gates.append((z > 0).float())
                h = torch.relu(z)
            for i in range(4):
                flows = []
                for units in itertools.product(range(3), repeat=depth):
                    w = linears[0].weight[units[0], i] * gates[0][units[0]]
                    for k in range(1, depth):
                        w = w * linears[k].weight[units[k], units[k - 1]]
                        w = w * gates[k][units[k]]
                    w = w * linears[-1].weight[target[b], units[-1]]
                    flows.append(abs(float(w)))
                expected = _entropy(torch.tensor(flows, dtype=torch.float64))
                assert float(got[b, i]) == pytest.approx(float(expected), abs=1e-5)


def test_mlp_rows_log_paths_and_kept() -> None:
    scale = AppBScale(hidden_sizes={1: (3,), 2: (3,)}, seeds=(0,), mlp_steps=5)
    rows = appb_mlp_entropy(scale, untrained=True)
    assert len(rows) == 4
    by = {(r["depth"], r["trained"]): r for r in rows}
    # hidden 3: 3 paths per feature with one hidden layer, 9 with two
    assert by[1, True]["log_paths"] == pytest.approx(math.log(3), abs=1e-5)
    assert by[2, True]["log_paths"] == pytest.approx(math.log(9), abs=1e-5)
    for r in rows:
        assert r["gap"] == pytest.approx(
            r["relevant_entropy"] - r["irrelevant_entropy"]
        )
        assert r["kept"] == (r["test_accuracy"] > 0.9)
        # (float round-off in log Z - E can leave -1e-8 for a single-path feature)
        assert -1e-6 <= r["irrelevant_entropy"] <= r["log_paths"] + 1e-6


def _mlp_row(hidden: int, rel: float, irr: float, kept: bool = True) -> dict:
    return {
        "depth": 1,
        "hidden": hidden,
        "seed": 0,
        "trained": True,
        "test_accuracy": 1.0 if kept else 0.5,
        "relevant_entropy": rel,
        "irrelevant_entropy": irr,
        "gap": rel - irr,
        "log_paths": 0.0,
        "kept": kept,
    }


def test_summarize_appb_claims_can_fail() -> None:
    length_rows = [
        {
            "length": L,
            "token_entropy_mean": h,
            "input_entropy": h,
            "token_log_paths_mean": 9.0,
            "input_log_paths": 9.0,
        }
        for L, h in [(4, 2.0), (8, 1.0), (16, 3.0)]
    ]
    # entropy falls from hidden 2 to 4, and the gap shrinks and turns negative
    mlp_rows = [_mlp_row(2, 2.0, 1.5), _mlp_row(4, 1.0, 0.8), _mlp_row(8, 1.9, 2.0)]
    claims = list(summarize_appb(length_rows, mlp_rows)["paper_claims"].values())
    assert claims == [False, False, False, False]
    # a dropped run is left out: without the bad hidden-2 run the rest holds
    mlp_rows = [_mlp_row(2, 0.1, 2.5, kept=False), _mlp_row(4, 1.0, 0.8)]
    mlp_rows.append(_mlp_row(8, 2.0, 1.5))
    claims = list(summarize_appb([], mlp_rows)["paper_claims"].values())
    assert claims == [True, True, True]


# --------------------------------------------------------------------------- CLI


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_cli_reproduce_appb_quick(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from captum_semiring.cli import main

    monkeypatch.setenv("CAPTUM_SEMIRING_REPRO_SCALE", "quick")
    assert main(["reproduce", "appB", "--out", str(tmp_path)]) == 0
    for name in ("appB_length.png", "appB_mlp.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    length = _read_csv(tmp_path / "appB_length.csv")
    assert [int(r["length"]) for r in length] == [4, 8, 16]
    for r in length:  # an entropy never exceeds the log number of paths
        assert 0 < float(r["input_entropy"]) < float(r["input_log_paths"])
    mlp = _read_csv(tmp_path / "appB_mlp.csv")
    assert {int(r["hidden"]) for r in mlp} == {2, 8, 32}
    summary = json.loads((tmp_path / "appB_summary.json").read_text())
    assert summary["setup"]["scale"] == "quick"
    assert len(summary["paper_claims"]) == 4
    assert all(isinstance(v, bool) for v in summary["paper_claims"].values())
