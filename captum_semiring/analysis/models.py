"""Model loading and layer discovery: the one place that finds a model's embeddings
and its transformer layers, and loads the models that ``captum-semiring explain``
and the analyses work on.

A loaded model is a :class:`LoadedModel`: the module in eval mode together with what
an analysis needs to feed and read it (its attribution layer, its encoder layers, its
tokenizer, vocabulary and position limits, notes for a report). Loading problems (a
missing directory, a layer the model does not have, ...) raise :class:`ModelLoadError`
with a one-line message.

Examples::

    >>> import torch
    >>> from torch import nn
    >>> model = nn.Sequential(nn.Embedding(10, 4), nn.Flatten(), nn.Linear(12, 2))
    >>> loaded = from_module(model)
    >>> loaded.layer_name, loaded.vocab_size, loaded.encoder_layers
    ('0', 10, [])
"""

from __future__ import annotations

import contextlib
import importlib
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .io import module_name

__all__ = [
    "ModelLoadError",
    "LoadedModel",
    "quiet_transformers",
    "first_line",
    "find_embeddings",
    "encoder_layers",
    "resolve_layer",
    "from_module",
    "load_hf_model",
    "load_callable_model",
    "RandomWeightsError",
    "refuse_random_weights",
]


class ModelLoadError(ValueError):
    """A model cannot be loaded or lacks what was asked of it (a layer, embeddings).

    The message is one line, fit to show a user as it is.
    """


@dataclass
class LoadedModel:
    """A model prepared for explanation.

    Attributes:
        model: the module, in eval mode.
        kind: ``"default"`` (the embedded demo model), ``"hf"`` (a Hugging Face
            directory), ``"callable"`` (a ``module:callable`` spec) or ``"module"``
            (a module given directly, see :func:`from_module`).
        description: one line for a report.
        layer_name: dotted module path of the attribution layer.
        layer: the attribution layer.
        encoder_layers: ``(name, module)`` of the transformer layers, see
            :func:`encoder_layers`.
        tokenizer: the Hugging Face tokenizer, if any.
        max_positions: the most tokens the model takes, if known.
        vocab_size: the vocabulary size, if known.
        num_labels: the number of classes of a classifier, if known.
        is_mlm: the model is a masked language model (per-token logits).
        hf: the model takes Hugging Face keyword inputs (``input_ids=``,
            ``attention_mask=``) and returns an output with ``.logits``.
        pad_id: the padding id (the Integrated Gradients baseline).
        special_ids: the tokenizer's special token ids (kept in the baseline).
        notes: remarks for a report (e.g. randomly initialized weights).
        random_weights: names of weights the checkpoint lacked, initialized
            randomly (a classifier head on a bare encoder); see
            :func:`refuse_random_weights`.
        val_accuracy: the validation accuracy, where known (the demo model).
        label_fn: the correct label of a batch of token ids, where known.
        token_range: the valid token ids ``(low, high)``, if narrower than the
            vocabulary.
    """

    model: nn.Module
    kind: str
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
    random_weights: list[str] = field(default_factory=list)
    val_accuracy: float | None = None
    label_fn: Callable[[Tensor], Tensor] | None = None
    token_range: tuple[int, int] | None = None


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence Hugging Face's logging, progress bars and warnings inside the block.

    Examples::

        >>> with quiet_transformers():
        ...     pass
    """
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


def first_line(err: BaseException) -> str:
    """The first non-empty line of an exception's message (its class name if empty).

    Examples::

        >>> first_line(RuntimeError("kaput\\nsecond line"))
        'kaput'
        >>> first_line(KeyError())
        'KeyError'
    """
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def find_embeddings(model: nn.Module) -> tuple[str, nn.Module]:
    """The embedding layer of ``model``, the default attribution layer.

    Tries, in order: a Hugging Face model's ``base_model.embeddings``; the first
    submodule whose class name ends in ``Embeddings``; the first ``nn.Embedding``.

    Args:
        model: any module.

    Returns:
        ``(name, module)``: the dotted path of the layer and the layer.

    Raises:
        ModelLoadError: the model has none of these.

    Examples::

        >>> from torch import nn
        >>> find_embeddings(nn.Sequential(nn.Linear(2, 2), nn.Embedding(5, 2)))[0]
        '1'
    """
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
    raise ModelLoadError(
        "found no embedding layer in the model; name the attribution layer with --layer"
    )


def encoder_layers(
    model: nn.Module, *, strict: bool = False, needed_by: str = "this analysis"
) -> list[tuple[str, nn.Module]]:
    """The transformer layers of ``model``, input to output, with their names.

    By default a layer is any submodule with ``attention.self.query``, ``.key`` and
    ``.value`` (Hugging Face BERT's layout, shared by RoBERTa, ELECTRA, MiniLM, ...),
    and a model without such layers gives ``[]``.

    With ``strict=True`` the layers must be the Hugging Face encoder's list
    ``model.base_model.encoder.layer`` (else ``model.encoder.layer``), non-empty, and
    each must have ``nn.Linear`` projections ``attention.self.query/key/value`` and
    an ``attention.output``: analyses that hook those components ask for this.

    Args:
        model: any module.
        strict: require and check BERT's layer layout (see above).
        needed_by: what needs the layout, for the ``strict`` error message.

    Returns:
        ``(name, layer)`` pairs; ``name`` is the dotted path in ``model``.

    Raises:
        ValueError: ``strict=True`` and the model does not have BERT's layout.

    Examples::

        >>> from torch import nn
        >>> encoder_layers(nn.Linear(2, 2))
        []
        >>> encoder_layers(nn.Linear(2, 2), strict=True, needed_by="fig4")
        Traceback (most recent call last):
        ...
        ValueError: Linear has no `base_model.encoder.layer` (a BERT-style encoder); fig4 needs Hugging Face BERT's layer layout
    """
    if not strict:
        layers = []
        for name, m in model.named_modules():
            try:
                for part in ("query", "key", "value"):
                    m.get_submodule(f"attention.self.{part}")
            except AttributeError:
                continue
            layers.append((name, m))
        return layers
    for owner in (getattr(model, "base_model", None), model):
        stack = getattr(getattr(owner, "encoder", None), "layer", None)
        if isinstance(stack, nn.ModuleList) and len(stack) > 0:
            break
    else:
        raise ValueError(
            f"{type(model).__name__} has no `base_model.encoder.layer` (a BERT-style "
            f"encoder); {needed_by} needs Hugging Face BERT's layer layout"
        )
    for i, layer in enumerate(stack):
        attention = getattr(layer, "attention", None)
        self_attn = getattr(attention, "self", None)
        projections = [getattr(self_attn, p, None) for p in ("query", "key", "value")]
        if not (
            all(isinstance(p, nn.Linear) for p in projections)
            and isinstance(getattr(attention, "output", None), nn.Module)
        ):
            raise ValueError(
                f"encoder layer {i} ({type(layer).__name__}) lacks BERT's "
                "attention.self.query/key/value and attention.output"
            )
    return [(module_name(model, layer), layer) for layer in stack]


def resolve_layer(model: nn.Module, name: str | None) -> tuple[str, nn.Module]:
    """The attribution layer called ``name`` (the embeddings when ``None``).

    Args:
        model: any module.
        name: a dotted module path, or ``None`` for :func:`find_embeddings`.

    Returns:
        ``(name, module)``.

    Raises:
        ModelLoadError: the model has no such layer (or no embeddings).

    Examples::

        >>> from torch import nn
        >>> resolve_layer(nn.Sequential(nn.Embedding(5, 2)), "0")[0]
        '0'
        >>> resolve_layer(nn.Sequential(nn.Embedding(5, 2)), "1")
        Traceback (most recent call last):
        ...
        captum_semiring.analysis.models.ModelLoadError: model has no layer '1' (give a dotted module path such as 0)
    """
    if name is None:
        return find_embeddings(model)
    if name in ("", "."):
        raise ModelLoadError(
            "--layer needs a dotted module path such as bert.embeddings"
        )
    try:
        return name, model.get_submodule(name)
    except AttributeError:
        raise ModelLoadError(
            f"model has no layer {name!r} (give a dotted module path such as {_embeddings_name(model)})"
        ) from None


def _embeddings_name(model: nn.Module) -> str:
    try:
        return find_embeddings(model)[0]
    except ModelLoadError:
        return next((n for n, _ in model.named_modules() if n), "<none>")


def from_module(
    model: nn.Module,
    *,
    layer: str | None = None,
    description: str | None = None,
    kind: str = "module",
) -> LoadedModel:
    """Prepare a module that takes token ids ``(batch, seq)`` and returns logits.

    The module is put in eval mode. A module with a ``config`` and
    ``get_input_embeddings`` (a Hugging Face model) is called with keyword inputs.

    Args:
        model: the module.
        layer: dotted path of the attribution layer (default: its embeddings).
        description: one line for a report (default: the class name).
        kind: the :attr:`LoadedModel.kind` to record.

    Returns:
        The :class:`LoadedModel`.

    Raises:
        ModelLoadError: no such layer.
    """
    model.eval()
    layer_name, layer_module = resolve_layer(model, layer)
    config = getattr(model, "config", None)
    hf = config is not None and hasattr(model, "get_input_embeddings")
    vocab = None
    emb = next((m for m in model.modules() if isinstance(m, nn.Embedding)), None)
    if emb is not None:
        vocab = emb.num_embeddings
    return LoadedModel(
        model=model,
        kind=kind,
        description=description or type(model).__name__,
        layer_name=layer_name,
        layer=layer_module,
        encoder_layers=encoder_layers(model),
        max_positions=getattr(config, "max_position_embeddings", None),
        vocab_size=vocab,
        hf=hf,
        pad_id=int(getattr(config, "pad_token_id", None) or 0),
    )


class RandomWeightsError(ModelLoadError):
    """The model has randomly initialized weights (see :func:`refuse_random_weights`)."""


def refuse_random_weights(model: LoadedModel, allow: bool = False) -> None:
    """Raise :class:`RandomWeightsError` when ``model`` has weights its checkpoint
    lacked, unless ``allow``: explaining an untrained head explains noise.

    Examples::

        >>> import torch
        >>> from captum_semiring.analysis.models import from_module, refuse_random_weights
        >>> loaded = from_module(torch.nn.Embedding(5, 2))
        >>> loaded.random_weights = ["classifier.weight"]
        >>> try:
        ...     refuse_random_weights(loaded)
        ... except RandomWeightsError as err:
        ...     print(str(err)[:60])
        1 weight of this model is not in its checkpoint and was init
        >>> refuse_random_weights(loaded, allow=True)  # goes on
    """
    names = model.random_weights
    if not names or allow:
        return
    listed = ", ".join(names[:3]) + (" ..." if len(names) > 3 else "")
    raise RandomWeightsError(
        f"{len(names)} weight{'s' if len(names) > 1 else ''} of this model "
        f"{'are' if len(names) > 1 else 'is'} not in its checkpoint and "
        f"{'were' if len(names) > 1 else 'was'} initialized randomly ({listed}), so "
        "its outputs are noise; pass --allow-random-head (allow=True) to explain it anyway"
    )


def load_hf_model(
    path: str | Path,
    *,
    prefer_masked_lm: bool = False,
    seed: int = 0,
    layer: str | None = None,
) -> LoadedModel:
    """A local Hugging Face model directory, as a sequence classifier or a masked LM.

    The model is a masked LM when the config's ``architectures`` name one, or when
    ``prefer_masked_lm`` is set and they name no sequence classifier; otherwise it is
    loaded with ``AutoModelForSequenceClassification``. Weights the checkpoint lacks
    (e.g. a classifier head on a bare encoder) are initialized after
    ``torch.manual_seed(seed)`` and listed in the notes. Attention is eager. Nothing is
    downloaded.

    Args:
        path: the directory (``config.json``, weights, optionally the tokenizer).
        prefer_masked_lm: load a masked LM unless the config says it is a classifier
            (the caller needs per-token logits, e.g. for a ``correct,wrong`` pair).
        seed: the seed of weights the checkpoint lacks.
        layer: dotted path of the attribution layer (default: the embeddings).

    Returns:
        The :class:`LoadedModel` (``tokenizer`` is ``None`` when the directory has
        none, with a note saying so).

    Raises:
        ModelLoadError: the directory is missing, has no ``config.json``, cannot be
            loaded, or has no such layer.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise ModelLoadError(f"model directory {str(path)!r} does not exist")
    if not path.is_dir() or not (path / "config.json").exists():
        raise ModelLoadError(
            f"{str(path)!r} is not a Hugging Face model directory (no config.json)"
        )
    from transformers import (
        AutoConfig,
        AutoModelForMaskedLM,
        AutoModelForSequenceClassification,
        AutoTokenizer,
    )

    with quiet_transformers():
        try:
            config = AutoConfig.from_pretrained(path, local_files_only=True)
        except Exception as err:
            raise ModelLoadError(
                f"cannot read the model config in {str(path)!r}: {first_line(err)}"
            ) from None
        archs = list(getattr(config, "architectures", None) or [])
        is_mlm = any("MaskedLM" in a for a in archs) or (
            prefer_masked_lm and not any("SequenceClassification" in a for a in archs)
        )
        auto = AutoModelForMaskedLM if is_mlm else AutoModelForSequenceClassification
        torch.manual_seed(seed)  # a newly initialized head is reproducible
        try:
            model, info = auto.from_pretrained(
                path,
                local_files_only=True,
                attn_implementation="eager",
                output_loading_info=True,
            )
        except Exception as err:
            raise ModelLoadError(
                f"cannot load a {auto.__name__[12:]} from {str(path)!r}: {first_line(err)}"
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
            f"(seed {seed}): {', '.join(missing[:4])}{' ...' if len(missing) > 4 else ''}. "
            "Attributions then explain an untrained head."
        )
    if tokenizer is None:
        notes.append(
            "no tokenizer found in the model directory: only --tokens inputs work"
        )
    layer_name, layer_module = resolve_layer(model, layer)
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    pad = getattr(tokenizer, "pad_token_id", None)
    if pad is None:
        pad = getattr(config, "pad_token_id", None) or 0
    return LoadedModel(
        model=model,
        kind="hf",
        description=f"{type(model).__name__} from {path} ({', '.join(archs) or 'no architectures listed'})",
        layer_name=layer_name,
        layer=layer_module,
        encoder_layers=encoder_layers(model),
        tokenizer=tokenizer,
        max_positions=getattr(config, "max_position_embeddings", None),
        vocab_size=getattr(config, "vocab_size", None),
        num_labels=None if is_mlm else getattr(config, "num_labels", None),
        is_mlm=is_mlm,
        hf=True,
        pad_id=int(pad),
        special_ids=special,
        notes=notes,
        random_weights=missing,
    )


def load_callable_model(spec: str, *, layer: str | None = None) -> LoadedModel:
    """The module named by ``"package.module:callable"``.

    The attribute (dotted paths allowed) is called when it is callable and not
    itself a module; the result must be an ``nn.Module`` taking token ids.

    Args:
        spec: ``"package.module:callable"``, importable from ``sys.path``.
        layer: dotted path of the attribution layer (default: its embeddings).

    Returns:
        The :class:`LoadedModel` (kind ``"callable"``).

    Raises:
        ModelLoadError: a malformed spec, a module that does not import, a missing
            attribute, a result that is not a module, or no such layer.

    Examples::

        >>> load_callable_model("torch.nn:Identity").description
        Traceback (most recent call last):
        ...
        captum_semiring.analysis.models.ModelLoadError: found no embedding layer in the model; name the attribution layer with --layer
    """
    mod_name, sep, attr = spec.partition(":")
    if not sep or not mod_name or not attr:
        raise ModelLoadError(
            f"--model must look like 'package.module:callable', got {spec!r}"
        )
    try:
        module = importlib.import_module(mod_name)
    except ImportError as err:
        raise ModelLoadError(
            f"cannot import module {mod_name!r}: {first_line(err)}"
        ) from None
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ModelLoadError(f"module {mod_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    model = obj() if callable(obj) and not isinstance(obj, nn.Module) else obj
    if not isinstance(model, nn.Module):
        raise ModelLoadError(
            f"{spec} returned {type(model).__name__}, not a torch.nn.Module"
        )
    return from_module(
        model,
        layer=layer,
        description=f"{type(model).__name__} from {spec}",
        kind="callable",
    )
