"""``captum_semiring.runs``: dataset runs checked against independent references: a
batch of one against a padded batch of 16, one process against two under torchrun,
an uninterrupted run against a killed and resumed one, and the per-token values
against autograd and a direct max-product sweep."""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

import captum_semiring as cs  # noqa: E402
from captum_semiring.analysis.models import load_hf_model  # noqa: E402
from captum_semiring.reproductions.tasks.agreement import (  # noqa: E402
    WordTokenizer,
    agreement_bert_config,
    generate_sentences,
    save_hf_directory,
)
from captum_semiring.runs import Columns, RunError, SourceError, read_rows, read_run  # noqa: E402
from captum_semiring.runs import runner as runner_module  # noqa: E402
from captum_semiring.runs.aggregate import aggregate_run  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
N_SENTENCES = 16


@pytest.fixture(autouse=True)
def eager_kernels(monkeypatch: pytest.MonkeyPatch) -> None:
    """Eager semiring kernels: compiling them costs seconds per process, and the
    kernels have their own tests."""
    monkeypatch.setenv("CAPTUM_SEMIRING_COMPILE", "0")


@pytest.fixture(scope="module")
def mlm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer random-init BERT masked LM over the agreement vocabulary."""
    tok = WordTokenizer.default()
    torch.manual_seed(0)
    config = agreement_bert_config(
        len(tok), num_hidden_layers=2, hidden_size=16, intermediate_size=32
    )
    from transformers import BertForMaskedLM

    model = BertForMaskedLM(config).eval()
    return save_hf_directory(model, tmp_path_factory.mktemp("mlm"), tok)


@pytest.fixture(scope="module")
def mlm(mlm_dir: Path) -> Any:
    return load_hf_model(mlm_dir, prefer_masked_lm=True)


def _rows(n: int = N_SENTENCES) -> list[dict[str, Any]]:
    rows = []
    for i, s in enumerate(generate_sentences(n, seed=5)):
        rows.append(
            {
                "id": f"s{i}",
                "text": " ".join(s.masked_words()),
                "target": f"{s.correct_verb},{s.wrong_verb}",
            }
        )
    return rows


@pytest.fixture(scope="module")
def data_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "agreement.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in _rows()))
    return path


def _close(a: Any, b: Any, where: str) -> None:
    """Equal up to float rounding: floats to 1e-5 relative, all else exactly."""
    if isinstance(a, float) and isinstance(b, float):
        if math.isinf(a) or math.isinf(b):
            assert a == b, where
        else:
            assert math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-7), (
                f"{where}: {a} != {b}"
            )
    elif isinstance(a, dict) and isinstance(b, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            _close(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list) and isinstance(b, list):
        assert len(a) == len(b), f"{where}: lengths {len(a)} != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            _close(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def _same_rows(a: Any, b: Any) -> None:
    rows_a, rows_b = a.to_pylist(), b.to_pylist()
    assert [r["index"] for r in rows_a] == [r["index"] for r in rows_b]
    for ra, rb in zip(rows_a, rows_b):
        _close(ra, rb, f"row {ra['index']}")


def _run(model: Any, data: Any, out: Path, **kwargs: Any) -> Any:
    kwargs.setdefault("progress", False)
    cs.attribute_dataset(model, data, out, **kwargs)
    return read_run(out)


# ------------------------------------------------------------------ batching


@pytest.mark.parametrize(
    "semirings, top_k, parameters",
    [
        (("sum", "max", "entropy", "logsum"), 2, None),
        (("count",), 1, None),
        # parameters are shared by a batch: their flow must not mix its examples
        (("sum", "max"), 1, ("by-module", "*.attention")),
    ],
    ids=["sum-max-entropy-logsum", "count", "parameters"],
)
def test_padded_batch_of_16_equals_batches_of_one(
    mlm, tmp_path, semirings, top_k, parameters
):
    rows = _rows()
    lengths = {len(r["text"].split()) for r in rows}
    assert len(lengths) > 3  # the batch of 16 pads
    kwargs = dict(semirings=semirings, top_k=top_k, parameters=parameters)
    one = _run(mlm, rows, tmp_path / "b1", batch_size=1, **kwargs)
    sixteen = _run(mlm, rows, tmp_path / "b16", batch_size=16, **kwargs)
    assert one.num_rows == N_SENTENCES and one["error"].null_count == N_SENTENCES
    _same_rows(one, sixteen)
    assert all(len(p) == top_k for p in sixteen["top_paths"].to_pylist())
    if parameters is not None:
        flows = sixteen["parameter_flow"].to_pylist()
        # the examples differ, so their flows must too (not one batch-wide value)
        assert len({f[0]["sum"] for f in flows}) == N_SENTENCES


def test_rows_match_direct_sweeps_and_autograd(mlm, tmp_path):
    """An independent reference: autograd for ``sum``, a plain max-product sweep
    for ``max``, and the paths' values against their hop products."""
    table = _run(mlm, _rows(4), tmp_path / "run", semirings=("sum", "max"), top_k=2)
    tok = mlm.tokenizer
    emb = mlm.model.bert.embeddings
    for row in table.to_pylist():
        ids = torch.tensor([row["token_ids"]])
        pos = row["tokens"].index("[MASK]")
        good, bad = (tok.convert_tokens_to_ids(w) for w in row["target"].split(","))
        with cs.record(emb) as graph:
            logits = mlm.model(input_ids=ids).logits
            out = logits[:, pos, good] - logits[:, pos, bad]
        direct = graph.backward(out, cs.MaxProduct()).aggregate(emb, -1)[0]
        _close(row["per_token_max"], [float(v) for v in direct], "max")
        captured: list[torch.Tensor] = []
        handle = emb.register_forward_hook(
            lambda m, i, o, into=captured: into.append(o)
        )
        try:
            logits = mlm.model(input_ids=ids).logits
        finally:
            handle.remove()
        (grad,) = torch.autograd.grad(
            logits[0, pos, good] - logits[0, pos, bad], captured[0]
        )
        for got, want in zip(row["per_token_sum"], grad[0].sum(-1).tolist()):
            assert math.isclose(got, want, rel_tol=1e-4, abs_tol=1e-6)
        assert math.isclose(row["output"], float(out.detach()), rel_tol=1e-5)
        for path in row["top_paths"]:
            product = math.prod(h["weight"] for h in path["hops"])
            assert math.isclose(product, path["value"], rel_tol=1e-4)
            assert {h["branch"] for h in path["hops"]} & {
                "query",
                "key",
                "value",
                "skip (attention)",
                "MLP",
                "skip (MLP)",
            }
        layers = {f["layer"] for f in row["branch_flow"]}
        assert layers == {"bert.encoder.layer.0", "bert.encoder.layer.1"}


# ------------------------------------------------------------------ parameters

PARAMETER_GROUPS = ("bert.encoder.layer.*.attention", "*.LayerNorm", "by-module")


def _reference_groups(model: nn.Module) -> dict[str, list[str]]:
    """:data:`PARAMETER_GROUPS` spelled out by hand, not by the runner's matcher."""
    names = [n for n, _ in model.named_parameters()]
    groups = {
        "bert.encoder.layer.*.attention": [
            n
            for n in names
            if n.startswith("bert.encoder.layer.") and ".attention." in n
        ],
        "*.LayerNorm": [n for n in names if ".LayerNorm." in n],
    }
    for n in names:
        groups.setdefault(n.rsplit(".", 1)[0], []).append(n)
    return groups


def _masked_output(mlm: Any, row: dict[str, Any]) -> tuple[Any, torch.Tensor]:
    """The example's logits and logit(correct) - logit(wrong) at [MASK]."""
    ids = torch.tensor([row["token_ids"]])
    pos = row["tokens"].index("[MASK]")
    tok = mlm.tokenizer
    good, bad = (tok.convert_tokens_to_ids(w) for w in row["target"].split(","))
    logits = mlm.model(input_ids=ids).logits
    return logits, logits[0, pos, good] - logits[0, pos, bad]


def test_parameter_flow_matches_autograd_and_per_element_sweeps(mlm, tmp_path):
    """Per example and group: ``sum`` is the sum of ``torch.autograd.grad`` over the
    group's parameters; ``max`` the largest per-element max-product value;
    ``entropy`` the entropy of the mixture of the elements' path distributions, from
    each element's own entropy and log Z (so ⊕ came before finalizing)."""
    semirings = ("sum", "max", "entropy", "logsum")
    table = _run(
        mlm,
        _rows(6),
        tmp_path / "run",
        semirings=semirings,
        top_k=1,
        batch_size=4,
        parameters=PARAMETER_GROUPS,
    )
    params = dict(mlm.model.named_parameters())
    groups = _reference_groups(mlm.model)
    assert len(groups) > 20
    for row in table.to_pylist():
        flow = {g["group"]: g for g in row["parameter_flow"]}
        assert list(flow) == list(groups)
        _, out = _masked_output(mlm, row)
        grads = torch.autograd.grad(out, list(params.values()), allow_unused=True)
        grad = {
            n: torch.zeros_like(p) if g is None else g
            for (n, p), g in zip(params.items(), grads)
        }
        with cs.record(*params.values()) as graph:
            _, out = _masked_output(mlm, row)
        per_element = {
            name: graph.backward(out, sr)
            for name, sr in (
                ("max", cs.MaxProduct()),
                ("entropy", cs.Entropy()),
                ("logsum", cs.LogSum()),
            )
        }
        for group, names in groups.items():
            got = flow[group]
            assert got["elements"] == sum(params[n].numel() for n in names)
            want = sum(float(grad[n].double().sum()) for n in names)
            assert math.isclose(got["sum"], want, rel_tol=1e-4, abs_tol=1e-6), group
            best = max(float(per_element["max"][params[n]].max()) for n in names)
            assert math.isclose(got["max"], best, rel_tol=1e-5, abs_tol=1e-9), group
            h = torch.cat(
                [per_element["entropy"][params[n]].double().flatten() for n in names]
            )
            log_z = torch.cat(
                [per_element["logsum"][params[n]].double().flatten() for n in names]
            )
            flows = log_z > -math.inf
            share = torch.softmax(log_z[flows], 0)
            mixture = float((share * (h[flows] - share.log())).sum())
            assert math.isclose(got["entropy"], mixture, rel_tol=1e-4, abs_tol=1e-6), (
                group
            )
            assert math.isclose(
                got["logsum"], float(torch.logsumexp(log_z, 0)), rel_tol=1e-5
            ), group


def test_parameter_patterns_that_match_nothing_are_refused(mlm, tmp_path):
    with pytest.raises(RunError, match="'encoder.layer.*.attention' matches no"):
        _run(mlm, _rows(1), tmp_path / "run", parameters=["encoder.layer.*.attention"])
    _run(mlm, _rows(1), tmp_path / "ok", semirings=("sum",), top_k=1)
    with pytest.raises(RunError, match="other settings .*parameters"):
        _run(
            mlm,
            _rows(1),
            tmp_path / "ok",
            semirings=("sum",),
            top_k=1,
            parameters=["*.LayerNorm"],
        )


def test_cli_parameter_flow_aggregate_means_match_a_direct_mean(
    mlm_dir, data_file, tmp_path, capsys
):
    from captum_semiring.cli import main

    run_dir = tmp_path / "run"
    code = main(
        [
            "attribute",
            str(data_file),
            "--hf-model",
            str(mlm_dir),
            "--out",
            str(run_dir),
            "--semiring",
            "sum",
            "--semiring",
            "max",
            "--top-k",
            "1",
            "--parameters",
            "*.attention.self.key",
            "--parameters",
            "*.attention.self.value",
        ]
    )
    assert code == 0, capsys.readouterr().err
    assert main(["aggregate", str(run_dir)]) == 0
    table = read_run(run_dir)
    assert table["error"].null_count == N_SENTENCES
    import csv

    aggregate = run_dir / "aggregate"
    with open(aggregate / "aggregate_parameters.csv") as f:
        csv_rows = list(csv.DictReader(f))
    assert (aggregate / "aggregate_parameters.png").stat().st_size > 1000
    got = {(r["semiring"], r["group"]): r for r in csv_rows}
    assert len(got) == 4
    for name in ("sum", "max"):
        for group in ("*.attention.self.key", "*.attention.self.value"):
            values = [
                g[name]
                for flow in table["parameter_flow"].to_pylist()
                for g in flow
                if g["group"] == group
            ]
            mean = sum(values) / len(values)
            sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
            row = got[(name, group)]
            assert int(row["n"]) == N_SENTENCES
            assert math.isclose(float(row["mean"]), mean, rel_tol=1e-6)
            half = 1.96 * sd / math.sqrt(len(values))
            assert math.isclose(float(row["ci_high"]), mean + half, rel_tol=1e-6)
            assert math.isclose(float(row["ci_low"]), mean - half, rel_tol=1e-6)


# ------------------------------------------------------------------ errors


def test_bad_examples_become_error_rows(mlm, tmp_path):
    rows = _rows(6)
    rows[1]["text"] = " ".join(["the"] * 80) + " [MASK] ."  # past 64 positions
    rows[2]["target"] = "zzzz,is"  # unknown target token
    rows[3]["target"] = "not a target"
    table = _run(mlm, rows, tmp_path / "run", semirings=("max",), top_k=1)
    errors = table["error"].to_pylist()
    assert "at most 64 positions" in errors[1]
    assert "unknown target token 'zzzz'" in errors[2]
    assert "neither a class index" in errors[3]
    assert [e is None for e in errors] == [True, False, False, False, True, True]
    reference = _run(
        mlm,
        [rows[i] for i in (0, 4, 5)],
        tmp_path / "good",
        semirings=("max",),
        top_k=1,
    )
    good = table.filter(pa.compute.is_null(table["error"]))
    for a, b in zip(good.to_pylist(), reference.to_pylist()):
        a.pop("index"), b.pop("index"), a.pop("id"), b.pop("id")
        _close(a, b, "good row")


def test_nan_in_the_forward_is_an_error_row(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Embedding(10, 4), nn.Flatten(), nn.Linear(12, 2))
    with torch.no_grad():
        model[0].weight[7] = float("nan")
    rows = [
        {"tokens": [1, 2, 3], "target": 0},
        {"tokens": [1, 7, 3], "target": 0},
        {"tokens": [4, 5, 6], "target": 1},
    ]
    table = _run(model, rows, tmp_path / "run", batch_size=4)
    errors = table["error"].to_pylist()
    assert errors[0] is None and errors[2] is None
    assert "non-finite output" in errors[1]
    alone = _run(model, [rows[2]], tmp_path / "alone")
    _close(
        table.to_pylist()[2]["per_token_max"],
        alone.to_pylist()[0]["per_token_max"],
        "max",
    )


# ------------------------------------------------------------------ resume


def test_corrupt_and_truncated_chunks_are_redone(mlm, tmp_path, monkeypatch):
    reference = _run(mlm, _rows(12), tmp_path / "ref", semirings=("max",), top_k=1)
    out = tmp_path / "run"

    def interrupted(self: Any, n: int) -> Any:
        raise KeyboardInterrupt  # killed before the merge: the chunks stay

    with monkeypatch.context() as m:
        m.setattr(runner_module._Run, "merge", interrupted)
        with pytest.raises(KeyboardInterrupt):
            cs.attribute_dataset(
                mlm,
                _rows(12),
                out,
                semirings=("max",),
                top_k=1,
                batch_size=2,
                chunk_size=2,
                progress=False,
            )
    chunks = sorted((out / "chunks").glob("*.parquet"))
    assert len(chunks) == 6
    data = chunks[0].read_bytes()
    chunks[0].write_bytes(data[: len(data) // 2])  # truncated
    chunks[1].write_bytes(b"PAR1 not a parquet file PAR1")  # corrupt
    (out / "chunks" / ".r0-000009.parquet.tmp123").write_bytes(b"half a write")
    seen: list[int] = []
    real = runner_module.explain_batch

    def spy(model: Any, examples: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(len(examples))
        return real(model, examples, *args, **kwargs)

    monkeypatch.setattr(runner_module, "explain_batch", spy)
    resumed = _run(
        mlm, _rows(12), out, semirings=("max",), top_k=1, batch_size=2, chunk_size=2
    )
    assert sum(seen) == 4  # the two broken chunks' examples, and no others
    _same_rows(reference, resumed)
    assert not list((out / "chunks").glob("*"))


def test_other_settings_are_refused(mlm, tmp_path):
    _run(mlm, _rows(2), tmp_path / "run", semirings=("max",), top_k=1)
    with pytest.raises(RunError, match="other settings .*semirings"):
        _run(mlm, _rows(2), tmp_path / "run", semirings=("sum",), top_k=1)


# ------------------------------------------------------------------ torchrun


def _torchrun(args: list[str], **kwargs: Any) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "CAPTUM_SEMIRING_COMPILE": "0",
        "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
    }
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        "captum_semiring",
        "attribute",
        *args,
    ]
    proc = subprocess.Popen(
        cmd,
        env=env,
        cwd=ROOT,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: _finish can end it all
        **kwargs,
    )
    _LAUNCHED.append(proc)
    return proc


_LAUNCHED: list[subprocess.Popen[str]] = []


@pytest.fixture(autouse=True)
def _no_stray_workers():
    """Whatever a test launched under torchrun ends with it, even when it fails: a
    worker left waiting on a dead peer would outlive the suite."""
    yield
    while _LAUNCHED:
        proc = _LAUNCHED.pop()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _cli_args(data: Path, mlm_dir: Path, out: Path, *extra: str) -> list[str]:
    return [
        str(data),
        "--hf-model",
        str(mlm_dir),
        "--out",
        str(out),
        "--semiring",
        "max",
        "--semiring",
        "entropy",
        *extra,
    ]


def test_two_processes_equal_one(mlm, mlm_dir, data_file, tmp_path):
    proc = _torchrun(_cli_args(data_file, mlm_dir, tmp_path / "two", "--top-k", "2"))
    output, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, output
    assert "over 2 processes" in output
    one = _run(mlm, data_file, tmp_path / "one", semirings=("max", "entropy"), top_k=2)
    two = read_run(tmp_path / "two")
    assert two.num_rows == N_SENTENCES
    _same_rows(one, two)


def test_sigkill_a_worker_and_resume(mlm, mlm_dir, tmp_path):
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in _rows(30)))
    out = tmp_path / "run"
    args = _cli_args(
        data, mlm_dir, out, "--top-k", "1", "--batch-size", "1", "--chunk-size", "1"
    )
    proc = _torchrun(args)
    progress = out / "progress" / "rank1.json"
    deadline = time.time() + 120
    killed = False
    while time.time() < deadline and proc.poll() is None:
        try:
            state = json.loads(progress.read_text())
        except (OSError, ValueError):
            state = {"done": 0}
        if state["done"] >= 3:
            os.kill(state["pid"], signal.SIGKILL)
            killed = True
            break
        time.sleep(0.05)
    output, _ = proc.communicate(timeout=120)
    assert killed and proc.returncode != 0, output
    assert not (out / "examples.parquet").exists()
    committed = sorted((out / "chunks").glob("*.parquet"))
    assert committed, "nothing was committed before the kill"
    proc = _torchrun(args)
    output, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, output
    resumed = read_run(out)
    assert resumed["index"].to_pylist() == list(range(30))  # none lost or doubled
    reference = _run(mlm, data, tmp_path / "ref", semirings=("max", "entropy"), top_k=1)
    _same_rows(reference, resumed)


# ------------------------------------------------------------------ sources


def test_file_formats_and_loaders_read_the_same_rows(tmp_path):
    rows = [
        {"text": "a b", "target": 1, "k": "x"},
        {"text": "c", "target": "are,is", "k": "y"},
    ]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "d.csv").write_text('text,target,k\na b,1,x\nc,"are,is",y\n')
    pq.write_table(
        pa.Table.from_pylist([{**r, "target": str(r["target"])} for r in rows]),
        tmp_path / "d.parquet",
    )
    from torch.utils.data import DataLoader

    columns = Columns(keep=("k",))
    expected = [(0, "a b", 1, {"k": "x"}), (1, "c", ("are", "is"), {"k": "y"})]
    from captum_semiring.runs.sources import parse_target

    for data in (
        tmp_path / "d.jsonl",
        tmp_path / "d.csv",
        tmp_path / "d.parquet",
        rows,
        DataLoader(rows, batch_size=2),
    ):
        got = [
            (r.index, r.text, parse_target(r.target), r.metadata)
            for r in read_rows(data, columns)
        ]
        assert got == expected, data
    datasets = pytest.importorskip("datasets")
    # an Arrow column holds one type: targets as strings, as in the Parquet file
    ds = datasets.Dataset.from_list([{**r, "target": str(r["target"])} for r in rows])
    got = [
        (r.index, r.text, parse_target(r.target), r.metadata)
        for r in read_rows(ds, columns)
    ]
    assert got == expected


def test_source_errors_name_the_argument(tmp_path):
    with pytest.raises(SourceError, match="text column 'sentence'"):
        read_rows([{"text": "a"}], Columns(text="sentence", tokens="ids"))
    with pytest.raises(SourceError, match="id column 'id' has the value 'a' twice"):
        read_rows(
            [{"text": "x", "id": "a"}, {"text": "y", "id": "a"}], Columns(id="id")
        )
    with pytest.raises(SourceError, match="is not a file"):
        read_rows(tmp_path / "missing.jsonl")


# ------------------------------------------------------------------ aggregate


def test_aggregate_means_match_a_direct_computation(mlm, tmp_path):
    table = _run(mlm, _rows(8), tmp_path / "run", semirings=("max",), top_k=1)
    agg = aggregate_run(tmp_path / "run")
    rows = table.to_pylist()
    by_pos: dict[int, list[float]] = {}
    for r in rows:
        for p, v in enumerate(r["per_token_max"]):
            by_pos.setdefault(p, []).append(v)
    got = {r["key"]: r for r in agg.token_rows if r["by"] == "position"}
    for p, values in by_pos.items():
        assert math.isclose(got[p]["mean"], sum(values) / len(values), rel_tol=1e-9)
        assert got[p]["n"] == len(values)
    # branch flow of layer 1, skip, the paper's aggregation, all tokens
    per_example = []
    for r in rows:
        f = next(
            f
            for f in r["branch_flow"]
            if f["layer"].endswith("layer.1") and f["branch"] == "skip"
        )
        per_example.append(sum(f["top_branch"]) / len(f["top_branch"]))
    row = next(
        r
        for r in agg.branch_rows
        if r["layer"] == 1
        and r["branch"] == "skip"
        and r["aggregation"] == "top-branch"
    )
    assert math.isclose(row["mean"], sum(per_example) / len(per_example), rel_tol=1e-9)
    assert row["n"] == 8 and row["ci_low"] <= row["mean"] <= row["ci_high"]


def test_fig4_through_the_runner_equals_the_direct_analysis(tmp_path):
    """``reproduce fig4 --n-sentences`` aggregates runner rows; the reference is
    :func:`agreement_branch_flow`, which sweeps the batches itself."""
    from transformers import BertForMaskedLM

    from captum_semiring.reproductions.fig4 import (
        agreement_branch_flow,
        agreement_flow_from_run,
        agreement_rows,
        agreement_run_model,
    )
    from captum_semiring.reproductions.tasks.agreement import encode_all
    from captum_semiring.runs import attribute_dataset

    tok = WordTokenizer.default()
    torch.manual_seed(1)
    model = BertForMaskedLM(
        agreement_bert_config(
            len(tok), num_hidden_layers=2, hidden_size=16, intermediate_size=32
        )
    ).eval()
    examples = encode_all(generate_sentences(8, seed=2), tok)
    direct = agreement_branch_flow(model, examples)
    attribute_dataset(
        agreement_run_model(model),
        agreement_rows(examples),
        tmp_path / "run",
        semirings=("max",),
        top_k=1,
        columns=Columns(keep=("subject_position", "attractor_positions")),
        progress=False,
    )
    via_runner = agreement_flow_from_run(tmp_path / "run")
    assert via_runner.layers == direct.layers
    assert via_runner.samples.keys() == direct.samples.keys()
    for key, want in direct.samples.items():
        # the direct analysis orders sentences by length, the runner by index
        _close(
            sorted(via_runner.samples[key].tolist()), sorted(want.tolist()), str(key)
        )
