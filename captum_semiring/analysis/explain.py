"""Explain one input of a model: top gradient paths, gradient entropy, branch flow and
Integrated Gradients, as a typed result.

This is what ``captum-semiring explain`` runs per input; the command line only parses
its options, calls :func:`explain` and prints. A typical use::

    from captum_semiring.reproductions.tasks.models import load_default_model
    from captum_semiring.analysis.explain import demo_examples, explain

    loaded = load_default_model()
    examples, _ = demo_examples(loaded)
    result = explain(loaded, examples[0])
    result.top_paths[0].modules, result.integrated_gradients.spearman

Plots are drawn with matplotlib, which is imported only when a plot is made.

Examples::

    >>> import torch
    >>> from torch import nn
    >>> from captum_semiring.analysis.models import from_module
    >>> _ = torch.manual_seed(0)
    >>> model = nn.Sequential(nn.Embedding(8, 3), nn.Flatten(), nn.Linear(9, 2))
    >>> loaded = from_module(model)
    >>> result = explain(loaded, token_example(loaded, [1, 5, 2]), ig_steps=0,
    ...                  top_k=1, plots=False)
    >>> result.target.description, len(result.top_path_per_token)
    ('logit of class 1 (the predicted class)', 3)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from .. import (
    Entropy,
    LogSum,
    MaxProduct,
    Path,
    PathCount,
    Semiring,
    SumProduct,
    TopK,
    layer_input,
    record,
)
from .._captum_compat import progress
from .._shapes import unravel_index
from .branch_flow import TRANSFORMER_BRANCHES, transformer_branch
from .models import LoadedModel, first_line
from .stats import spearman

__all__ = [
    "ExplainError",
    "Example",
    "Target",
    "TopPath",
    "LayerFlow",
    "IGComparison",
    "ExplainResult",
    "ExplainReport",
    "DEMO_TOKENS",
    "DEMO_TEXT",
    "DEMO_MLM_TEXT",
    "DEMO_MLM_PAIR",
    "forward_logits",
    "text_example",
    "token_example",
    "demo_examples",
    "vocab_id",
    "make_target",
    "prepare_target",
    "PER_TOKEN_SEMIRINGS",
    "EXPLAIN_SEMIRINGS",
    "stack_examples",
    "batch_target",
    "explain_batch",
    "explain",
    "explain_inputs",
]

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

#: What each per-token quantity of :class:`ExplainResult` is, for a report.
SEMIRING_DESCRIPTIONS = {
    "top_path_per_token": "MaxProduct (most positive path product), ⊕ over the token's hidden units",
    "top_paths": "TopK({k}) from the token with the largest |path product|",
    "entropy_per_token": "Entropy (nats), ⊕ over the token's hidden units (eq. 3)",
    "normalized_entropy_per_token": "Entropy / PathCount (log #paths): 0 = one path carries all the flow, 1 = all paths equal",
    "top_path_share_per_token": "MaxProduct(absolute) / exp(LogSum): the share of the total |flow| Z carried by the largest-magnitude path",
    "branch_flow": "MaxProduct at each encoder layer's input; top_branch = paper's aggregation, branch_max = each branch's ⊕ over hidden, shares = share of the layer input's elements whose best path enters through each branch, totals = each branch's best path",
}


class ExplainError(ValueError):
    """Bad input to :func:`explain`: a target the model cannot give, a layer without
    a per-token output, an input the model cannot take. The message is one line."""


# --------------------------------------------------------------------------- inputs


@dataclass
class Example:
    """One input.

    Attributes:
        ids: token ids, shape ``(1, L)``.
        tokens: the ``L`` tokens as text.
        extra: further keyword inputs of a Hugging Face model (``attention_mask``,
            ``token_type_ids``), each ``(1, L)``.
        label: the correct class, where known.
    """

    ids: Tensor
    tokens: list[str]
    extra: dict[str, Tensor] = field(default_factory=dict)
    label: int | None = None


@dataclass
class Target:
    """The scalar that is explained.

    Attributes:
        kind: ``"class"`` (a class logit) or ``"pair"`` (the difference of two
            token logits at the mask position of a masked LM).
        description: one line for a report.
        fn: maps the model's logits ``(batch, ...)`` to ``(batch,)``.
        info: the details (``class``; or ``correct``, ``wrong``, their ids and
            ``mask_position``).
    """

    kind: str
    description: str
    fn: Callable[[Tensor], Tensor]
    info: dict[str, Any] = field(default_factory=dict)


def _check_length(model: LoadedModel, n: int, what: str) -> None:
    if model.max_positions is not None and n > model.max_positions:
        raise ExplainError(
            f"{what} has {n} tokens; the model takes at most {model.max_positions} positions"
        )


def text_example(model: LoadedModel, text: str, *, what: str = "text 1") -> Example:
    """Tokenize ``text`` with the model's tokenizer.

    Args:
        model: a loaded model with a tokenizer.
        text: the input text.
        what: how error messages name the input.

    Returns:
        The :class:`Example` (with the tokenizer's attention mask and token types).

    Raises:
        ExplainError: no tokenizer, or more tokens than the model's positions.
    """
    if model.tokenizer is None:
        raise ExplainError(
            "this model has no tokenizer; give token ids instead of text"
        )
    enc = model.tokenizer(text, return_tensors="pt", truncation=False)
    ids = enc["input_ids"]
    _check_length(model, ids.shape[1], what)
    extra = {k: v for k, v in enc.items() if k in ("attention_mask", "token_type_ids")}
    return Example(ids, model.tokenizer.convert_ids_to_tokens(ids[0].tolist()), extra)


def token_example(
    model: LoadedModel, ids: Sequence[int], *, what: str = "token list 1"
) -> Example:
    """An input given as token ids.

    Args:
        model: a loaded model.
        ids: the token ids.
        what: how error messages name the input.

    Returns:
        The :class:`Example`; its label is set when the model knows its task
        (``label_fn``).

    Raises:
        ExplainError: too many tokens, or an id outside the vocabulary.
    """
    ids_list = [int(t) for t in ids]
    _check_length(model, len(ids_list), what)
    low, high = model.token_range or (0, (model.vocab_size or 2**62) - 1)
    bad = [t for t in ids_list if not low <= t <= high]
    if bad:
        raise ExplainError(
            f"token id {bad[0]} in {what} is outside the model's vocabulary {low}..{high}"
        )
    tensor = torch.tensor([ids_list])
    tokens = (
        model.tokenizer.convert_ids_to_tokens(ids_list)
        if model.tokenizer is not None
        else [str(t) for t in ids_list]
    )
    extra = {"attention_mask": torch.ones_like(tensor)} if model.hf else {}
    label = int(model.label_fn(tensor)[0]) if model.label_fn is not None else None
    return Example(tensor, tokens, extra, label)


def demo_examples(
    model: LoadedModel,
) -> tuple[list[Example], tuple[str, str] | None]:
    """The built-in inputs for a model.

    The demo model gets :data:`DEMO_TOKENS` with their labels; a model with a
    tokenizer gets one sentence (with a mask token for a masked LM); other models
    have no demo.

    Args:
        model: a loaded model.

    Returns:
        ``(examples, pair)``: the examples (empty when there is no demo) and, for a
        masked LM, the default ``(correct, wrong)`` target pair.

    Raises:
        ExplainError: the demo sentence is longer than the model's positions.
    """
    if model.kind == "default":
        assert model.label_fn is not None
        out = []
        for row in DEMO_TOKENS:
            ids = torch.tensor([row])
            out.append(
                Example(
                    ids,
                    [str(t) for t in row],
                    {"attention_mask": torch.ones_like(ids)},
                    int(model.label_fn(ids)[0]),
                )
            )
        return out, None
    if model.tokenizer is None:
        return [], None
    mask = getattr(model.tokenizer, "mask_token", None)
    text = DEMO_MLM_TEXT.format(mask=mask) if model.is_mlm and mask else DEMO_TEXT
    pair = DEMO_MLM_PAIR if model.is_mlm else None
    return [text_example(model, text, what="text 1")], pair


def forward_logits(model: LoadedModel, ids: Tensor, extra: dict[str, Tensor]) -> Tensor:
    """The model's logits on ``ids`` (a batch of one input or of its variants).

    Args:
        model: a loaded model.
        ids: token ids ``(batch, L)``.
        extra: the example's further keyword inputs ``(1, L)``, expanded to the batch.

    Returns:
        The logits (``.logits`` of a Hugging Face output, the first element of a tuple).

    Raises:
        ExplainError: the model returns no tensor.
    """
    if model.hf:
        kwargs = {k: v.expand(ids.shape[0], -1) for k, v in extra.items()}
        out: Any = model.model(input_ids=ids, **kwargs)
    else:
        out = model.model(ids)
    if hasattr(out, "logits"):
        out = out.logits
    elif isinstance(out, (tuple, list)):
        out = out[0]
    if not isinstance(out, Tensor):
        raise ExplainError(
            f"the model returned {type(out).__name__}, not a tensor of logits"
        )
    return out


# --------------------------------------------------------------------------- targets


def vocab_id(model: LoadedModel, word: str) -> int:
    """The id of ``word``, one token of the model's vocabulary (a token id without a
    tokenizer).

    Raises:
        ExplainError: ``word`` is not one token.
    """
    tok = model.tokenizer
    if tok is None:
        try:
            return int(word)
        except ValueError:
            raise ExplainError(
                f"unknown target token {word!r}: without a tokenizer, give token ids"
            ) from None
    vocab = tok.get_vocab()
    if word in vocab:
        return int(vocab[word])
    pieces = tok.tokenize(word)
    if len(pieces) == 1 and pieces[0] in vocab and pieces[0] != tok.unk_token:
        return int(vocab[pieces[0]])
    raise ExplainError(
        f"unknown target token {word!r}: it is not a single token of the model's vocabulary"
    )


def make_target(
    model: LoadedModel,
    example: Example,
    logits: Tensor,
    *,
    target_class: int | None = None,
    target_pair: tuple[str, str] | None = None,
) -> Target:
    """The :class:`Target` of one input.

    Args:
        model: a loaded model.
        example: the input.
        logits: the model's logits on it.
        target_class: explain this class's logit (classifiers).
        target_pair: ``(correct, wrong)``: explain ``logit(correct) - logit(wrong)``
            at the first mask token (masked LMs).

    Without either, the target is the example's correct class if known, else the
    predicted class.

    Raises:
        ExplainError: the target does not fit the model's output or the input.
    """
    if target_pair is not None:
        if logits.dim() != 3:
            raise ExplainError(
                "--target-pair needs a masked language model (per-token logits); this model is a classifier, use --target"
            )
        correct, wrong = (vocab_id(model, p) for p in target_pair)
        mask_id = getattr(model.tokenizer, "mask_token_id", None)
        where = (
            (example.ids[0] == mask_id).nonzero().flatten().tolist()
            if mask_id is not None
            else []
        )
        if not where:
            mask = getattr(model.tokenizer, "mask_token", None) or "[MASK]"
            raise ExplainError(
                f"input {' '.join(example.tokens)[:60]!r} has no {mask} token for --target-pair"
            )
        pos = where[0]

        def pair_fn(
            out: Tensor, p: int = pos, c: int = correct, w: int = wrong
        ) -> Tensor:
            return out[:, p, c] - out[:, p, w]

        return Target(
            "pair",
            f"logit({target_pair[0]}) − logit({target_pair[1]}) at {getattr(model.tokenizer, 'mask_token', 'mask')} (position {pos})",
            pair_fn,
            {
                "correct": target_pair[0],
                "wrong": target_pair[1],
                "correct_id": correct,
                "wrong_id": wrong,
                "mask_position": pos,
            },
        )
    if logits.dim() != 2:
        if logits.dim() == 3:
            raise ExplainError(
                "this model gives per-token logits (a masked LM): use --target-pair correct,wrong"
            )
        raise ExplainError(
            f"the model output has shape {tuple(logits.shape)}; expected (batch, classes)"
        )
    n = logits.shape[1]
    if target_class is not None:
        c, how = target_class, "given"
    elif example.label is not None:
        c, how = example.label, "the correct class"
    else:
        c, how = int(logits[0].argmax()), "the predicted class"
    if not 0 <= c < n:
        raise ExplainError(
            f"--target {c} is out of range: the model has {n} classes (0..{n - 1})"
        )

    def class_fn(out: Tensor, c: int = c) -> Tensor:
        return out[:, c]

    return Target("class", f"logit of class {c} ({how})", class_fn, {"class": c})


def _prediction(target: Target, logits: Tensor) -> int | str:
    if target.kind == "class":
        return int(logits[0].argmax())
    diff = float(target.fn(logits)[0])
    return str(target.info["correct"] if diff > 0 else target.info["wrong"])


def prepare_target(
    model: LoadedModel,
    example: Example,
    *,
    target_class: int | None = None,
    target_pair: tuple[str, str] | None = None,
) -> tuple[Target, int | str]:
    """The target of one input and the model's prediction, from one cheap forward
    pass: a bad target fails here, before any attribution runs.

    Args:
        model, example, target_class, target_pair: as for :func:`make_target`.

    Returns:
        ``(target, prediction)``: the prediction is the predicted class, or for a
        pair the word of the two with the larger logit.

    Raises:
        ExplainError: see :func:`make_target`.
    """
    with torch.no_grad():
        logits = forward_logits(model, example.ids, example.extra)
    target = make_target(
        model, example, logits, target_class=target_class, target_pair=target_pair
    )
    return target, _prediction(target, logits)


# --------------------------------------------------------------------------- results


@dataclass
class PathStep:
    """A run of a path's hops inside one module, as a report shows it.

    Attributes:
        module: the module's dotted path (``""`` at the top level).
        branch: what the run is in a transformer layer (see :func:`module_branch`):
            ``"query"``, ``"key"``, ``"value"``, ``"attention output"`` (the
            projection after attention), ``"MLP"``, ``"skip (attention)"`` and
            ``"skip (MLP)"`` (the residual adds), ``"layer norm"``,
            ``"embeddings"``, or ``None``.
        head: the attention head of a query/key/value element, where the number of
            heads is known.
        ops: the ops of the hops, in order.
        index: the element the run arrives at (without the batch axis).
        weight: the product of the run's hop weights.
    """

    module: str
    branch: str | None
    head: int | None
    ops: list[str]
    index: list[int]
    weight: float

    def to_json(self) -> dict[str, Any]:
        """The step as in ``summary.json``."""
        return dataclasses.asdict(self)


_BRANCH_SUFFIXES = {
    "query": ("query", "q_proj", "q_lin", "to_q"),
    "key": ("key", "k_proj", "k_lin", "to_k"),
    "value": ("value", "v_proj", "v_lin", "to_v"),
}


_DENSE_OPS = {"addmm", "mm", "bmm", "linear", "matmul", "baddbmm", "convolution"}


def module_branch(module: str, ops: Sequence[str] = ()) -> str | None:
    """What a path's run through ``module`` is in a transformer layer, from the
    module's dotted path (BERT-style names, and the ``q_proj``/``k_proj``/``v_proj``
    of most other models) and the run's ops: in a projection-plus-residual module
    (BERT's ``attention.output`` and ``output``), a run with no dense op took the
    residual add only, the skip connection."""
    last = module.rsplit(".", 1)[-1]
    for branch, suffixes in _BRANCH_SUFFIXES.items():
        if last in suffixes:
            return branch
    if "layernorm" in last.lower() or last.lower() in ("ln", "norm"):
        return "layer norm"
    parts = module.split(".")
    dense = any(op in _DENSE_OPS for op in ops)
    if "attention" in parts and "output" in parts:
        return "attention output" if dense else "skip (attention)"
    if "output" in parts and "intermediate" not in parts:
        return "MLP" if dense else "skip (MLP)"
    if any(p in ("intermediate", "mlp", "ffn", "feed_forward") for p in parts):
        return "MLP"
    if "embeddings" in parts or last.startswith("emb"):
        return "embeddings"
    return None


def path_steps(
    path: Path,
    num_heads: int | None = None,
    shape_of: Callable[[int], tuple[int, ...]] | None = None,
) -> list[PathStep]:
    """``path``'s hops, one :class:`PathStep` per run inside one module. The head of
    a query/key/value element is read off the run's first hop, the projection's
    output (later hops may split the heads off): its last index over the head
    size, the output's width (``shape_of(node)[-1]``) over ``num_heads``."""
    steps: list[PathStep] = []
    first_hops: list[Any] = []
    for hop in path.hops:
        op = hop.op.split(".")[1] if "." in hop.op else hop.op
        index = [int(i) for i in hop.index[1:]]  # without the batch axis
        if steps and steps[-1].module == hop.module:
            steps[-1].ops.append(op)
            steps[-1].index = index
            steps[-1].weight *= hop.weight
            continue
        steps.append(PathStep(hop.module, None, None, [op], index, float(hop.weight)))
        first_hops.append(hop)
    for step, hop in zip(steps, first_hops, strict=True):
        step.branch = module_branch(step.module, step.ops)
        if step.branch not in ("query", "key", "value") or not hop.index:
            continue
        if num_heads and shape_of is not None and hop.node is not None:
            width = shape_of(hop.node)[-1]
            if width % num_heads == 0:
                step.head = int(hop.index[-1]) // (width // num_heads)
    return steps


@dataclass
class TopPath:
    """One of the top gradient paths from the most important token.

    Attributes:
        rank: 1 for the best path.
        value: the path's product of local derivatives.
        token_index: the token the path starts at.
        token: that token.
        element: the start element's index in the layer output, without the batch
            axis (token, hidden...).
        modules: the module path of each hop (``""`` is the output).
        hops: the number of hops.
        ops: the aten op of each hop.
        steps: the hops as :class:`PathStep` runs, one per module visited, with
            the branch, the head and the weight.
        path: the :class:`~captum_semiring.Path` itself.
    """

    rank: int
    value: float
    token_index: int
    token: str
    element: list[int]
    modules: list[str]
    hops: int
    ops: list[str]
    steps: list[PathStep] = field(default_factory=list)
    path: Path | None = field(default=None, repr=False, compare=False)

    def to_json(self) -> dict[str, Any]:
        """The path as in ``summary.json`` (without :attr:`path`)."""
        return {
            "rank": self.rank,
            "value": self.value,
            "token_index": self.token_index,
            "token": self.token,
            "element": list(self.element),
            "modules": list(self.modules),
            "hops": self.hops,
            "ops": list(self.ops),
            "steps": [step.to_json() for step in self.steps],
        }


@dataclass
class LayerFlow:
    """The max-product branch flow at one encoder layer's input.

    Attributes:
        name: the layer's module path.
        top_branch: per branch (skip, query, key, value), per token: the token's
            top path value if it enters through that branch, else 0 (the paper's
            aggregation).
        branch_max: per branch, per token: the branch's ⊕ over the hidden units.
        labels: every consumer of the layer input that branch flow found.
        other: the labels that are none of the four branches.
        shares: per branch, the share of the layer input's elements (token ×
            hidden unit) whose best path enters through it, among the elements
            with flow into the four branches (:meth:`BranchFlow.shares`).
        totals: per branch, its ⊕ over every element: the best path through it
            (:meth:`BranchFlow.totals`).
        semiring: the semiring of these values, as its ``repr``.
    """

    name: str
    top_branch: dict[str, list[float]]
    branch_max: dict[str, list[float]]
    labels: list[str]
    other: list[str]
    shares: dict[str, float] = field(default_factory=dict)
    totals: dict[str, float] = field(default_factory=dict)
    semiring: str = ""

    def to_json(self) -> dict[str, Any]:
        """The flow as in ``summary.json``."""
        return {
            "name": self.name,
            "top_branch": {b: list(v) for b, v in self.top_branch.items()},
            "branch_max": {b: list(v) for b, v in self.branch_max.items()},
            "labels": list(self.labels),
            "other": list(self.other),
            "shares": dict(self.shares),
            "totals": dict(self.totals),
            "semiring": self.semiring,
        }

    def wins(self) -> dict[str, int]:
        """Per branch, how many tokens' top path enters through it."""
        return {b: sum(1 for v in vals if v) for b, vals in self.top_branch.items()}


@dataclass
class IGComparison:
    """Captum's LayerIntegratedGradients on the same layer, next to the top paths.

    Attributes:
        per_token: IG summed over each token's hidden units.
        n_steps: the number of IG steps.
        baseline: how the baseline was built.
        convergence_delta: Captum's completeness error.
        spearman: Spearman's ρ between the top-path values and IG across tokens
            (``None`` when undefined).
        spearman_abs: the same against ``|IG|``.
        top_token_agrees: the token with the largest ``|IG|`` is the one with the
            largest top-path value.
    """

    per_token: list[float]
    n_steps: int
    baseline: str
    convergence_delta: float
    spearman: float | None
    spearman_abs: float | None
    top_token_agrees: bool

    def to_json(self) -> dict[str, Any]:
        """The comparison as in ``summary.json``."""
        return {
            "per_token": list(self.per_token),
            "n_steps": self.n_steps,
            "baseline": self.baseline,
            "convergence_delta": self.convergence_delta,
            "spearman": self.spearman,
            "spearman_abs": self.spearman_abs,
            "top_token_agrees": self.top_token_agrees,
        }


IG_DELTA_WARNING = 0.05  # |delta| / |output| past which IG is flagged as unconverged


def relative_delta(ig: IGComparison, output: float) -> float:
    """IG's convergence delta as a fraction of the explained output."""
    return ig.convergence_delta / max(abs(output), 1e-12)


@dataclass
class ExplainResult:
    r"""Everything :func:`explain` finds for one input.

    Attributes:
        index: the input's position in a run (names the plot files).
        tokens: the input's tokens.
        ids: its token ids.
        label: its correct class, where known.
        target: what is explained.
        output: the target's value.
        prediction: the predicted class (or word of a pair), where known.
        top_path_per_token: per token, the max-product value (most positive path
            product) ⊕ over its hidden units.
        entropy_per_token: per token, the gradient path entropy in nats.
        normalized_entropy_per_token: per token, entropy / log(number of paths):
            0 when one path carries all the flow, 1 when every path carries the
            same (``None`` with a single path).
        top_path_share_per_token: per token, the share of the total flow
            :math:`Z = \sum_p |g(p)|` that its largest-magnitude path carries.
        most_important_token: the token the top paths start at.
        top_paths: the top gradient paths from that token.
        branch_flow: per encoder layer, the branch flow at its input.
        integrated_gradients: the comparison with IG (``None`` with ``ig_steps=0``).
        branch_flow_note: why there is no branch flow, when there is none.
        per_token: per token, each semiring's value that :func:`explain_batch` was
            asked for, by name (:data:`PER_TOKEN_SEMIRINGS`), ⊕ over the hidden units.
        plots: the plot files by kind (``"tokens"``, ``"branch_flow"``).
        images: the PNG bytes by file name.
    """

    index: int
    tokens: list[str]
    ids: list[int]
    label: int | None
    target: Target
    output: float
    prediction: int | str | None
    top_path_per_token: list[float]
    entropy_per_token: list[float]
    most_important_token: int
    top_paths: list[TopPath]
    branch_flow: list[LayerFlow]
    integrated_gradients: IGComparison | None
    branch_flow_note: str | None = None
    normalized_entropy_per_token: list[float | None] = field(default_factory=list)
    top_path_share_per_token: list[float] = field(default_factory=list)
    per_token: dict[str, list[float]] = field(default_factory=dict)
    plots: dict[str, str] = field(default_factory=dict)
    images: dict[str, bytes] = field(default_factory=dict, repr=False)

    def to_json(self) -> dict[str, Any]:
        """The result as one entry of ``summary.json``'s ``inputs`` (no images)."""
        item: dict[str, Any] = {
            "index": self.index,
            "tokens": list(self.tokens),
            "ids": list(self.ids),
            "label": self.label,
            "target": {
                "kind": self.target.kind,
                "description": self.target.description,
                **self.target.info,
            },
            "output": self.output,
            "prediction": self.prediction,
            "top_path_per_token": list(self.top_path_per_token),
            "entropy_per_token": list(self.entropy_per_token),
            "normalized_entropy_per_token": list(self.normalized_entropy_per_token),
            "top_path_share_per_token": list(self.top_path_share_per_token),
            "most_important_token": self.most_important_token,
            "top_paths": [p.to_json() for p in self.top_paths],
            "branch_flow": [f.to_json() for f in self.branch_flow],
            "integrated_gradients": (
                None
                if self.integrated_gradients is None
                else self.integrated_gradients.to_json()
            ),
            "plots": dict(self.plots),
        }
        if self.branch_flow_note is not None:
            item["branch_flow_note"] = self.branch_flow_note
        return item


@dataclass
class ExplainReport:
    """The results of a run over several inputs of one model.

    Attributes:
        model: the loaded model.
        results: one :class:`ExplainResult` per input.
        top_k: the ``top_k`` the results were computed with.
        decompose: the composite primitives recorded as their finer ops.
    """

    model: LoadedModel
    results: list[ExplainResult]
    top_k: int
    decompose: tuple[str, ...] = ()

    @property
    def images(self) -> dict[str, bytes]:
        """Every result's PNG bytes by file name."""
        images: dict[str, bytes] = {}
        for result in self.results:
            images.update(result.images)
        return images

    def to_json(self) -> dict[str, Any]:
        """The model, layer, semirings and inputs of ``summary.json``."""
        return {
            "model": {
                "kind": self.model.kind,
                "description": self.model.description,
                "val_accuracy": self.model.val_accuracy,
                "notes": list(self.model.notes),
                "random_weights": list(self.model.random_weights),
            },
            "layer": self.model.layer_name,
            "decompose": list(self.decompose),
            "encoder_layers": [name for name, _ in self.model.encoder_layers],
            "semirings": {
                key: text.format(k=self.top_k)
                for key, text in SEMIRING_DESCRIPTIONS.items()
            },
            "inputs": [r.to_json() for r in self.results],
        }


# --------------------------------------------------------------------------- explain


def _top_paths(
    result: Any,
    layer: Any,
    raw: Tensor,
    k: int,
    t_star: int,
    rest_shape: tuple[int, ...],
    tokens: list[str],
    num_heads: int | None = None,
    shape_of: Callable[[int], tuple[int, ...]] | None = None,
    row: int = 0,
) -> list[TopPath]:
    paths: list[TopPath] = []
    flat_order = (raw if k == 1 else raw.abs()).reshape(-1).argsort(descending=True)[:k]
    for flat in flat_order.tolist():
        rank, elem = divmod(flat, raw.shape[1])
        value = float(raw[rank, elem])
        if value == 0 or not math.isfinite(value):
            continue
        sub = list(unravel_index(elem, rest_shape)) if rest_shape else []
        element = (row, t_star, *[int(s) for s in sub])
        path = result.path(layer, element, rank=rank)
        paths.append(
            TopPath(
                rank=len(paths) + 1,
                value=float(path.value),
                token_index=t_star,
                token=tokens[t_star],
                element=list(element[1:]),
                modules=path.modules(),
                hops=len(path.hops),
                ops=[h.op for h in path.hops],
                steps=path_steps(path, num_heads, shape_of),
                path=path,
            )
        )
    return paths


def _per_branch(values: list[Any]) -> dict[str, Any]:
    return dict(zip(TRANSFORMER_BRANCHES, values, strict=True))


def _branch_flows(
    r_max: Any, layer_inputs: list[tuple[str, Any]], spans: Sequence[tuple[int, int]]
) -> tuple[list[list[LayerFlow]], str | None]:
    """Per ``(row, length)`` of ``spans``, the flow at each layer input."""
    flows: list[list[LayerFlow]] = [[] for _ in spans]
    first_error: str | None = None
    for name, li in layer_inputs:
        try:
            bf = r_max.branch_flow(li)
        # the layer input may not be recorded (e.g. upstream of the attribution layer)
        except Exception as err:
            if first_error is None:
                first_error = first_line(err)
            continue
        branches = bf.grouped(
            lambda label, name=name: transformer_branch(label, name),
            TRANSFORMER_BRANCHES,
        )
        agg = branches.aggregate(-1)  # (4, batch, L)
        tb = branches.top_branch(-1)
        other = [lab for lab in bf.labels if transformer_branch(lab, name) is None]
        for out, (row, length) in zip(flows, spans, strict=True):
            # this example's own elements: its row, without its padding
            mine = dataclasses.replace(
                branches, values=branches.values[:, :, row : row + 1, :length]
            )
            out.append(
                LayerFlow(
                    name=name,
                    top_branch=_per_branch(tb[:, row, :length].tolist()),
                    branch_max=_per_branch(agg[:, row, :length].tolist()),
                    labels=list(bf.labels),
                    other=list(other),
                    shares=_per_branch(mine.shares().tolist()),
                    totals=_per_branch(mine.totals().tolist()),
                    semiring=repr(bf.semiring),
                )
            )
    note = None
    if not layer_inputs:
        note = "no transformer layers (attention.self.query/key/value) found: no branch flow"
    elif not any(flows) and first_error is not None:
        note = f"branch flow unavailable: {first_error}"
    return flows, note


def _integrated_gradients(
    model: LoadedModel, example: Example, target: Target, steps: int, top: Tensor
) -> IGComparison:
    from captum.attr import LayerIntegratedGradients

    L = example.ids.shape[1]
    baseline = example.ids.clone()
    keep = torch.tensor(
        [int(t) in model.special_ids and int(t) != model.pad_id for t in example.ids[0]]
    )
    baseline[0, ~keep] = model.pad_id
    lig = LayerIntegratedGradients(
        lambda ids: target.fn(forward_logits(model, ids, example.extra)), model.layer
    )
    attr, delta = lig.attribute(  # type: ignore[has-type]  # captum.log.log_usage hides it
        example.ids,
        baselines=baseline,
        n_steps=steps,
        internal_batch_size=steps,
        return_convergence_delta=True,
    )
    if isinstance(attr, (tuple, list)):
        attr = attr[0]
    ig_tok = attr.detach()[0].reshape(L, -1).sum(-1)
    top_list = [float(v) for v in top]
    ig_list = [float(v) for v in ig_tok]
    return IGComparison(
        per_token=ig_list,
        n_steps=steps,
        baseline="pad ids (special tokens kept)",
        convergence_delta=float(delta.reshape(-1)[0]),
        spearman=spearman(top_list, ig_list),
        spearman_abs=spearman(top_list, [abs(v) for v in ig_list]),
        top_token_agrees=int(torch.tensor(ig_list).abs().argmax()) == int(top.argmax()),
    )


def _draw(result: ExplainResult) -> None:
    # matplotlib is loaded only here, when a plot is drawn.
    from ..visualization import figure_to_png, plot_branch_flow, plot_token_scores

    n = result.index + 1
    scores: dict[str, list[float | None]] = {
        "top path (max-product)": list(result.top_path_per_token),
        "entropy / log #paths": list(result.normalized_entropy_per_token),
    }
    if result.integrated_gradients:
        scores["integrated gradients"] = list(result.integrated_gradients.per_token)
    name = f"input{n}_tokens.png"
    result.images[name] = figure_to_png(
        plot_token_scores(
            result.tokens,
            scores,
            title=f"input {n}: {result.target.description}",
            highlight=[result.most_important_token],
            log=["top path (max-product)"],
        )
    )
    result.plots["tokens"] = name
    if result.branch_flow:
        name = f"input{n}_branch_flow.png"
        result.images[name] = figure_to_png(
            plot_branch_flow(
                result.tokens,
                [f.to_json() for f in result.branch_flow],
                title=f"input {n}: branch flow at each layer's input (max-product)",
            )
        )
        result.plots["branch_flow"] = name


#: The per-token semirings :func:`explain_batch` knows, by the name it reports them
#: under (:attr:`ExplainResult.per_token`).
PER_TOKEN_SEMIRINGS: dict[str, Callable[[], Semiring]] = {
    "sum": SumProduct,
    "max": MaxProduct,
    "max_negative": lambda: MaxProduct("negative"),
    "max_abs": lambda: MaxProduct("absolute"),
    "entropy": Entropy,
    "logsum": LogSum,
    "count": PathCount,
}
#: What :func:`explain` computes per token (its report needs them all).
EXPLAIN_SEMIRINGS = ("max", "entropy", "count", "logsum", "max_abs")


def stack_examples(
    model: LoadedModel, examples: Sequence[Example]
) -> tuple[Tensor, dict[str, Tensor]]:
    """One padded batch of ``examples``: ids ``(batch, longest)`` padded on the right
    with the model's padding id, and each keyword input padded with 0 (so the
    attention mask hides the padding).

    Args:
        model: a loaded model.
        examples: the inputs, each ``(1, L_i)``.

    Returns:
        ``(ids, extra)``.

    Raises:
        ExplainError: no examples, or examples of different lengths for a model
            without an attention mask (padding would change its outputs).

    Examples::

        >>> import torch
        >>> from transformers import BertConfig, BertModel
        >>> from captum_semiring.analysis.models import from_module
        >>> loaded = from_module(BertModel(BertConfig(vocab_size=9, hidden_size=4,
        ...     num_hidden_layers=1, num_attention_heads=1, intermediate_size=4)))
        >>> ids, extra = stack_examples(loaded, [token_example(loaded, [3, 4]),
        ...                                      token_example(loaded, [5])])
        >>> ids.tolist(), extra["attention_mask"].tolist()
        ([[3, 4], [5, 0]], [[1, 1], [1, 0]])
    """
    if not examples:
        raise ExplainError("examples is empty: give at least one input")
    width = max(ex.ids.shape[1] for ex in examples)
    if not model.hf and any(ex.ids.shape[1] != width for ex in examples):
        raise ExplainError(
            "examples have different lengths and the model takes no attention mask: "
            "batch inputs of one length only"
        )
    ids = torch.full((len(examples), width), model.pad_id, dtype=torch.long)
    keys = sorted({k for ex in examples for k in ex.extra})
    extra = {k: torch.zeros((len(examples), width), dtype=torch.long) for k in keys}
    for row, ex in enumerate(examples):
        n = ex.ids.shape[1]
        ids[row, :n] = ex.ids[0]
        for k in keys:
            value = ex.extra.get(k)
            extra[k][row, :n] = value[0] if value is not None else 1
    return ids, extra


def batch_target(targets: Sequence[Target]) -> Callable[[Tensor], Tensor]:
    """One function for a batch of targets: row ``i`` of the logits goes to
    ``targets[i]``, by one indexing op whatever the batch size (so that a batch of one
    and a batch of many record the same ops).

    Args:
        targets: one :class:`Target` per row, all of one kind.

    Returns:
        A function from logits ``(batch, ...)`` to ``(batch,)``.

    Raises:
        ExplainError: targets of both kinds in one batch.

    Examples::

        >>> import torch
        >>> f = batch_target([Target("class", "", lambda o: o[:, 1], {"class": 1}),
        ...                   Target("class", "", lambda o: o[:, 0], {"class": 0})])
        >>> f(torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
        tensor([2., 3.])
    """
    kinds = {t.kind for t in targets}
    if len(kinds) != 1:
        raise ExplainError(
            f"a batch mixes target kinds {sorted(kinds)}: batch each kind apart"
        )
    rows = torch.arange(len(targets))
    if kinds == {"class"}:
        classes = torch.tensor([int(t.info["class"]) for t in targets])
        return lambda out: out[rows, classes]
    pos = torch.tensor([int(t.info["mask_position"]) for t in targets])
    good = torch.tensor([int(t.info["correct_id"]) for t in targets])
    bad = torch.tensor([int(t.info["wrong_id"]) for t in targets])
    return lambda out: out[rows, pos, good] - out[rows, pos, bad]


def explain_batch(
    model: LoadedModel,
    examples: Sequence[Example],
    targets: Sequence[Target],
    *,
    predictions: Sequence[int | str | None] | None = None,
    semirings: Sequence[str] = EXPLAIN_SEMIRINGS,
    top_k: int = 3,
    ig_steps: int = 0,
    start_index: int = 0,
    plots: bool = False,
    decompose: tuple[str, ...] = (),
    output_fn: Callable[[Tensor], Tensor] | None = None,
) -> list[ExplainResult]:
    """:func:`explain` for a batch of inputs, from one recorded forward pass and one
    sweep per semiring.

    The inputs are padded on the right (:func:`stack_examples`); a Hugging Face
    model's attention mask hides the padding. Padding adds paths of weight exactly 0
    (through the masked attention entries), so every semiring but ``PathCount``
    gives each input what it gets alone; ``"count"`` counts those paths too, so
    batch inputs of one length when you ask for it.

    Args:
        model: a loaded model.
        examples: the inputs.
        targets: one :class:`Target` per input, all of one kind.
        predictions: the model's prediction per input, if known.
        semirings: the per-token values to compute, names of
            :data:`PER_TOKEN_SEMIRINGS`; ``"max"`` is always computed (the top
            paths and branch flow come from it).
        top_k: the number of top paths; ``k > 1`` runs a TopK(k) sweep.
        ig_steps: the Integrated Gradients steps, per input; ``0`` skips IG.
        start_index: :attr:`ExplainResult.index` of the first input.
        plots: draw each result's plots.
        decompose: composite primitives to record as their finer ops.
        output_fn: maps the logits to the explained ``(batch,)`` values (default:
            :func:`batch_target` of ``targets``).

    Returns:
        One :class:`ExplainResult` per input, in order.

    Raises:
        ExplainError: a bad layer, inputs that cannot be batched, or an unknown
            semiring name.
        ValueError: ``top_k < 1`` or ``ig_steps < 0``.

    Examples::

        >>> import torch
        >>> from torch import nn
        >>> from captum_semiring.analysis.models import from_module
        >>> _ = torch.manual_seed(0)
        >>> loaded = from_module(nn.Sequential(nn.Embedding(8, 3), nn.Flatten(),
        ...                                    nn.Linear(6, 2)))
        >>> exs = [token_example(loaded, [1, 5]), token_example(loaded, [2, 2])]
        >>> tgts = [prepare_target(loaded, ex)[0] for ex in exs]
        >>> results = explain_batch(loaded, exs, tgts, semirings=("max", "sum"))
        >>> [len(r.per_token["sum"]) for r in results]
        [2, 2]
    """
    if top_k < 1:
        raise ValueError("top_k must be at least 1")
    if ig_steps < 0:
        raise ValueError("ig_steps must be >= 0")
    unknown = [s for s in semirings if s not in PER_TOKEN_SEMIRINGS]
    if unknown:
        raise ExplainError(
            f"unknown semiring {unknown[0]!r} in semirings; use any of "
            f"{', '.join(PER_TOKEN_SEMIRINGS)}"
        )
    if len(targets) != len(examples):
        raise ExplainError(
            f"targets has {len(targets)} entries for {len(examples)} examples"
        )
    layer = model.layer
    ids, extra = stack_examples(model, examples)
    spans = [(row, ex.ids.shape[1]) for row, ex in enumerate(examples)]
    fn = output_fn if output_fn is not None else batch_target(targets)

    layer_inputs = [(name, layer_input(m)) for name, m in model.encoder_layers]
    with record(layer, *[li for _, li in layer_inputs], decompose=decompose) as graph:
        logits = forward_logits(model, ids, extra)
        out = fn(logits)
    if predictions is None:
        predictions = [
            _prediction(t, logits.detach()[row : row + 1])
            for t, (row, _) in zip(targets, spans)
        ]
    try:
        node = graph.node_of(layer)
    except Exception:
        raise ExplainError(
            f"layer {model.layer_name!r} produced no tensor in the forward pass"
        ) from None
    shape = tuple(graph.nodes[node].shape)
    if len(shape) < 2 or shape[:2] != tuple(ids.shape):
        raise ExplainError(
            f"layer {model.layer_name!r} outputs shape {shape}, not (batch, tokens, ...): choose another --layer"
        )
    dims = list(range(2, len(shape)))

    def per_token(res: Any) -> Tensor:
        return res.aggregate(layer, dims) if dims else res[layer]  # (..., batch, L)

    names = list(dict.fromkeys(("max", *semirings)))
    sweeps: dict[str, Any] = {}
    values: dict[str, Tensor] = {}
    for name in names:
        sweeps[name] = graph.backward(out, PER_TOKEN_SEMIRINGS[name]())
        values[name] = per_token(sweeps[name])
    r_max = sweeps["max"]
    r_k = graph.backward(out, TopK(top_k)) if top_k > 1 else r_max
    per_k = per_token(r_k) if top_k > 1 else None
    flows, note = _branch_flows(r_max, layer_inputs, spans)
    config = getattr(model.model, "config", None)
    out_values = out.detach().reshape(-1)

    explained = []
    for (row, length), example, target, prediction, flow in zip(
        spans, examples, targets, predictions, flows, strict=True
    ):
        per = {name: values[name][row, :length] for name in names}
        top = per["max"]
        # top-k paths from the token that carries the largest |path product| (TopK);
        # with k = 1, the max-product sweep already holds the best (positive) path
        if per_k is None:
            t_star = int(top.argmax())
            raw = r_max[layer][row, t_star].reshape(1, -1)
        else:
            t_star = int(per_k[0, row, :length].abs().argmax())
            raw = r_k[layer][:, row, t_star].reshape(top_k, -1)  # (k, hidden...)
        paths = _top_paths(
            r_k,
            layer,
            raw,
            top_k,
            t_star,
            shape[2:],
            example.tokens,
            num_heads=getattr(config, "num_attention_heads", None),
            shape_of=lambda node: tuple(graph.nodes[node].shape),
            row=row,
        )
        normalized: list[float | None] = []
        if "entropy" in per and "count" in per:
            normalized = [
                float(h / n) if float(n) > 0 else None
                for h, n in zip(per["entropy"], per["count"])
            ]
        share: list[float] = []
        if "max_abs" in per and "logsum" in per:
            # the share of the flow Z the largest |path| carries, from log Z
            best_abs = per["max_abs"].abs()
            share = [
                float(v)
                for v in torch.where(
                    best_abs > 0, torch.exp(best_abs.log() - per["logsum"]), 0.0
                )
            ]
        result = ExplainResult(
            index=start_index + row,
            tokens=list(example.tokens),
            ids=[int(t) for t in example.ids[0]],
            label=example.label,
            target=target,
            output=float(out_values[row]),
            prediction=prediction,
            top_path_per_token=[float(v) for v in top],
            entropy_per_token=[float(v) for v in per.get("entropy", ())],
            normalized_entropy_per_token=normalized,
            top_path_share_per_token=share,
            most_important_token=t_star,
            top_paths=paths,
            branch_flow=flow,
            integrated_gradients=(
                _integrated_gradients(model, example, target, ig_steps, top)
                if ig_steps > 0
                else None
            ),
            branch_flow_note=note,
            per_token={
                name: [float(v) for v in per[name]]
                for name in names
                if name in semirings
            },
        )
        if plots:
            _draw(result)
        explained.append(result)
    return explained


def explain(
    model: LoadedModel,
    example: Example,
    target: Target | None = None,
    *,
    prediction: int | str | None = None,
    top_k: int = 3,
    ig_steps: int = 32,
    index: int = 0,
    plots: bool = True,
    decompose: tuple[str, ...] = (),
) -> ExplainResult:
    """Top gradient paths, gradient entropy, branch flow and Integrated Gradients for
    one input.

    One forward pass is recorded (with the attribution layer and each encoder layer's
    input as sources); the reverse sweeps are MaxProduct (per-token top path values
    and branch flow), Entropy (per-token entropy) and, for ``top_k > 1``, TopK(k)
    (the top paths; with ``top_k = 1`` the max-product sweep gives the best path).
    Captum's LayerIntegratedGradients runs on the same layer from a baseline of
    padding ids (special tokens kept). :func:`explain_batch` does the same for many
    inputs at once.

    Args:
        model: a loaded model (see :mod:`captum_semiring.analysis.models`).
        example: the input.
        target: what to explain (default: :func:`prepare_target`'s default, the
            correct class if known, else the predicted class).
        prediction: the model's prediction, if already known (as returned by
            :func:`prepare_target`); computed from the recorded pass otherwise.
        top_k: the number of top paths; ``k > 1`` runs a TopK(k) sweep.
        ig_steps: the IG steps; ``0`` skips IG.
        index: the input's position in a run (names the plot files
            ``input{index + 1}_tokens.png`` and ``..._branch_flow.png``).
        plots: draw the plots (matplotlib) into :attr:`ExplainResult.images`.
        decompose: composite primitives to record as their finer ops (see
            :func:`~captum_semiring.record`); the top paths and the winning
            branches depend on this granularity.

    Returns:
        The :class:`ExplainResult`.

    Raises:
        ExplainError: a bad target, or a layer without a ``(1, tokens, ...)`` output.
        ValueError: ``top_k < 1`` or ``ig_steps < 0``.
    """
    if top_k < 1:
        raise ValueError("top_k must be at least 1")
    if ig_steps < 0:
        raise ValueError("ig_steps must be >= 0")
    if target is None:
        target, prediction = prepare_target(model, example)
    return explain_batch(
        model,
        [example],
        [target],
        predictions=None if prediction is None else [prediction],
        top_k=top_k,
        ig_steps=ig_steps,
        start_index=index,
        plots=plots,
        decompose=decompose,
        output_fn=target.fn,
    )[0]


def explain_inputs(
    model: LoadedModel,
    examples: Sequence[Example],
    targets: Sequence[tuple[Target, int | str | None]] | None = None,
    *,
    show_progress: bool = False,
    **options: Any,
) -> Iterator[ExplainResult]:
    """:func:`explain` for each of several inputs, one result at a time.

    A generator, so that each result can be shown as soon as it is ready.

    Args:
        model: a loaded model.
        examples: the inputs; their position in ``examples`` is their
            :attr:`ExplainResult.index`.
        targets: one ``(target, prediction)`` per example, as
            :func:`prepare_target` returns them (default: its default for each).
        show_progress: show a progress bar over the inputs (tqdm, on stderr).
        **options: :func:`explain`'s keyword options (``top_k``, ``ig_steps``,
            ``plots``, ``decompose``).

    Yields:
        One :class:`ExplainResult` per example, in order.

    Examples::

        >>> import torch
        >>> from torch import nn
        >>> from captum_semiring.analysis.models import from_module
        >>> _ = torch.manual_seed(0)
        >>> loaded = from_module(nn.Sequential(nn.Embedding(8, 3), nn.Flatten(), nn.Linear(9, 2)))
        >>> examples = [token_example(loaded, ids) for ids in ([1, 5, 2], [4, 4, 3])]
        >>> results = list(explain_inputs(loaded, examples, ig_steps=0, top_k=1, plots=False))
        >>> [r.index for r in results], [r.ids for r in results]
        ([0, 1], [[1, 5, 2], [4, 4, 3]])
    """
    if targets is not None and len(targets) != len(examples):
        raise ValueError(
            f"got {len(targets)} targets for {len(examples)} examples; give one per example"
        )
    # closed on exhaustion, and when the caller stops early
    with progress(examples, desc="explaining", unit="input", show=show_progress) as bar:
        for i, example in enumerate(bar):
            target, prediction = targets[i] if targets is not None else (None, None)
            yield explain(
                model, example, target, prediction=prediction, index=i, **options
            )
