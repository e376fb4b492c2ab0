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
import contextlib
import importlib
import json
import math
import os
import re
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .analysis.branch_flow import TRANSFORMER_BRANCHES, transformer_branch
from .analysis.io import json_ready, module_name
from .analysis.stats import spearman

PROG = "captum-semiring"

# FirstTokenRepeatedOnce sequences for the default demo: three positives (the first
# token comes back later, last, right away) and two negatives (one with distractor
# repeats among the other tokens).
DEMO_TOKENS: list[list[int]] = [
    [3, 7, 12, 5, 3, 9, 14, 1, 8, 11],
    [5, 2, 9, 13, 7, 17, 4, 11, 6, 5],
    [8, 8, 1, 4, 15, 20, 2, 6, 10, 3],
    [3, 7, 12, 5, 6, 9, 14, 1, 8, 11],
    [14, 2, 2, 6, 19, 11, 6, 4, 13, 9],
]
DEMO_TEXT = "the quick brown fox jumps over the lazy dog ."
DEMO_MLM_TEXT = "the keys to the old cabinet {mask} on the table ."
DEMO_MLM_PAIR = ("are", "is")

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


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # one line, no usage block
        raise CLIError(f"{message} (see {self.prog} --help)")


# --------------------------------------------------------------------------- models


@dataclass
class Subject:
    """A model prepared for explanation."""

    model: nn.Module
    kind: str  # "default" | "hf" | "callable"
    description: str
    layer_name: str
    layer: nn.Module
    encoder_layers: list[tuple[str, nn.Module]]
    tokenizer: Any = None
    max_positions: int | None = None
    vocab_size: int | None = None
    num_labels: int | None = None
    is_mlm: bool = False
    hf: bool = False
    pad_id: int = 0
    special_ids: set[int] = field(default_factory=set)
    notes: list[str] = field(default_factory=list)
    val_accuracy: float | None = None
    label_fn: Callable[[Tensor], Tensor] | None = None
    token_range: tuple[int, int] | None = None


@dataclass
class Example:
    ids: Tensor  # (1, L)
    tokens: list[str]
    extra: dict[str, Tensor] = field(default_factory=dict)
    label: int | None = None


@dataclass
class Target:
    kind: str  # "class" | "pair"
    description: str
    fn: Callable[[Tensor], Tensor]
    info: dict[str, Any] = field(default_factory=dict)


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:  # pragma: no cover
        yield
        return
    old = hf_logging.get_verbosity()
    bar = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        hf_logging.set_verbosity(old)
        if bar:
            hf_logging.enable_progress_bar()


def _find_embeddings(model: nn.Module) -> tuple[str, nn.Module]:
    base = getattr(model, "base_model", None)
    emb = getattr(base, "embeddings", None)
    if isinstance(base, nn.Module) and isinstance(emb, nn.Module):
        return module_name(model, emb), emb
    for name, m in model.named_modules():
        if name and type(m).__name__.endswith("Embeddings"):
            return name, m
    for name, m in model.named_modules():
        if isinstance(m, nn.Embedding):
            return name, m
    raise CLIError(
        "found no embedding layer in the model; name the attribution layer with --layer"
    )


def _find_encoder_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    layers = []
    for name, m in model.named_modules():
        try:
            for part in ("query", "key", "value"):
                m.get_submodule(f"attention.self.{part}")
        except AttributeError:
            continue
        layers.append((name, m))
    return layers


def _resolve_layer(model: nn.Module, name: str | None) -> tuple[str, nn.Module]:
    if name is None:
        return _find_embeddings(model)
    if name in ("", "."):
        raise CLIError("--layer needs a dotted module path such as bert.embeddings")
    try:
        return name, model.get_submodule(name)
    except AttributeError:
        raise CLIError(
            f"model has no layer {name!r} (give a dotted module path such as {_find_embeddings_name(model)})"
        ) from None


def _find_embeddings_name(model: nn.Module) -> str:
    try:
        return _find_embeddings(model)[0]
    except CLIError:
        return next((n for n, _ in model.named_modules() if n), "<none>")


def _load_default(args: argparse.Namespace) -> Subject:
    from .reproductions.tasks.models import default_model
    from .reproductions.tasks.synthetic import FirstTokenRepeatedOnce

    trained = default_model(verbose=True)
    model = trained.model.eval()
    layer_name, layer = _resolve_layer(model, args.layer)
    return Subject(
        model=model,
        kind="default",
        description=(
            "embedded default: the paper's 1-layer BERT (hidden 16, 2 heads, intermediate 32) "
            f"trained on FirstTokenRepeatedOnce, seed {trained.seed}"
        ),
        layer_name=layer_name,
        layer=layer,
        encoder_layers=_find_encoder_layers(model),
        max_positions=trained.seq_len,
        vocab_size=trained.vocab_size + 1,
        num_labels=2,
        hf=True,
        pad_id=0,
        val_accuracy=trained.val_accuracy,
        label_fn=FirstTokenRepeatedOnce().label,
        token_range=(1, trained.vocab_size),
        notes=[
            "Inputs are raw token ids 1..20 without [CLS]; the classifier reads the first "
            "position (through BERT's pooler). Label 1 = the first token occurs again."
        ],
    )


def _load_hf(args: argparse.Namespace) -> Subject:
    path = Path(args.hf_model).expanduser()
    if not path.exists():
        raise CLIError(f"model directory {str(path)!r} does not exist")
    if not path.is_dir() or not (path / "config.json").exists():
        raise CLIError(
            f"{str(path)!r} is not a Hugging Face model directory (no config.json)"
        )
    from transformers import (
        AutoConfig,
        AutoModelForMaskedLM,
        AutoModelForSequenceClassification,
        AutoTokenizer,
    )

    with _quiet_transformers():
        try:
            config = AutoConfig.from_pretrained(path, local_files_only=True)
        except Exception as err:
            raise CLIError(
                f"cannot read the model config in {str(path)!r}: {_first_line(err)}"
            ) from None
        archs = list(getattr(config, "architectures", None) or [])
        is_mlm = any("MaskedLM" in a for a in archs) or (
            args.target_pair is not None
            and not any("SequenceClassification" in a for a in archs)
        )
        auto = AutoModelForMaskedLM if is_mlm else AutoModelForSequenceClassification
        torch.manual_seed(args.seed)  # a newly initialized head is reproducible
        try:
            model, info = auto.from_pretrained(
                path,
                local_files_only=True,
                attn_implementation="eager",
                output_loading_info=True,
            )
        except Exception as err:
            raise CLIError(
                f"cannot load a {auto.__name__[12:]} from {str(path)!r}: {_first_line(err)}"
            ) from None
        try:
            tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        except Exception:
            tokenizer = None
    model.eval()
    notes = []
    missing = sorted(info.get("missing_keys") or [])
    if missing:
        notes.append(
            f"{len(missing)} weights are not in the checkpoint and were initialized randomly "
            f"(seed {args.seed}): {', '.join(missing[:4])}{' ...' if len(missing) > 4 else ''}. "
            "Attributions then explain an untrained head."
        )
    if tokenizer is None:
        notes.append(
            "no tokenizer found in the model directory: only --tokens inputs work"
        )
    layer_name, layer = _resolve_layer(model, args.layer)
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    pad = getattr(tokenizer, "pad_token_id", None)
    if pad is None:
        pad = getattr(config, "pad_token_id", None) or 0
    return Subject(
        model=model,
        kind="hf",
        description=f"{type(model).__name__} from {path} ({', '.join(archs) or 'no architectures listed'})",
        layer_name=layer_name,
        layer=layer,
        encoder_layers=_find_encoder_layers(model),
        tokenizer=tokenizer,
        max_positions=getattr(config, "max_position_embeddings", None),
        vocab_size=getattr(config, "vocab_size", None),
        num_labels=None if is_mlm else getattr(config, "num_labels", None),
        is_mlm=is_mlm,
        hf=True,
        pad_id=int(pad),
        special_ids=special,
        notes=notes,
    )


def _load_callable(args: argparse.Namespace) -> Subject:
    spec = args.model
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise CLIError(
            f"--model must look like 'package.module:callable', got {spec!r}"
        )
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise CLIError(
            f"cannot import module {module_name!r}: {_first_line(err)}"
        ) from None
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise CLIError(f"module {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    model = obj() if callable(obj) and not isinstance(obj, nn.Module) else obj
    if not isinstance(model, nn.Module):
        raise CLIError(f"{spec} returned {type(model).__name__}, not a torch.nn.Module")
    model.eval()
    layer_name, layer = _resolve_layer(model, args.layer)
    config = getattr(model, "config", None)
    hf = config is not None and hasattr(model, "get_input_embeddings")
    vocab = None
    emb = next((m for m in model.modules() if isinstance(m, nn.Embedding)), None)
    if emb is not None:
        vocab = emb.num_embeddings
    return Subject(
        model=model,
        kind="callable",
        description=f"{type(model).__name__} from {spec}",
        layer_name=layer_name,
        layer=layer,
        encoder_layers=_find_encoder_layers(model),
        max_positions=getattr(config, "max_position_embeddings", None),
        vocab_size=vocab,
        hf=hf,
        pad_id=int(getattr(config, "pad_token_id", None) or 0),
    )


# --------------------------------------------------------------------------- inputs


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


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


def _check_length(subject: Subject, n: int, what: str) -> None:
    if subject.max_positions is not None and n > subject.max_positions:
        raise CLIError(
            f"{what} has {n} tokens; the model takes at most {subject.max_positions} positions"
        )


def _examples(subject: Subject, args: argparse.Namespace) -> list[Example]:
    texts: list[str] = args.text or []
    token_lists: list[str] = args.tokens or []
    examples: list[Example] = []
    if texts and subject.tokenizer is None:
        if subject.kind == "default":
            raise CLIError(
                'the default model reads token ids 1..20, not text; use --tokens "3 7 12 5 3 9 14 1 8 11"'
            )
        raise CLIError("this model has no tokenizer; give --tokens instead of --text")
    for i, text in enumerate(texts, 1):
        enc = subject.tokenizer(text, return_tensors="pt", truncation=False)
        ids = enc["input_ids"]
        _check_length(subject, ids.shape[1], f"text {i}")
        extra = {
            k: v for k, v in enc.items() if k in ("attention_mask", "token_type_ids")
        }
        examples.append(
            Example(
                ids, subject.tokenizer.convert_ids_to_tokens(ids[0].tolist()), extra
            )
        )
    for i, text in enumerate(token_lists, 1):
        ids_list = _parse_ids(text)
        _check_length(subject, len(ids_list), f"token list {i}")
        low, high = subject.token_range or (0, (subject.vocab_size or 2**62) - 1)
        bad = [t for t in ids_list if not low <= t <= high]
        if bad:
            raise CLIError(
                f"token id {bad[0]} in token list {i} is outside the model's vocabulary {low}..{high}"
            )
        ids = torch.tensor([ids_list])
        tokens = (
            subject.tokenizer.convert_ids_to_tokens(ids_list)
            if subject.tokenizer is not None
            else [str(t) for t in ids_list]
        )
        extra = {"attention_mask": torch.ones_like(ids)} if subject.hf else {}
        label = int(subject.label_fn(ids)[0]) if subject.label_fn is not None else None
        examples.append(Example(ids, tokens, extra, label))
    if examples:
        return examples
    # built-in demos
    if subject.kind == "default":
        assert subject.label_fn is not None
        out = []
        for row in DEMO_TOKENS:
            ids = torch.tensor([row])
            out.append(
                Example(
                    ids,
                    [str(t) for t in row],
                    {"attention_mask": torch.ones_like(ids)},
                    int(subject.label_fn(ids)[0]),
                )
            )
        return out
    if subject.tokenizer is not None:
        mask = getattr(subject.tokenizer, "mask_token", None)
        text = DEMO_MLM_TEXT.format(mask=mask) if subject.is_mlm and mask else DEMO_TEXT
        if subject.is_mlm and args.target_pair is None:
            args.target_pair = ",".join(DEMO_MLM_PAIR)
        args.text = [text]
        return _examples(subject, args)
    raise CLIError(
        'give the inputs with --tokens "ID ID ..." (this model has no built-in demo)'
    )


def _vocab_id(subject: Subject, word: str) -> int:
    tok = subject.tokenizer
    if tok is None:
        try:
            return int(word)
        except ValueError:
            raise CLIError(
                f"unknown target token {word!r}: without a tokenizer, give token ids"
            ) from None
    vocab = tok.get_vocab()
    if word in vocab:
        return int(vocab[word])
    pieces = tok.tokenize(word)
    if len(pieces) == 1 and pieces[0] in vocab and pieces[0] != tok.unk_token:
        return int(vocab[pieces[0]])
    raise CLIError(
        f"unknown target token {word!r}: it is not a single token of the model's vocabulary"
    )


def _target(
    subject: Subject, ex: Example, logits: Tensor, args: argparse.Namespace
) -> Target:
    if args.target_pair is not None:
        parts = [p.strip() for p in args.target_pair.split(",")]
        if len(parts) != 2 or not all(parts):
            raise CLIError(
                f"--target-pair takes 'correct,wrong', got {args.target_pair!r}"
            )
        if logits.dim() != 3:
            raise CLIError(
                "--target-pair needs a masked language model (per-token logits); this model is a classifier, use --target"
            )
        correct, wrong = (_vocab_id(subject, p) for p in parts)
        mask_id = getattr(subject.tokenizer, "mask_token_id", None)
        where = (
            (ex.ids[0] == mask_id).nonzero().flatten().tolist()
            if mask_id is not None
            else []
        )
        if not where:
            mask = getattr(subject.tokenizer, "mask_token", None) or "[MASK]"
            raise CLIError(
                f"input {' '.join(ex.tokens)[:60]!r} has no {mask} token for --target-pair"
            )
        pos = where[0]

        def pair_fn(
            out: Tensor, p: int = pos, c: int = correct, w: int = wrong
        ) -> Tensor:
            return out[:, p, c] - out[:, p, w]

        return Target(
            "pair",
            f"logit({parts[0]}) − logit({parts[1]}) at {getattr(subject.tokenizer, 'mask_token', 'mask')} (position {pos})",
            pair_fn,
            {
                "correct": parts[0],
                "wrong": parts[1],
                "correct_id": correct,
                "wrong_id": wrong,
                "mask_position": pos,
            },
        )
    if logits.dim() != 2:
        if logits.dim() == 3:
            raise CLIError(
                "this model gives per-token logits (a masked LM): use --target-pair correct,wrong"
            )
        raise CLIError(
            f"the model output has shape {tuple(logits.shape)}; expected (batch, classes)"
        )
    n = logits.shape[1]
    if args.target is not None:
        c, how = args.target, "given"
    elif ex.label is not None:
        c, how = ex.label, "the correct class"
    else:
        c, how = int(logits[0].argmax()), "the predicted class"
    if not 0 <= c < n:
        raise CLIError(
            f"--target {c} is out of range: the model has {n} classes (0..{n - 1})"
        )

    def class_fn(out: Tensor, c: int = c) -> Tensor:
        return out[:, c]

    return Target("class", f"logit of class {c} ({how})", class_fn, {"class": c})


# --------------------------------------------------------------------------- analysis


def _forward(subject: Subject, ids: Tensor, extra: dict[str, Tensor]) -> Tensor:
    if subject.hf:
        kwargs = {k: v.expand(ids.shape[0], -1) for k, v in extra.items()}
        out: Any = subject.model(input_ids=ids, **kwargs)
    else:
        out = subject.model(ids)
    if hasattr(out, "logits"):
        out = out.logits
    elif isinstance(out, (tuple, list)):
        out = out[0]
    if not isinstance(out, Tensor):
        raise CLIError(
            f"the model returned {type(out).__name__}, not a tensor of logits"
        )
    return out


def prepare_target(
    subject: Subject, ex: Example, args: argparse.Namespace
) -> tuple[Target, Any]:
    """The target of one input and the model's prediction (one cheap forward pass);
    raises :class:`CLIError` on a bad target before any attribution runs."""
    with torch.no_grad():
        logits = _forward(subject, ex.ids, ex.extra)
    target = _target(subject, ex, logits, args)
    if target.kind == "class":
        return target, int(logits[0].argmax())
    diff = float(target.fn(logits)[0])
    return target, target.info["correct"] if diff > 0 else target.info["wrong"]


def explain_example(
    subject: Subject,
    ex: Example,
    args: argparse.Namespace,
    index: int,
    target: Target | None = None,
    prediction: Any = None,
) -> tuple[dict[str, Any], dict[str, bytes]]:
    """All the numbers and plots for one input."""
    import captum_semiring as cs

    from .visualization import figure_to_png, plot_branch_flow, plot_token_scores

    layer = subject.layer
    L = ex.ids.shape[1]
    if target is None:
        target, prediction = prepare_target(subject, ex, args)

    layer_inputs = [(name, m, cs.layer_input(m)) for name, m in subject.encoder_layers]
    with cs.record(layer, *[li for *_, li in layer_inputs]) as graph:
        out = target.fn(_forward(subject, ex.ids, ex.extra))
    try:
        node = graph.node_of(layer)
    except Exception:
        raise CLIError(
            f"layer {subject.layer_name!r} produced no tensor in the forward pass"
        ) from None
    shape = tuple(graph.nodes[node].shape)
    if len(shape) < 2 or shape[0] != 1 or shape[1] != L:
        raise CLIError(
            f"layer {subject.layer_name!r} outputs shape {shape}, not (batch, tokens, ...): choose another --layer"
        )
    dims = list(range(2, len(shape)))

    def per_token(res: Any) -> Tensor:
        return res.aggregate(layer, dims)[..., 0, :] if dims else res[layer][..., 0, :]

    r_max = graph.backward(out, cs.MaxProduct())
    top = per_token(r_max)  # (L,)
    r_ent = graph.backward(out, cs.Entropy())
    ent = per_token(r_ent)

    # top-k paths from the token that carries the largest |path product| (TopK);
    # with k = 1, the max-product sweep already holds the best (positive) path
    k = args.top_k
    if k == 1:
        r_k = r_max
        t_star = int(top.argmax())
        raw = r_max[layer][0, t_star].reshape(1, -1)
    else:
        r_k = graph.backward(out, cs.TopK(k))
        t_star = int(per_token(r_k)[0].abs().argmax())
        raw = r_k[layer][:, 0, t_star].reshape(k, -1)  # (k, hidden...)
    rest_shape = shape[2:]
    paths: list[dict[str, Any]] = []
    flat_order = (raw if k == 1 else raw.abs()).reshape(-1).argsort(descending=True)[:k]
    for flat in flat_order.tolist():
        rank, elem = divmod(flat, raw.shape[1])
        value = float(raw[rank, elem])
        if value == 0 or not math.isfinite(value):
            continue
        sub = (
            list(torch.unravel_index(torch.tensor(elem), rest_shape))
            if rest_shape
            else []
        )
        element = (0, t_star, *[int(s) for s in sub])
        path = r_k.path(layer, element, rank=rank)
        paths.append(
            {
                "rank": len(paths) + 1,
                "value": float(path.value),
                "token_index": t_star,
                "token": ex.tokens[t_star],
                "element": list(element[1:]),
                "modules": path.modules(),
                "hops": len(path.hops),
                "ops": [h.op for h in path.hops],
            }
        )

    # branch flow at each transformer layer's input
    flows = []
    for name, _m, li in layer_inputs:
        try:
            bf = r_max.branch_flow(li)
        except (
            Exception
        ) as err:  # the layer input was not recorded (e.g. upstream of --layer)
            flows.append({"name": name, "error": _first_line(err)})
            continue
        branches = bf.grouped(
            lambda label, name=name: transformer_branch(label, name),
            TRANSFORMER_BRANCHES,
        )
        agg = branches.aggregate(-1)[:, 0]  # (4, L)
        tb = branches.top_branch(-1)[:, 0]
        entry: dict[str, Any] = {
            "name": name,
            "top_branch": {},
            "branch_max": {},
            "labels": list(bf.labels),
            "other": [],
        }
        for i, b in enumerate(TRANSFORMER_BRANCHES):
            entry["branch_max"][b] = [float(v) for v in agg[i]]
            entry["top_branch"][b] = [float(v) for v in tb[i]]
        entry["other"] = [
            lab for lab in bf.labels if transformer_branch(lab, name) is None
        ]
        flows.append(entry)
    flows_ok = [f for f in flows if "error" not in f]

    # Integrated Gradients on the same layer
    ig_info: dict[str, Any] | None = None
    if args.ig_steps > 0:
        from captum.attr import LayerIntegratedGradients

        baseline = ex.ids.clone()
        keep = torch.tensor(
            [
                int(t) in subject.special_ids and int(t) != subject.pad_id
                for t in ex.ids[0]
            ]
        )
        baseline[0, ~keep] = subject.pad_id
        lig = LayerIntegratedGradients(
            lambda ids: target.fn(_forward(subject, ids, ex.extra)), layer
        )
        attr, delta = lig.attribute(
            ex.ids,
            baselines=baseline,
            n_steps=args.ig_steps,
            internal_batch_size=args.ig_steps,
            return_convergence_delta=True,
        )
        if isinstance(attr, (tuple, list)):
            attr = attr[0]
        ig_tok = attr.detach()[0].reshape(L, -1).sum(-1)
        top_list = [float(v) for v in top]
        ig_list = [float(v) for v in ig_tok]
        ig_info = {
            "per_token": ig_list,
            "n_steps": args.ig_steps,
            "baseline": "pad ids (special tokens kept)",
            "convergence_delta": float(delta.reshape(-1)[0]),
            "spearman": spearman(top_list, ig_list),
            "spearman_abs": spearman(top_list, [abs(v) for v in ig_list]),
            "top_token_agrees": int(torch.tensor(ig_list).abs().argmax())
            == int(top.argmax()),
        }

    item: dict[str, Any] = {
        "index": index,
        "tokens": ex.tokens,
        "ids": [int(t) for t in ex.ids[0]],
        "label": ex.label,
        "target": {
            "kind": target.kind,
            "description": target.description,
            **target.info,
        },
        "output": float(out.detach().reshape(-1)[0]),
        "prediction": prediction,
        "top_path_per_token": [float(v) for v in top],
        "entropy_per_token": [float(v) for v in ent],
        "most_important_token": t_star,
        "top_paths": paths,
        "branch_flow": flows_ok,
        "integrated_gradients": ig_info,
        "plots": {},
    }
    if not subject.encoder_layers:
        item["branch_flow_note"] = (
            "no transformer layers (attention.self.query/key/value) found: no branch flow"
        )
    elif flows and not flows_ok:
        item["branch_flow_note"] = f"branch flow unavailable: {flows[0]['error']}"

    images: dict[str, bytes] = {}
    scores: dict[str, list[float | None]] = {
        "top path (max-product)": list(item["top_path_per_token"]),
        "entropy (nats)": list(item["entropy_per_token"]),
    }
    if ig_info:
        scores["integrated gradients"] = list(ig_info["per_token"])
    name = f"input{index + 1}_tokens.png"
    images[name] = figure_to_png(
        plot_token_scores(
            ex.tokens,
            scores,
            title=f"input {index + 1}: {target.description}",
            highlight=[t_star],
            log=["top path (max-product)"],
        )
    )
    item["plots"]["tokens"] = name
    if flows_ok:
        name = f"input{index + 1}_branch_flow.png"
        images[name] = figure_to_png(
            plot_branch_flow(
                ex.tokens,
                flows_ok,
                title=f"input {index + 1}: branch flow at each layer's input (max-product)",
            )
        )
        item["plots"]["branch_flow"] = name
    return item, images


def _console_block(item: dict[str, Any]) -> str:
    lines = [f"input {item['index'] + 1}: {' '.join(item['tokens'])}"]
    pred = (
        f", prediction {item['prediction']}"
        if item.get("prediction") is not None
        else ""
    )
    lines.append(
        f"  target {item['target']['description']}: {item['output']:.4g}{pred}"
    )
    for p in item["top_paths"]:
        lines.append(
            f"  path {p['rank']} ({p['value']:+.3e}) from token {p['token_index']} {p['token']!r}: "
            + " -> ".join(m or "<output>" for m in p["modules"])
        )
    ent = " ".join(
        f"{t}:{e:.2f}" for t, e in zip(item["tokens"], item["entropy_per_token"])
    )
    lines.append(f"  entropy (nats) {ent}")
    for f in item["branch_flow"]:
        wins = {
            b: sum(1 for v in f["top_branch"][b] if v) for b in TRANSFORMER_BRANCHES
        }
        lines.append(
            f"  {f['name']}: tokens whose top path enters via "
            + ", ".join(f"{b} {wins[b]}" for b in TRANSFORMER_BRANCHES)
        )
    ig = item.get("integrated_gradients")
    if ig:
        rho = "n/a" if ig["spearman"] is None else f"{ig['spearman']:+.2f}"
        lines.append(
            f"  vs integrated gradients: Spearman {rho}, same top token: {'yes' if ig['top_token_agrees'] else 'no'}"
        )
    return "\n".join(lines)


def cmd_explain(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from .report import write_html_report

    if args.top_k < 1:
        raise CLIError("--top-k must be at least 1")
    if args.ig_steps < 0:
        raise CLIError("--ig-steps must be >= 0")
    start = time.perf_counter()
    if args.hf_model is not None:
        subject = _load_hf(args)
    elif args.model is not None:
        subject = _load_callable(args)
    else:
        subject = _load_default(args)
    if (
        args.target_pair is not None
        and not subject.is_mlm
        and subject.kind != "callable"
    ):
        raise CLIError(
            "--target-pair needs a masked language model; this model is a classifier, use --target"
        )
    with _quiet_transformers():
        examples = _examples(subject, args)
    out_dir = Path(args.out)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise CLIError(
            f"cannot create the output directory {str(out_dir)!r}: {err.strerror}"
        ) from None

    items, images = [], {}
    prepared = [prepare_target(subject, ex, args) for ex in examples]
    for i, ex in enumerate(
        tqdm(examples, desc="explaining", unit="input", disable=None, file=sys.stderr)
    ):
        item, imgs = explain_example(subject, ex, args, i, *prepared[i])
        items.append(item)
        images.update(imgs)
        tqdm.write(_console_block(item), file=sys.stdout)

    for name, png in images.items():
        (out_dir / name).write_bytes(png)
    summary = {
        "tool": PROG,
        "version": _version(),
        "model": {
            "kind": subject.kind,
            "description": subject.description,
            "val_accuracy": subject.val_accuracy,
            "notes": subject.notes,
        },
        "layer": subject.layer_name,
        "encoder_layers": [name for name, _ in subject.encoder_layers],
        "semirings": {
            "top_path_per_token": "MaxProduct (most positive path product), ⊕ over the token's hidden units",
            "top_paths": f"TopK({args.top_k}) from the token with the largest |path product|",
            "entropy_per_token": "Entropy (nats), ⊕ over the token's hidden units (eq. 3)",
            "branch_flow": "MaxProduct at each encoder layer's input; top_branch = paper's aggregation, branch_max = each branch's ⊕ over hidden",
        },
        "inputs": items,
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
    report = write_html_report(json_ready(summary), images, out_dir / "report.html")
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
    extra = {"scale": args.scale} if args.scale else {}
    options = ReproduceOptions(
        max_sentences=args.max_sentences, hf_model=args.hf_model, extra=extra
    )
    try:
        files = reproductions[args.name].run(out_dir, options)
    except ReproduceError as err:
        raise CLIError(str(err)) from None
    for f in files:
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
        "--debug", action="store_true", help="show tracebacks of unexpected errors"
    )
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
        "--debug", action="store_true", help="show tracebacks of unexpected errors"
    )
    rp.set_defaults(func=cmd_reproduce)
    return parser


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
    except CLIError as err:
        _error(str(err))
        return 2
    except KeyboardInterrupt:
        _error("interrupted")
        return 130
    except Exception as err:
        if debug:
            raise
        _error(
            f"unexpected {type(err).__name__}: {_first_line(err)} (rerun with --debug for the traceback)"
        )
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
