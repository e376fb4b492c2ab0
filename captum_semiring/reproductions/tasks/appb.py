"""The App. B.1 sanity-check data and the small MLPs trained on it.

The paper's second sanity check (App. B.1, Fig. 6(b)) uses "a 4-featured artificial
dataset with randomly generated values in the range [0, 1], labeled by whether the
first feature is greater than 0.5", and "multilayer perceptrons with varying hidden
sizes". Here the features are i.i.d. uniform on ``[0, 1)``; feature 0 is the
*relevant* one (it alone decides the label), the others are *irrelevant* (independent
of the label by construction). The MLP is ``depth`` blocks of ``Linear + ReLU`` of
width ``hidden`` followed by a linear layer to 2 logits; the paper does not state its
depth, so :func:`~captum_semiring.reproductions.appb.appb_mlp_entropy` reports depth 1 and
depth 2.

Examples::

    >>> from captum_semiring.reproductions.tasks.appb import appb_data, appb_label, train_appb_mlp
    >>> X, y = appb_data(n=1000, seed=0)
    >>> X.shape, bool((y == appb_label(X)).all())
    (torch.Size([1000, 4]), True)
    >>> trained = train_appb_mlp(hidden=8, seed=0, steps=100)
    >>> trained.test_accuracy > 0.95
    True
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .determinism import one_thread

__all__ = [
    "APPB_FEATURES",
    "APPB_THRESHOLD",
    "appb_data",
    "appb_label",
    "appb_mlp",
    "TrainedMLP",
    "train_appb_mlp",
]

#: Number of input features (the paper's "4-featured" dataset).
APPB_FEATURES = 4
#: The label is ``X[:, 0] > APPB_THRESHOLD``.
APPB_THRESHOLD = 0.5


def appb_label(X: Tensor) -> Tensor:
    """The App. B label: 1 where the first (relevant) feature exceeds 0.5, else 0."""
    return (X[:, 0] > APPB_THRESHOLD).long()


def appb_data(
    n: int, n_features: int = APPB_FEATURES, seed: int = 0
) -> tuple[Tensor, Tensor]:
    """Sample the App. B dataset: features i.i.d. uniform on ``[0, 1)``, labelled by
    :func:`appb_label`.

    Args:
        n: number of examples.
        n_features: number of features; feature 0 is the relevant one.
        seed: seeds a private ``torch.Generator`` (global RNG state is untouched).

    Returns:
        ``(X, y)``: ``X`` float32 ``(n, n_features)``, ``y`` long ``(n,)``.
    """
    if n_features < 2:
        raise ValueError("need at least one relevant and one irrelevant feature")
    gen = torch.Generator().manual_seed(seed)
    X = torch.rand(n, n_features, generator=gen)
    return X, appb_label(X)


def appb_mlp(
    hidden: int, depth: int = 1, n_features: int = APPB_FEATURES, seed: int = 0
) -> nn.Sequential:
    """``depth`` × (``Linear(·, hidden)`` + ReLU), then ``Linear(hidden, 2)``;
    initialized from ``seed`` (PyTorch's default initialization)."""
    if hidden < 1 or depth < 1:
        raise ValueError("hidden and depth must be at least 1")
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    width = n_features
    for _ in range(depth):
        layers += [nn.Linear(width, hidden), nn.ReLU()]
        width = hidden
    layers.append(nn.Linear(width, 2))
    return nn.Sequential(*layers)


@dataclass
class TrainedMLP:
    """An App. B MLP with its test data and score.

    Attributes:
        model: the ``nn.Sequential``, in eval mode.
        hidden, depth, seed: how it was built.
        test_accuracy: accuracy on the test set.
        seconds: training wall time.
        X_test, y_test: the test set (seed ``seed + 10_000``).
    """

    model: nn.Sequential
    hidden: int
    depth: int
    seed: int
    test_accuracy: float
    seconds: float
    X_test: Tensor
    y_test: Tensor


@one_thread
def train_appb_mlp(
    hidden: int,
    depth: int = 1,
    seed: int = 0,
    n_train: int = 2000,
    n_test: int = 500,
    steps: int = 300,
    lr: float = 1e-2,
    train: bool = True,
) -> TrainedMLP:
    """Train an App. B MLP: full-batch Adam on cross-entropy for ``steps`` steps.

    Full batches on 2,000 examples make a run take well under a second for the hidden
    sizes of Fig. 6(b), and keep it deterministic given ``seed``.

    Args:
        hidden: the hidden width.
        depth: number of hidden layers.
        seed: seeds the training data (``seed``), the test data (``seed + 10_000``)
            and the initialization.
        n_train, n_test: dataset sizes.
        steps: Adam steps.
        lr: Adam's learning rate.
        train: ``False`` returns the untrained (initialized) MLP, a control.

    Returns:
        A :class:`TrainedMLP`.
    """
    X, y = appb_data(n_train, seed=seed)
    X_test, y_test = appb_data(n_test, seed=seed + 10_000)
    model = appb_mlp(hidden, depth, seed=seed)
    start = time.perf_counter()
    if train:
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        for _ in range(steps):
            loss = nn.functional.cross_entropy(model(X), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        acc = float((model(X_test).argmax(-1) == y_test).float().mean())
    return TrainedMLP(
        model=model,
        hidden=hidden,
        depth=depth,
        seed=seed,
        test_accuracy=acc,
        seconds=time.perf_counter() - start,
        X_test=X_test,
        y_test=y_test,
    )
