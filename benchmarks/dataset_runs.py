"""Throughput of dataset runs (``captum-semiring attribute``) at 1 and 2 processes
under ``torchrun``, for the fig4 agreement model and for MiniLM.

    python benchmarks/dataset_runs.py --fig4 512 --minilm 64

prints examples/s per model and process count and the scaling efficiency
(throughput at P processes / (P x throughput at 1)), and writes
``benchmarks/dataset_runs.json``. Each run starts from an empty run directory, after a
warm-up run (which also builds the native kernels, once).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _fig4_inputs(tmp: Path, n: int) -> tuple[Path, Path, list[str]]:
    from captum_semiring.reproductions.fig4 import GRANULARITIES, agreement_rows
    from captum_semiring.reproductions.tasks.agreement import (
        WordTokenizer,
        agreement_model,
        encode_all,
        generate_sentences,
        save_hf_directory,
    )

    trained = agreement_model()
    model_dir = save_hf_directory(trained, tmp / "agreement")
    rows = agreement_rows(
        encode_all(generate_sentences(n, seed=30_000), WordTokenizer.default())
    )
    data = tmp / "fig4.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    decompose = [
        a for d in GRANULARITIES["paper granularity"] for a in ("--decompose", d)
    ]
    return (
        data,
        model_dir,
        ["--semiring", "max", "--top-k", "1", "--batch-size", "32", *decompose],
    )


def _minilm_inputs(tmp: Path, n: int) -> tuple[Path, Path, list[str]]:
    from captum_semiring.reproductions.tasks import minilm_dir
    from captum_semiring.reproductions.tasks.agreement import generate_sentences

    rows = [
        {
            "text": " ".join(s.masked_words()),
            "target": f"{s.correct_verb},{s.wrong_verb}",
        }
        for s in generate_sentences(n, seed=30_000)
    ]
    data = tmp / "minilm.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    # MiniLM is a bare encoder: its masked-LM head is random, which costs the same
    return (
        data,
        minilm_dir(),
        ["--allow-random-head", "--top-k", "1", "--batch-size", "16"],
    )


def _run(
    data: Path, model_dir: Path, options: list[str], procs: int, out: Path
) -> float:
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        str(procs),
        "-m",
        "captum_semiring",
        "attribute",
        str(data),
        "--hf-model",
        str(model_dir),
        "--out",
        str(out),
        *options,
    ]
    env = {
        **os.environ,
        "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
    }
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    match = re.search(r"([\d.]+) examples/s", done.stdout)
    assert match, done.stdout + done.stderr
    return float(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--fig4",
        type=int,
        default=512,
        metavar="N",
        help="agreement sentences (0: skip)",
    )
    parser.add_argument(
        "--minilm", type=int, default=64, metavar="N", help="MiniLM sentences (0: skip)"
    )
    parser.add_argument("--procs", type=int, nargs="+", default=[1, 2])
    parser.add_argument(
        "--threads",
        type=int,
        help="torch threads per process (default: cores / processes)",
    )
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        for name, n, inputs in (
            ("fig4", args.fig4, _fig4_inputs),
            ("minilm", args.minilm, _minilm_inputs),
        ):
            if n <= 0:
                continue
            data, model_dir, options = inputs(tmp, n)
            if args.threads:
                options += ["--threads", str(args.threads)]
            # a first run loads the model and data once and builds the native
            # kernels if none are cached
            (tmp / f"{name}-data").mkdir()
            warm, _, _ = inputs(tmp / f"{name}-data", 16)
            _run(warm, model_dir, options, 1, tmp / f"{name}-warm")
            rates = {
                p: _run(data, model_dir, options, p, tmp / f"{name}-{p}")
                for p in args.procs
            }
            base = rates[args.procs[0]]
            results[name] = {
                "n": n,
                "examples_per_second": rates,
                "efficiency": {p: rates[p] / (p * base) for p in args.procs},
            }
            for p in args.procs:
                print(
                    f"{name}: {p} process(es): {rates[p]:.2f} examples/s, efficiency {rates[p] / (p * base):.2f}",
                    flush=True,
                )
    (ROOT / "benchmarks" / "dataset_runs.json").write_text(
        json.dumps(results, indent=1)
    )


if __name__ == "__main__":
    main()
