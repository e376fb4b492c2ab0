"""The Fig. 5 entropy-vs-MDL reproduction (``reproductions.fig5``): prequential
codelengths against hand computations, the permutation test against enumeration, the
summary's claims, the fig5 model, and ``reproduce fig5`` at a small scale."""

from __future__ import annotations

import csv
import itertools
import json
import math
from pathlib import Path

import pytest
import torch

from captum_semiring.analysis.stats import spearman
from captum_semiring.reproductions.fig5 import (
    QUICK,
    fig5_config,
    fit_transformer,
    prequential_codelength,
    spearman_permutation_p,
    summarize_fig5,
    token_entropy,
)
from captum_semiring.reproductions.tasks import Contains1, paper_bert

# One intra-op thread for every test here (the ``one_thread`` fixture of conftest.py):
# on a shared 2-core machine a second thread waiting for a busy core makes the small
# sweeps several times slower.
pytestmark = pytest.mark.usefixtures("one_thread")


# --------------------------------------------------------------------------- MDL


def _uniform_log_prob(k: int):
    return lambda model, X: torch.full((len(X), k), -math.log(k))


def _laplace_fit(X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Class frequencies of the prefix with add-one smoothing (2 classes)."""
    return (torch.bincount(y, minlength=2) + 1.0) / (len(y) + 2)


def _laplace_log_prob(p: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
    return p.log().expand(len(X), 2)


def test_uniform_model_costs_n_log2_C() -> None:
    gen = torch.Generator().manual_seed(0)
    y = torch.randint(0, 3, (37,), generator=gen)
    X = torch.randn(37, 2, generator=gen)
    code = prequential_codelength(
        X, y, [5, 10, 20, 37], lambda X, y: None, _uniform_log_prob(3), 3
    )
    assert code.total_bits == pytest.approx(37 * math.log2(3), rel=1e-6)
    sizes = [5, 5, 10, 17]
    assert code.block_bits == pytest.approx([s * math.log2(3) for s in sizes])
    assert code.uniform_bits == pytest.approx(37 * math.log2(3))
    assert code.compression == pytest.approx(1.0)


def test_two_blocks_by_hand() -> None:
    # block 0 = [0, 0, 1] at 1 bit each; the model fitted on it says p(0) = 3/5,
    # p(1) = 2/5, so block 1 = [0, 1] costs log2(5/3) + log2(5/2) bits
    y = torch.tensor([0, 0, 1, 0, 1])
    code = prequential_codelength(
        torch.zeros(5, 1), y, [3, 5], _laplace_fit, _laplace_log_prob, 2
    )
    assert code.block_bits[0] == 3.0
    assert code.total_bits == pytest.approx(3 + math.log2(5 / 3) + math.log2(5 / 2))
    assert torch.allclose(code.last_model, torch.tensor([0.6, 0.4]))


def test_three_blocks_by_hand() -> None:
    y = torch.tensor([0, 0, 1, 0, 1])
    code = prequential_codelength(
        torch.zeros(5, 1), y, [1, 3, 5], _laplace_fit, _laplace_log_prob, 2
    )
    # after [0]: p = (2/3, 1/3) codes [0, 1]; after [0, 0, 1]: p = (3/5, 2/5) codes [0, 1]
    expected = [
        1.0,
        math.log2(3 / 2) + math.log2(3),
        math.log2(5 / 3) + math.log2(5 / 2),
    ]
    assert code.block_bits == pytest.approx(expected)


def test_fit_sees_only_the_prefix() -> None:
    X = torch.arange(20.0)[:, None]
    y = torch.arange(20) % 2
    seen: list[torch.Tensor] = []

    def fit(Xp: torch.Tensor, yp: torch.Tensor) -> None:
        seen.append(Xp[:, 0].clone())

    prequential_codelength(X, y, [4, 8, 16], fit, _uniform_log_prob(2), 2)
    assert [s.tolist() for s in seen] == [list(range(4)), list(range(8))]


def test_codelength_counts_the_true_labels() -> None:
    # a model sure of class 0 is cheap on 0s and expensive on 1s
    y = torch.tensor([0, 0, 0, 1, 0, 1])
    p = torch.tensor([0.75, 0.25])
    code = prequential_codelength(
        torch.zeros(6, 1), y, [2, 6], lambda X, y: p, _laplace_log_prob, 2
    )
    assert code.total_bits == pytest.approx(2 + 2 * math.log2(4) + 2 * math.log2(4 / 3))


@pytest.mark.parametrize("bounds", [[], [0, 4], [4, 4], [5, 3], [4, 11]])
def test_bad_boundaries(bounds: list[int]) -> None:
    with pytest.raises(ValueError):
        prequential_codelength(
            torch.zeros(10, 1),
            torch.zeros(10, dtype=torch.long),
            bounds,
            lambda X, y: None,
            _uniform_log_prob(2),
            2,
        )


def test_permutation_p_against_enumeration() -> None:
    a, b = [1.0, 2.0, 3.0, 4.0, 5.0], [2.0, 1.0, 4.0, 3.0, 5.0]
    rho = spearman(a, b)
    assert rho is not None
    perms = list(itertools.permutations(b))
    exact = sum(abs(spearman(a, list(p)) or 0) >= abs(rho) - 1e-12 for p in perms)
    p = spearman_permutation_p(a, b, n_perm=20_000)
    assert p == pytest.approx(exact / len(perms), abs=0.015)
    assert spearman_permutation_p([1, 2], [1, 1]) is None


def _fig5_row(task: str, family: str, mdl: float, ent: float) -> dict:
    return {
        "task": task,
        "family": family,
        "seed": 0,
        "kept": True,
        "mdl_bits": mdl,
        "entropy": ent,
    }


def test_summarize_fig5_claims() -> None:
    # binary: entropy rises with MDL; BinCountOnes: a U (minimum inside the range)
    rows = [_fig5_row(f"b{i}", "binary", 10.0 * i, 1.0 + i) for i in range(4)]
    rows += [
        _fig5_row(f"C{i}", "BinCountOnes", m, (m - 50.0) ** 2 / 100)
        for i, m in enumerate([10.0, 30.0, 50.0, 70.0, 90.0])
    ]
    s = summarize_fig5(rows, n_perm=2000)
    claims = list(s["paper_claims"].values())
    assert claims[1] is False  # binary tasks are not negatively related here
    assert claims[2] is True
    assert s["BinCountOnes_quadratic_fit"]["vertex_mdl"] == pytest.approx(50.0)
    rows[0]["kept"] = False
    assert summarize_fig5(rows, n_perm=200)["n_kept"] == len(rows) - 1


# --------------------------------------------------------------------------- fig5 model


def test_token_entropy_batches_do_not_mix() -> None:
    model = paper_bert(fig5_config(QUICK), seed=0).eval()
    ids = torch.randint(
        1, 21, (5, QUICK.seq_len), generator=torch.Generator().manual_seed(0)
    )
    target = torch.tensor([0, 1, 0, 1, 1])
    together = token_entropy(model, ids, target, batch_size=5)
    alone = torch.cat(
        [token_entropy(model, ids[i : i + 1], target[i : i + 1]) for i in range(5)]
    )
    assert together.shape == (5, QUICK.seq_len)
    assert torch.allclose(together, alone, atol=1e-4)
    assert (together > 0).all()


def test_fit_transformer_warm_start_leaves_init_alone() -> None:
    X, y = Contains1()(n=40, seq_len=QUICK.seq_len, seed=0)
    first = fit_transformer(X[:20], y[:20], QUICK)
    before = {k: v.clone() for k, v in first.state_dict().items()}
    second = fit_transformer(X, y, QUICK, init=first)
    assert second is not first
    assert all(torch.equal(v, first.state_dict()[k]) for k, v in before.items())
    assert any(not torch.equal(v, second.state_dict()[k]) for k, v in before.items())


# --------------------------------------------------------------------------- CLI


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_cli_reproduce_fig5_quick(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from captum_semiring.cli import main

    monkeypatch.setenv("CAPTUM_SEMIRING_REPRO_SCALE", "quick")
    argv = ["reproduce", "fig5", "--out", str(tmp_path), "--max-sentences", "8"]
    assert main(argv) == 0
    rows = _read_csv(tmp_path / "fig5_entropy_mdl.csv")
    assert [r["task"] for r in rows] == [
        "Contains1",
        "FirstTokenRepeatedImmediately",
        "BinCountOnes(3)",
    ]
    for r in rows:
        assert int(r["n_test"]) == 8
        blocks = [float(b) for b in r["block_bits"].split(";")]
        assert float(r["mdl_bits"]) == pytest.approx(sum(blocks), abs=0.5)
        # block 0 (32 labels) goes at the uniform code
        assert blocks[0] == pytest.approx(
            32 * math.log2(int(r["num_classes"])), abs=0.1
        )
    assert (tmp_path / "fig5_entropy_mdl.png").read_bytes()[:4] == b"\x89PNG"
    summary = json.loads((tmp_path / "fig5_summary.json").read_text())
    assert summary["n_runs"] == 3
    assert summary["setup"]["prequential_boundaries"] == [32, 64, 128, 256]
