"""The ``captum-semiring`` command line.

``captum-semiring explain`` runs semiring attributions on a model and writes a
self-contained HTML report; ``captum-semiring reproduce NAME`` reruns one of the
paper's experiments. Run ``captum-semiring explain --help`` for the options.

Bad input (a missing model directory, a layer the model does not have, an unknown
target token, a text longer than the model's positions, ...) gives a one-line error on
stderr and exit code 2. An unexpected failure gives a one-line message and exit code 1;
``--debug`` (or ``CAPTUM_SEMIRING_DEBUG=1``) shows its traceback instead.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ._capture import COMPOSITE_PRIMITIVES
from .analysis.branch_flow import TRANSFORMER_BRANCHES
from .analysis.explain import (
    IG_DELTA_WARNING,
    Example,
    ExplainError,
    ExplainReport,
    ExplainResult,
    PathStep,
    demo_examples,
    explain_inputs,
    prepare_target,
    relative_delta,
    text_example,
    token_example,
)
from .analysis.io import json_ready
from .analysis.models import (
    LoadedModel,
    ModelLoadError,
    first_line,
    load_callable_model,
    load_hf_model,
    quiet_transformers,
    refuse_random_weights,
)
from .paths import module_label

PROG = "captum-semiring"

EPILOG = """\
examples:
  captum-semiring explain
      the demo: the paper's 1-layer transformer (trained on FirstTokenRepeatedOnce on
      first use, ~15 s, then cached) on five built-in sequences
  captum-semiring explain --tokens "4 9 2 4 7 1 3 8 5 6" --target 1
  captum-semiring explain --hf-model ./my-bert-classifier --text "a fine film" --target 1
  captum-semiring explain --hf-model ./bert-base-uncased \\
      --text "the keys to the cabinet [MASK] on the table ." --target-pair are,is
  captum-semiring explain --model mypkg.models:build --tokens "1 2 3" --target 0 \\
      --layer embed
  captum-semiring reproduce fig2 --out results/

what is reported, per input:
  top gradient paths    max-product semiring: the best paths from the most
                        important token, printed as module-level hops (TopK)
  per-token entropy     entropy semiring, aggregated over each token's hidden units
                        (eq. 3 of Du et al. 2023), in nats
  branch flow           at each transformer layer's input, the max-product flow into
                        its skip connection and its query, key and value projections
  integrated gradients  Captum's LayerIntegratedGradients on the same layer, summed
                        per token; Spearman correlation with the top-path values

exit codes: 0 ok, 2 bad input (one-line message), 1 unexpected error (--debug shows
the traceback). Environment: CAPTUM_SEMIRING_CACHE or XDG_CACHE_HOME set the cache
directory of the default model (default ~/.cache/captum-semiring).
"""


class CLIError(Exception):
    """Bad user input: reported as one line on stderr, exit code 2."""


# Library errors that are bad user input too: one line on stderr, exit code 2.
_INPUT_ERRORS = (CLIError, ModelLoadError, ExplainError)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # one line, no usage block
        raise CLIError(f"{message} (see {self.prog} --help)")


# --------------------------------------------------------------------------- explain


def _load(args: argparse.Namespace) -> LoadedModel:
    if args.hf_model is not None:
        return load_hf_model(
            args.hf_model,
            prefer_masked_lm=args.target_pair is not None,
            seed=args.seed,
            layer=args.layer,
        )
    if args.model is not None:
        # a spec names a module of the working directory, as `python -m` would find it
        if os.getcwd() not in sys.path and "" not in sys.path:
            sys.path.insert(0, os.getcwd())
        return load_callable_model(args.model, layer=args.layer)
    from .reproductions.tasks.models import load_default_model

    return load_default_model(layer=args.layer)


def _parse_ids(text: str) -> list[int]:
    parts = [p for p in re.split(r"[\s,]+", text.strip()) if p]
    if not parts:
        raise CLIError("--tokens got an empty token list")
    try:
        return [int(p) for p in parts]
    except ValueError:
        raise CLIError(
            f"--tokens takes integer token ids separated by spaces, got {text!r}"
        ) from None


def _parse_pair(text: str) -> tuple[str, str]:
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 2 or not all(parts):
        raise CLIError(f"--target-pair takes 'correct,wrong', got {text!r}")
    return parts[0], parts[1]


def _examples(model: LoadedModel, args: argparse.Namespace) -> list[Example]:
    """The inputs of --text and --tokens, else the built-in demo (which may set
    ``args.target_pair``, the demo pair of a masked LM)."""
    texts: list[str] = args.text or []
    token_lists: list[str] = args.tokens or []
    if texts and model.tokenizer is None:
        if model.kind == "default":
            raise CLIError(
                'the default model reads token ids 1..20, not text; use --tokens "3 7 12 5 3 9 14 1 8 11"'
            )
        raise CLIError("this model has no tokenizer; give --tokens instead of --text")
    examples = [
        text_example(model, text, what=f"text {i}") for i, text in enumerate(texts, 1)
    ]
    for i, text in enumerate(token_lists, 1):
        examples.append(token_example(model, _parse_ids(text), what=f"token list {i}"))
    if examples:
        return examples
    examples, pair = demo_examples(model)
    if pair is not None and args.target_pair is None:
        args.target_pair = ",".join(pair)
    if not examples:
        raise CLIError(
            'give the inputs with --tokens "ID ID ..." (this model has no built-in demo)'
        )
    return examples


def _step_label(step: PathStep) -> str:
    """``module [branch, head h]``: what the path does in that module."""
    what = [step.branch] if step.branch else []
    if step.head is not None:
        what.append(f"head {step.head}")
    return module_label(step.module) + (f" [{', '.join(what)}]" if what else "")


def _console_block(result: ExplainResult) -> str:
    lines = [f"input {result.index + 1}: {' '.join(result.tokens)}"]
    pred = f", prediction {result.prediction}" if result.prediction is not None else ""
    lines.append(f"  target {result.target.description}: {result.output:.4g}{pred}")
    k = len(result.top_paths)
    semiring = "MaxProduct(positive)" if k == 1 else f"TopK({k}), ranked by |g|"
    for p in result.top_paths:
        lines.append(
            f"  path {p.rank} [{semiring}] ({p.value:+.3e}) from token {p.token_index} {p.token!r}: "
            + " -> ".join(_step_label(step) for step in p.steps)
        )
    ent = " ".join(
        f"{t}:{e:.2f}" for t, e in zip(result.tokens, result.entropy_per_token)
    )
    lines.append(f"  entropy (nats) {ent}")
    norm = " ".join(
        f"{t}:{'n/a' if e is None else f'{e:.2f}'}"
        for t, e in zip(result.tokens, result.normalized_entropy_per_token)
    )
    lines.append(f"  entropy / log #paths {norm}")
    for f in result.branch_flow:
        wins = f.wins()
        lines.append(
            f"  {f.name}: tokens whose top path enters via "
            + ", ".join(f"{b} {wins[b]}" for b in TRANSFORMER_BRANCHES)
        )
    ig = result.integrated_gradients
    if ig:
        rho = "n/a" if ig.spearman is None else f"{ig.spearman:+.2f}"
        lines.append(
            f"  vs integrated gradients: Spearman {rho}, same top token: {'yes' if ig.top_token_agrees else 'no'}"
        )
        delta = relative_delta(ig, result.output)
        if abs(delta) > IG_DELTA_WARNING:
            lines.append(
                f"  warning: IG has not converged (delta {ig.convergence_delta:+.3g} is "
                f"{100 * abs(delta):.0f}% of the output); use more --ig-steps"
            )
    return "\n".join(lines)


def _check_explain_args(args: argparse.Namespace) -> None:
    if args.top_k < 1:
        raise CLIError("--top-k must be at least 1")
    if args.ig_steps < 0:
        raise CLIError("--ig-steps must be >= 0")
    for text in args.text or []:
        if not text.strip():
            raise CLIError("--text got an empty text")
    if args.target_pair is not None:
        _parse_pair(args.target_pair)
        for text in args.text or []:
            if text.count("[MASK]") > 1:
                raise CLIError(
                    f"--target-pair explains one [MASK] token; {text!r} has "
                    f"{text.count('[MASK]')}"
                )


def _check_one_mask(model: LoadedModel, examples: list[Example]) -> None:
    """--target-pair reads the logits at the mask token: exactly one per input."""
    mask_id = getattr(model.tokenizer, "mask_token_id", None)
    if mask_id is None:
        return
    for i, ex in enumerate(examples, 1):
        count = int((ex.ids == mask_id).sum())
        if count != 1:
            raise CLIError(
                f"--target-pair explains one mask token per input; input {i} has {count}"
            )


def cmd_explain(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from .report import write_html_report

    _check_explain_args(args)  # before the model load, which takes seconds
    start = time.perf_counter()
    model = _load(args)
    if args.target_pair is not None and not model.is_mlm and model.kind != "callable":
        raise CLIError(
            "--target-pair needs a masked language model; this model is a classifier, use --target"
        )
    refuse_random_weights(model, allow=args.allow_random_head)
    if model.random_weights:
        print(
            f"{PROG}: warning: explaining a model with {len(model.random_weights)} "
            "randomly initialized weights (--allow-random-head): its outputs are noise",
            file=sys.stderr,
        )
    with quiet_transformers():
        examples = _examples(model, args)
    if args.target_pair is not None and model.tokenizer is not None:
        _check_one_mask(model, examples)
    out_dir = Path(args.out)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise CLIError(
            f"cannot create the output directory {str(out_dir)!r}: {err.strerror}"
        ) from None

    pair = _parse_pair(args.target_pair) if args.target_pair is not None else None
    prepared = [
        prepare_target(model, ex, target_class=args.target, target_pair=pair)
        for ex in examples
    ]
    results = []
    for result in explain_inputs(
        model,
        examples,
        prepared,
        top_k=args.top_k,
        ig_steps=args.ig_steps,
        decompose=tuple(args.decompose or ()),
        show_progress=sys.stderr.isatty(),  # as tqdm's disable=None
    ):
        results.append(result)
        tqdm.write(_console_block(result), file=sys.stdout)

    run = ExplainReport(
        model, results, top_k=args.top_k, decompose=tuple(args.decompose or ())
    )
    images = run.images
    for name, png in images.items():
        (out_dir / name).write_bytes(png)
    summary = {
        "tool": PROG,
        "version": _version(),
        **run.to_json(),
        "files": {
            "report": "report.html",
            "summary": "summary.json",
            "plots": sorted(images),
        },
        "seconds": round(time.perf_counter() - start, 2),
    }
    (out_dir / "summary.json").write_text(
        json.dumps(json_ready(summary), indent=1, allow_nan=False), encoding="utf-8"
    )
    report = write_html_report(run, out_dir / "report.html")
    print(f"report:  {report.resolve()}")
    print(f"summary: {(out_dir / 'summary.json').resolve()}")
    print(f"plots:   {len(images)} PNG files in {out_dir.resolve()}")
    return 0


# --------------------------------------------------------------------------- reproduce


def cmd_reproduce(args: argparse.Namespace) -> int:
    from .reproductions import ReproduceError, ReproduceOptions, available

    if args.max_sentences is not None and args.max_sentences < 1:
        raise CLIError("--max-sentences must be at least 1")
    if args.hf_model is not None and not Path(args.hf_model).is_dir():
        raise CLIError(f"--hf-model {args.hf_model!r} is not a directory")
    reproductions = available()
    if args.name not in reproductions:
        names = ", ".join(reproductions) or "none yet"
        raise CLIError(f"unknown reproduction {args.name!r}; available: {names}")
    out_dir = Path(args.out)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise CLIError(
            f"cannot create the output directory {str(out_dir)!r}: {err.strerror}"
        ) from None
    extra: dict[str, Any] = {"scale": args.scale} if args.scale else {}
    if args.n_sentences is not None:
        if args.n_sentences < 1:
            raise CLIError("--n-sentences must be at least 1")
        if args.name != "fig4":
            raise CLIError("--n-sentences is for fig4 only")
        extra["n_sentences"] = args.n_sentences
    options = ReproduceOptions(
        max_sentences=args.max_sentences,
        hf_model=args.hf_model,
        allow_random_head=args.allow_random_head,
        extra=extra,
    )
    try:
        files = reproductions[args.name].run(out_dir, options)
    except ReproduceError as err:
        raise CLIError(str(err)) from None
    for f in files:
        print(f"wrote {f}")
    return 0


# --------------------------------------------------------------------------- attribute


def _load_for_run(args: argparse.Namespace) -> LoadedModel:
    model = _load(args)
    refuse_random_weights(model, allow=args.allow_random_head)
    return model


def cmd_attribute(args: argparse.Namespace) -> int:
    from .runs import Columns, RunError, SourceError, attribute_dataset

    model = _load_for_run(args)
    columns = Columns(
        text=args.text_column,
        tokens=args.tokens_column,
        target=args.target_column,
        id=args.id_column,
        keep=tuple(args.keep_column or ()),
    )
    try:
        summary = attribute_dataset(
            model,
            args.data,
            args.out,
            semirings=args.semiring or ("sum", "max", "entropy", "logsum"),
            top_k=args.top_k,
            branch_flow=not args.no_branch_flow,
            columns=columns,
            batch_size=args.batch_size,
            chunk_size=args.chunk_size,
            decompose=tuple(args.decompose or ()),
            threads=args.threads,
            device=args.device,
            parameters=args.parameters,
        )
    except (RunError, SourceError) as err:
        raise CLIError(str(err)) from None
    if summary.examples is not None:
        print(
            f"{summary.n_examples} examples ({summary.n_errors} error rows) in "
            f"{summary.examples}; {summary.examples_per_second:.2f} examples/s over "
            f"{summary.world} process{'es' if summary.world > 1 else ''}"
        )
    return 0


def cmd_aggregate(args: argparse.Namespace) -> int:
    from .runs import RunError
    from .runs.aggregate import aggregate_run, write_aggregate

    out = Path(args.out) if args.out else Path(args.run_dir) / "aggregate"
    try:
        agg = aggregate_run(args.run_dir, min_count=args.min_count)
    except RunError as err:
        raise CLIError(str(err)) from None
    for f in write_aggregate(agg, out):
        print(f"wrote {f}")
    return 0


# --------------------------------------------------------------------------- main


def _reproductions() -> dict[str, Any]:
    from .reproductions import available

    return available()


def _version() -> str:
    try:
        from . import __version__

        return str(__version__)
    except ImportError:  # pragma: no cover
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``captum-semiring``."""
    parser = _Parser(
        prog=PROG,
        description="Semiring backpropagation (Du et al., ACL 2023) for PyTorch models: top gradient paths, gradient entropy and branch flow, next to Captum's Integrated Gradients.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    ex = sub.add_parser(
        "explain",
        help="explain a model's predictions and write an HTML report",
        description="Run top gradient paths, gradient entropy, branch flow and Integrated Gradients on a model and write report.html, summary.json and PNG plots.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    src = ex.add_argument_group(
        "model (default: the embedded 1-layer transformer)"
    ).add_mutually_exclusive_group()
    src.add_argument(
        "--hf-model",
        metavar="DIR",
        help="a local Hugging Face model directory (a sequence classifier or a masked LM, with its tokenizer)",
    )
    src.add_argument(
        "--model",
        metavar="MODULE:CALLABLE",
        help="a Python callable that returns a torch.nn.Module taking token ids (batch, seq) and returning logits",
    )
    inp = ex.add_argument_group("inputs (default: built-in examples)")
    inp.add_argument(
        "--text",
        action="append",
        metavar="TEXT",
        help="an input text (repeatable); needs a tokenizer",
    )
    inp.add_argument(
        "--tokens",
        action="append",
        metavar='"ID ID ..."',
        help="an input as token ids separated by spaces (repeatable)",
    )
    tgt = ex.add_argument_group(
        "target (default: the correct class of a built-in example, else the predicted class)"
    ).add_mutually_exclusive_group()
    tgt.add_argument(
        "--target",
        type=int,
        metavar="CLASS",
        help="explain the logit of this class index",
    )
    tgt.add_argument(
        "--target-pair",
        metavar="CORRECT,WRONG",
        help="masked LMs: explain logit(CORRECT) - logit(WRONG) at the [MASK] token",
    )
    opt = ex.add_argument_group("options")
    opt.add_argument(
        "--layer",
        metavar="NAME",
        help="dotted module path of the attribution layer (default: the embeddings, e.g. bert.embeddings)",
    )
    opt.add_argument(
        "--out",
        default="captum-semiring-report",
        metavar="DIR",
        help="output directory (default: ./captum-semiring-report)",
    )
    opt.add_argument(
        "--top-k",
        type=int,
        default=3,
        metavar="K",
        help="number of top gradient paths to print (default: 3); K > 1 runs a TopK(K) sweep, K = 1 reuses the max-product sweep (much faster on big models)",
    )
    opt.add_argument(
        "--ig-steps",
        type=int,
        default=32,
        metavar="N",
        help="integrated gradients steps; 0 skips IG (default: 32)",
    )
    opt.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed for heads that a checkpoint lacks (default: 0)",
    )
    opt.add_argument(
        "--allow-random-head",
        action="store_true",
        help="explain a model whose checkpoint lacks some weights (they are random: the outputs are noise); refused by default",
    )
    opt.add_argument(
        "--decompose",
        action="append",
        choices=sorted(COMPOSITE_PRIMITIVES),
        help="record this composite primitive as its finer ops (repeatable); top paths and branch winners depend on the granularity",
    )
    _debug_option(opt)
    ex.set_defaults(func=cmd_explain)

    rp = sub.add_parser(
        "reproduce",
        help="reproduce one of the paper's experiments",
        description="Reproduce an experiment of Du et al. (2023); writes a CSV, a PNG and NAME_summary.json.",
    )
    rp.add_argument(
        "name",
        metavar="NAME",
        help="the experiment: "
        + ", ".join(f"{n} ({r.description})" for n, r in _reproductions().items()),
    )
    rp.add_argument(
        "--out",
        default="captum-semiring-results",
        metavar="DIR",
        help="output directory (default: ./captum-semiring-results)",
    )
    rp.add_argument(
        "--max-sentences",
        type=int,
        default=None,
        metavar="N",
        help="use only the first N validation sentences (quick checks; default: all)",
    )
    rp.add_argument(
        "--n-sentences",
        type=int,
        metavar="N",
        help="fig4: generate N new sentences and run them through the resumable dataset runner (RUN_DIRs fig4_run_paper/ and fig4_run_aten/ in --out)",
    )
    rp.add_argument(
        "--scale",
        choices=("quick", "full", "seeds3"),
        help="appB and fig5: the experiment's scale (default: full; seeds3 is fig5 with the paper's 3 seeds, about 15 min)",
    )
    rp.add_argument(
        "--hf-model",
        metavar="DIR",
        help="a local Hugging Face masked LM directory, for reproductions that accept one (fig4)",
    )
    rp.add_argument(
        "--allow-random-head",
        action="store_true",
        help="with --hf-model: go on when the checkpoint lacks some weights (refused by default)",
    )
    _debug_option(rp)
    rp.set_defaults(func=cmd_reproduce)
    _add_attribute(sub)
    return parser


def _add_attribute(sub: Any) -> None:
    at = sub.add_parser(
        "attribute",
        help="explain every example of a dataset into Parquet (torchrun for many processes)",
        description="Explain every example of a dataset (JSONL, CSV or Parquet) and write one Parquet row per example to OUT/examples.parquet (schema: captum_semiring.runs.schema). Under `torchrun --nproc-per-node N -m captum_semiring attribute ...` the dataset is sharded over N processes. Rerun the same command to resume a killed run.",
    )
    at.add_argument("data", metavar="DATA", help="a .jsonl, .csv or .parquet file")
    src = at.add_argument_group(
        "model (default: the embedded 1-layer transformer)"
    ).add_mutually_exclusive_group()
    src.add_argument(
        "--hf-model", metavar="DIR", help="a local Hugging Face model directory"
    )
    src.add_argument(
        "--model",
        metavar="MODULE:CALLABLE",
        help="a Python callable returning an nn.Module",
    )
    at.add_argument("--out", required=True, metavar="RUN_DIR", help="the run directory")
    at.add_argument(
        "--layer",
        metavar="NAME",
        help="the attribution layer (default: the embeddings)",
    )
    at.add_argument("--text-column", default="text", metavar="NAME")
    at.add_argument("--tokens-column", default="tokens", metavar="NAME")
    at.add_argument(
        "--target-column",
        default="target",
        metavar="NAME",
        help="class index, or 'correct,wrong' for a masked LM",
    )
    at.add_argument(
        "--id-column",
        metavar="NAME",
        help="unique example ids (default: the row position)",
    )
    at.add_argument(
        "--keep-column",
        action="append",
        metavar="NAME",
        help="copy this column into each row's metadata (repeatable)",
    )
    at.add_argument(
        "--semiring",
        action="append",
        metavar="NAME",
        help="a per-token semiring: sum, max, max_negative, max_abs, entropy, logsum, count (repeatable; default: sum, max, entropy, logsum)",
    )
    at.add_argument(
        "--top-k",
        type=int,
        default=3,
        metavar="K",
        help="top paths per example (default: 3)",
    )
    at.add_argument(
        "--no-branch-flow", action="store_true", help="skip the branch flow"
    )
    at.add_argument(
        "--parameters",
        action="append",
        metavar="PATTERN",
        help="take the parameters as sources too: one group per PATTERN, matched (fnmatch, '*' spans dots) against parameter names and the module paths above them, e.g. 'bert.encoder.layer.*.attention' or '*.LayerNorm'; 'by-module' makes one group per module. Each example's group flow (each semiring's sum over the group) goes into the parameter_flow column, computed one example at a time (repeatable)",
    )
    at.add_argument("--batch-size", type=int, default=16, metavar="N")
    at.add_argument(
        "--chunk-size",
        type=int,
        default=64,
        metavar="N",
        help="rows per committed chunk",
    )
    at.add_argument(
        "--decompose", action="append", choices=sorted(COMPOSITE_PRIMITIVES)
    )
    at.add_argument(
        "--threads",
        type=int,
        metavar="N",
        help="torch threads per process (default: cores / processes)",
    )
    at.add_argument("--device", default="cpu", help="cpu or cuda (one GPU per process)")
    at.add_argument(
        "--seed", type=int, default=0, help="seed for heads a checkpoint lacks"
    )
    at.add_argument("--allow-random-head", action="store_true")
    _debug_option(at)
    at.set_defaults(func=cmd_attribute, target_pair=None)

    ag = sub.add_parser(
        "aggregate",
        help="means with confidence intervals over a finished run",
        description="Means with 95%% intervals of per-token values by token and position, of branch flow per layer and branch, and of parameter-group flow (runs with --parameters); writes CSVs and plots.",
    )
    ag.add_argument("run_dir", metavar="RUN_DIR")
    ag.add_argument("--out", metavar="DIR", help="default: RUN_DIR/aggregate")
    ag.add_argument(
        "--min-count",
        type=int,
        default=1,
        metavar="N",
        help="leave out tokens seen fewer times",
    )
    _debug_option(ag)
    ag.set_defaults(func=cmd_aggregate)


def _debug_option(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    parser.add_argument(
        "--debug", action="store_true", help="show tracebacks of unexpected errors"
    )


def _error(message: str) -> None:
    line = " ".join(str(message).split())
    print(f"{PROG}: error: {line}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (0 ok, 1 unexpected error, 2 bad input)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except CLIError as err:
        _error(str(err))
        return 2
    except SystemExit as exc:  # --help, --version
        return exc.code if isinstance(exc.code, int) else 0
    if getattr(args, "func", None) is None:
        parser.print_help(sys.stderr)
        return 2
    debug = bool(
        getattr(args, "debug", False) or os.environ.get("CAPTUM_SEMIRING_DEBUG")
    )
    try:
        return int(args.func(args))
    except _INPUT_ERRORS as err:
        _error(str(err))
        return 2
    except KeyboardInterrupt:
        _error("interrupted")
        return 130
    except Exception as err:
        if debug:
            raise
        _error(
            f"unexpected {type(err).__name__}: {first_line(err)} (rerun with --debug for the traceback)"
        )
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
