"""``reproduce induction`` at the quick scale: its files agree with each other and
with a direct evaluation of the circuits it names."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from captum_semiring import circuits
from captum_semiring.reproductions.registry import ReproduceOptions, available
from captum_semiring.reproductions.tasks import induction


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("induction")
    available()["induction"].run(out, ReproduceOptions(extra={"scale": "quick"}))
    return out


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open() as fh:
        return list(csv.DictReader(fh))


def test_files_and_whole_graph_faithfulness(run: Path) -> None:
    names = {p.name for p in run.iterdir()}
    assert names == {
        "induction_faithfulness.csv",
        "induction_faithfulness.png",
        "induction_circuits.csv",
        "induction_summary.json",
    }
    summary = json.loads((run / "induction_summary.json").read_text())
    n = int(summary["graph"].split(";")[1].split()[0])
    curves = _rows(run / "induction_faithfulness.csv")
    methods = {r["method"] for r in curves}
    assert "EAP-IG top edges" in methods and "MaxProduct top edges" in methods
    for m in methods - {"TopK path union"}:
        whole = [
            float(r["faithfulness"])
            for r in curves
            if r["method"] == m and int(r["n_edges"]) == n
        ]
        assert whole == [pytest.approx(1.0)], m


def test_summary_recovery_matches_the_circuits_file(run: Path) -> None:
    summary = json.loads((run / "induction_summary.json").read_text())
    core = set(summary["known_circuit"]["core"])
    rows = _rows(run / "induction_circuits.csv")
    for method, r in summary["recovery"].items():
        top = [
            f"{x['upstream']} -> {x['downstream']}.{x['slot']}"
            for x in rows
            if x["method"] == method and int(x["rank"]) <= len(core)
        ]
        hits = len(set(top) & core)
        key = f"top {len(core)}: precision, recall vs core"
        assert r[key] == [
            pytest.approx(hits / len(top), abs=1e-3),
            pytest.approx(hits / len(core), abs=1e-3),
        ]


def test_a_curve_point_equals_a_direct_patching_run(run: Path) -> None:
    """Rebuild the quick setup and patch the EAP-IG circuit of 4 edges directly."""
    trained = induction.induction_model(induction.SMALL_CONFIG, 0)
    cfg, model = induction.SMALL_CONFIG, trained.model
    ids = induction.repeated_sequences(8, cfg.half_length, cfg.vocab_size, seed=1000)
    bad = induction.corrupt(
        ids, seed=2000, vocab_size=cfg.vocab_size, keep_second_half=False
    )
    with torch.no_grad():
        clean, corrupted = model.embed(ids), model.embed(bad)
    f = lambda e: induction.target_logit(model, ids, inputs_embeds=e)  # noqa: E731
    rows = _rows(run / "induction_circuits.csv")
    top4 = [
        circuits.Edge(x["upstream"], x["downstream"], x["slot"])
        for x in rows
        if x["method"] == "EAP-IG top edges" and int(x["rank"]) <= 4
    ]
    want = circuits.EdgePatching(f, clean, corrupted).faithfulness(top4)
    curves = _rows(run / "induction_faithfulness.csv")
    (got,) = [
        float(r["faithfulness"])
        for r in curves
        if r["method"] == "EAP-IG top edges" and r["n_edges"] == "4"
    ]
    assert got == pytest.approx(want, abs=1e-5)
