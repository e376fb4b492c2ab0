"""The paper's small transformer (sec. 5.1) and its training loop, plus the embedded
default model of the command line.

The model is Hugging Face's ``BertForSequenceClassification`` with one layer, hidden
size 16, 2 heads and intermediate size 32. It is fed the raw token ids, without a
[CLS] token: its pooler reads the first position's output (``dense`` + ``tanh``) and the
classifier reads the pooler, so the decision is read off the first token, as in the
paper. Token 0 is the padding id; the synthetic tasks use tokens ``1..vocab_size``,
so the embedding table has ``vocab_size + 1`` rows.

Examples::

    >>> from captum_semiring.reproductions.tasks.models import default_model
    >>> trained = default_model()          # trains once (seconds), then cached
    >>> trained.val_accuracy
    1.0
    >>> trained.model(trained.example_ids).logits.shape
    torch.Size([1, 2])
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ...analysis.models import LoadedModel, encoder_layers, resolve_layer
from .determinism import deterministic
from .synthetic import (
    DEFAULT_N,
    DEFAULT_SEQ_LEN,
    DEFAULT_VOCAB_SIZE,
    FirstTokenRepeatedOnce,
    SyntheticTask,
    get_task,
    split,
)

__all__ = [
    "load_default_model",
    "paper_bert_config",
    "paper_bert",
    "train_classifier",
    "TrainedClassifier",
    "default_model",
    "cache_dir",
    "accuracy",
]

# Bump when the recipe of the default model changes: it names the cache entry.
DEFAULT_MODEL_VERSION = 1
DEFAULT_MODEL_N = DEFAULT_N  # the paper's 10,000 (4,000 stalled at 99% val)


def cache_dir() -> Path:
    """``$CAPTUM_SEMIRING_CACHE``, else ``$XDG_CACHE_HOME/captum-semiring``, else
    ``~/.cache/captum-semiring``."""
    explicit = os.environ.get("CAPTUM_SEMIRING_CACHE")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "captum-semiring"


def paper_bert_config(
    num_labels: int,
    vocab_size: int = DEFAULT_VOCAB_SIZE,
    seq_len: int = DEFAULT_SEQ_LEN,
    **overrides: Any,
) -> Any:
    """The sec. 5.1 ``BertConfig``: 1 layer, hidden 16, 2 heads, intermediate 32.

    Args:
        num_labels: number of classes.
        vocab_size: the task's vocabulary; the embedding gets one more row (id 0).
        seq_len: the sequence length, used as ``max_position_embeddings``.
        overrides: any other ``BertConfig`` field.

    Returns:
        A ``transformers.BertConfig`` with ``attn_implementation="eager"`` and no
        dropout (the paper does not use it for these tiny models; it also makes the
        training converge in seconds).
    """
    from transformers import BertConfig

    kwargs: dict[str, Any] = dict(
        vocab_size=vocab_size + 1,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=seq_len,
        type_vocab_size=1,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        pad_token_id=0,
        num_labels=num_labels,
    )
    kwargs.update(overrides)
    config = BertConfig(**kwargs)
    config._attn_implementation = kwargs.get("attn_implementation", "eager")
    return config


def paper_bert(config: Any, seed: int = 0) -> Any:
    """A freshly initialized ``BertForSequenceClassification`` (seeded)."""
    from transformers import BertForSequenceClassification

    torch.manual_seed(seed)
    return BertForSequenceClassification(config)


@torch.no_grad()
def accuracy(model: Any, X: Tensor, y: Tensor, batch_size: int = 1024) -> float:
    """Classification accuracy of ``model`` (logits from raw ids) on ``(X, y)``."""
    was_training = model.training
    model.eval()
    correct = 0
    for i in range(0, len(y), batch_size):
        logits = model(X[i : i + batch_size]).logits
        correct += int((logits.argmax(-1) == y[i : i + batch_size]).sum())
    model.train(was_training)
    return correct / max(len(y), 1)


@dataclass
class TrainedClassifier:
    """A trained model with its data and scores.

    Attributes:
        model: the ``BertForSequenceClassification``, in eval mode.
        task: the task's display name.
        val_accuracy: accuracy on the validation split (10%).
        test_accuracy: accuracy on the test split (20%).
        epochs: epochs run (fractional when training stopped mid-epoch).
        seconds: wall time of the training (0 when loaded from the cache).
        seed: the seed of the data and of the training.
        data: ``{"train"|"val"|"test": (X, y)}`` (regenerated from the seed on load).
    """

    model: Any
    task: str
    val_accuracy: float
    test_accuracy: float
    epochs: float
    seconds: float
    seed: int
    n: int
    seq_len: int
    vocab_size: int
    data: dict[str, tuple[Tensor, Tensor]] = field(default_factory=dict, repr=False)

    @property
    def example_ids(self) -> Tensor:
        """The first validation sequence, shape ``(1, seq_len)``."""
        return self.data["val"][0][:1]

    def metadata(self) -> dict[str, Any]:
        meta = asdict(self)
        meta.pop("model")
        meta.pop("data")
        return meta


def train_classifier(
    task: str | SyntheticTask,
    seed: int = 0,
    n: int = DEFAULT_N,
    seq_len: int = DEFAULT_SEQ_LEN,
    vocab_size: int = DEFAULT_VOCAB_SIZE,
    lr: float = 1e-3,
    batch_size: int = 32,
    max_epochs: int = 50,
    eval_every: int = 50,
    target_accuracy: float = 1.0,
    threads: int | None = 1,
    **config_overrides: Any,
) -> TrainedClassifier:
    """Train the sec. 5.1 model on a synthetic task until 100% validation accuracy.

    Adam at ``lr``, mini-batches of ``batch_size``, cross-entropy. The validation
    accuracy is checked every ``eval_every`` steps and at the end of each epoch; the
    training stops as soon as it reaches ``target_accuracy``, or after ``max_epochs``.
    Data, initialization and batch order are all seeded by ``seed``, kernels are
    deterministic and the thread count is fixed during training (restored after).

    Args:
        task: a :class:`~captum_semiring.reproductions.tasks.synthetic.SyntheticTask` or its name
            (``"FirstTokenRepeatedOnce"``, ``"BinCountOnes(5)"``, ...).
        seed: the seed of everything.
        n, seq_len, vocab_size: the dataset (split 70/10/20).

    Returns:
        A :class:`TrainedClassifier`; the model is in eval mode.
    """
    spec = get_task(task)
    X, y = spec(n=n, seq_len=seq_len, vocab_size=vocab_size, seed=seed)
    (Xtr, ytr), (Xva, yva), (Xte, yte) = split(X, y)
    config = paper_bert_config(
        spec.num_classes, vocab_size=vocab_size, seq_len=seq_len, **config_overrides
    )
    start = time.perf_counter()
    with deterministic(threads):
        model = paper_bert(config, seed=seed)
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        gen = torch.Generator().manual_seed(seed + 1)
        loss_fn = torch.nn.CrossEntropyLoss()
        steps_per_epoch = (len(ytr) + batch_size - 1) // batch_size
        val_acc, epochs, step = 0.0, 0.0, 0
        model.train()
        for epoch in range(max_epochs):
            perm = torch.randperm(len(ytr), generator=gen)
            for b in range(steps_per_epoch):
                idx = perm[b * batch_size : (b + 1) * batch_size]
                loss = loss_fn(model(Xtr[idx]).logits, ytr[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                step += 1
                last = b == steps_per_epoch - 1
                if step % eval_every == 0 or last:
                    val_acc = accuracy(model, Xva, yva)
                    if val_acc >= target_accuracy:
                        break
            epochs = epoch + (b + 1) / steps_per_epoch
            if val_acc >= target_accuracy:
                break
        model.eval()
        test_acc = accuracy(model, Xte, yte)
    return TrainedClassifier(
        model=model,
        task=spec.display_name,
        val_accuracy=val_acc,
        test_accuracy=test_acc,
        epochs=round(epochs, 3),
        seconds=time.perf_counter() - start,
        seed=seed,
        n=n,
        seq_len=seq_len,
        vocab_size=vocab_size,
        data={"train": (Xtr, ytr), "val": (Xva, yva), "test": (Xte, yte)},
    )


def write_cache_entry(
    entry: Path,
    model: Any,
    metadata: dict[str, Any],
    write_extra: Callable[[Path], Any] | None = None,
) -> None:
    """Cache a trained Hugging Face model in the folder ``entry``: ``state_dict.pt``,
    ``config.json``, ``meta.json`` and whatever ``write_extra(folder)`` adds. The files
    go to a temporary folder that is renamed into place, so concurrent writers are
    safe: the last rename wins and every entry is complete."""
    entry.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=entry.name + ".", dir=entry.parent))
    torch.save(model.state_dict(), tmp / "state_dict.pt")
    config = json.dumps(model.config.to_dict(), indent=1, default=str)
    (tmp / "config.json").write_text(config)
    (tmp / "meta.json").write_text(json.dumps(metadata, indent=1))
    if write_extra is not None:
        write_extra(tmp)
    try:
        if entry.exists():
            shutil.rmtree(entry, ignore_errors=True)
        os.replace(tmp, entry)
    except OSError:  # another process won the race; its entry is as good as ours
        shutil.rmtree(tmp, ignore_errors=True)


def _default_entry(seed: int) -> Path:
    return (
        cache_dir()
        / f"default-firsttokenrepeatedonce-v{DEFAULT_MODEL_VERSION}-seed{seed}"
    )


def default_model(
    seed: int = 0, retrain: bool = False, verbose: bool = False
) -> TrainedClassifier:
    """The command line's embedded default: the sec. 5.1 model trained on
    FirstTokenRepeatedOnce with the paper's setup (10,000 sequences of 10 tokens,
    vocabulary 20, split 70/10/20), seed 0.

    The first call trains it (about 11 epochs, ~15 s on one core) and caches the weights
    (a ``state_dict.pt``), the config and the scores in
    :func:`cache_dir`. Later calls load the cache. Writes are atomic, so concurrent
    first calls are safe.
    """
    from transformers import BertConfig, BertForSequenceClassification

    entry = _default_entry(seed)
    task = FirstTokenRepeatedOnce()
    n, seq_len, vocab = DEFAULT_MODEL_N, DEFAULT_SEQ_LEN, DEFAULT_VOCAB_SIZE
    if not retrain and (entry / "meta.json").exists():
        try:
            meta = json.loads((entry / "meta.json").read_text())
            config = BertConfig.from_dict(
                json.loads((entry / "config.json").read_text())
            )
            config._attn_implementation = "eager"
            model = BertForSequenceClassification(config)
            model.load_state_dict(
                torch.load(entry / "state_dict.pt", weights_only=True)
            )
            model.eval()
            X, y = task(n=n, seq_len=seq_len, vocab_size=vocab, seed=seed)
            tr, va, te = split(X, y)
            meta.update(seconds=0.0)
            return TrainedClassifier(
                model=model, data={"train": tr, "val": va, "test": te}, **meta
            )
        except Exception:  # a corrupt or stale cache entry: train again
            pass
    if verbose:
        print(
            f"training the default model on {task.name} (first use only) ...",
            flush=True,
        )
    trained = train_classifier(task, seed=seed, n=n, seq_len=seq_len, vocab_size=vocab)
    write_cache_entry(entry, trained.model, trained.metadata())
    if verbose:
        print(
            f"trained in {trained.seconds:.1f} s, validation accuracy {trained.val_accuracy:.3f}; cached in {entry}"
        )
    return trained


def load_default_model(
    *, layer: str | None = None, verbose: bool = True
) -> LoadedModel:
    """The embedded demo model: the paper's 1-layer BERT trained on
    FirstTokenRepeatedOnce (trained on first use, ~15 s, then cached).

    Args:
        layer: dotted path of the attribution layer (default: ``bert.embeddings``).
        verbose: say so on stderr when the model is trained.

    Returns:
        The :class:`LoadedModel`, with ``label_fn`` and ``val_accuracy`` set.

    Raises:
        ModelLoadError: no such layer.
    """
    trained = default_model(verbose=verbose)
    model = trained.model.eval()
    layer_name, layer_module = resolve_layer(model, layer)
    return LoadedModel(
        model=model,
        kind="default",
        description=(
            "embedded default: the paper's 1-layer BERT (hidden 16, 2 heads, intermediate 32) "
            f"trained on FirstTokenRepeatedOnce, seed {trained.seed}"
        ),
        layer_name=layer_name,
        layer=layer_module,
        encoder_layers=encoder_layers(model),
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
