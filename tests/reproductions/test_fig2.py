"""``reproduce fig2`` (``reproductions.fig2``): the CSV columns, token types,
branches and aggregations, the intervals, the zero flows that the classifier's
reading of position 0 implies, and the summary, on 60 validation sentences."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from captum_semiring.cli import main
from captum_semiring.reproductions import available


def test_reproduce_fig2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert "fig2" in available()
    rc = main(
        [
            "reproduce",
            "fig2",
            "--out",
            str(tmp_path),
            "--max-sentences",
            "60",
            "--debug",
        ]
    )
    assert rc == 0
    assert "wrote" in capsys.readouterr().out
    with (tmp_path / "fig2_branch_flow.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == [
        "token_type",
        "branch",
        "aggregation",
        "mean",
        "ci_low",
        "ci_high",
        "n",
    ]
    assert {r["token_type"] for r in rows} == {"first", "repeat", "other"}
    assert {r["branch"] for r in rows} == {"skip", "query", "key", "value"}
    assert {r["aggregation"] for r in rows} == {"top-branch", "branch-max"}
    assert len(rows) == 3 * 4 * 2
    for r in rows:
        assert float(r["ci_low"]) <= float(r["mean"]) <= float(r["ci_high"])
        assert int(r["n"]) <= 60
        if r["token_type"] != "first" and r["branch"] in ("skip", "query"):
            # the classifier reads position 0 only: later tokens act through keys/values
            assert float(r["mean"]) == 0.0
    summary = json.loads((tmp_path / "fig2_summary.json").read_text())
    assert summary["val_accuracy"] == 1.0 and summary["n_sentences"] == 60
    assert summary["decompose"] == ["softmax", "layer_norm"]
    assert set(summary["aten_primitives"]) == {"winners", "paper_claims"}
    with (tmp_path / "fig2_branch_flow_aten.csv").open() as fh:
        aten_rows = list(csv.DictReader(fh))
    assert len(aten_rows) == len(rows)
    # the gradient is granularity-free, max-product values are not
    assert [r["mean"] for r in aten_rows] != [r["mean"] for r in rows]
    assert (tmp_path / "fig2_branch_flow.png").read_bytes()[:4] == b"\x89PNG"
