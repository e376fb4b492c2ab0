"""Seeded generators for the synthetic datasets of the paper's App. C.

Every task maps a sequence of ``seq_len`` tokens, valued ``1..vocab_size`` (0 is left
free for padding), to a class label. The generators sample each class *by
construction* (never by rejection), so the classes are exactly balanced: example ``i``
gets class ``i mod num_classes`` before a seeded shuffle.

=============================== ============================================== =========
task                            label                                          classes
=============================== ============================================== =========
``ContainsTokenSet(T)``         every token of ``T`` occurs in ``X``            2
``Contains1``                   the token 1 occurs in ``X``                    2
``FirstTokenRepeatedImmediately`` ``X[0] == X[1]``                             2
``FirstTokenRepeatedLast``      ``X[0] == X[-1]``                              2
``AdjacentDuplicate``           ``X[i] == X[i+1]`` for some ``i``              2
``FirstTokenRepeatedOnce``      ``X[0]`` occurs again; it occurs at most twice 2
``BinCountOnes(C)``             ``max(ceil(Count1(X) / (S / C)) - 1, 0)``       ``C``
=============================== ============================================== =========

``BinCountOnes``: the paper's formula gives ``-1`` for a sequence without any 1; we map
that to class 0, as the paper's own reading ("labeled 0 if it contains <= S/2 ones")
implies. ``C`` must divide ``S``.

Examples::

    >>> from captum_semiring.reproductions.tasks.synthetic import FirstTokenRepeatedOnce, split
    >>> X, y = FirstTokenRepeatedOnce()(n=100, seed=0)
    >>> X.shape, int(y.sum())
    (torch.Size([100, 10]), 50)
    >>> bool((FirstTokenRepeatedOnce().label(X) == y).all())
    True
    >>> (Xtr, ytr), (Xva, yva), (Xte, yte) = split(X, y)
    >>> len(ytr), len(yva), len(yte)
    (70, 10, 20)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

__all__ = [
    "SyntheticTask",
    "ContainsTokenSet",
    "Contains1",
    "FirstTokenRepeatedImmediately",
    "FirstTokenRepeatedLast",
    "AdjacentDuplicate",
    "FirstTokenRepeatedOnce",
    "BinCountOnes",
    "TASKS",
    "get_task",
    "split",
    "DEFAULT_N",
    "DEFAULT_SEQ_LEN",
    "DEFAULT_VOCAB_SIZE",
]

DEFAULT_N = 10_000
DEFAULT_SEQ_LEN = 10
DEFAULT_VOCAB_SIZE = 20


def _uniform(shape: Sequence[int], low: int, high: int, gen: torch.Generator) -> Tensor:
    """Integers uniform in ``[low, high]`` (inclusive)."""
    return torch.randint(low, high + 1, tuple(shape), generator=gen)


def _other_than(avoid: Tensor, vocab_size: int, gen: torch.Generator) -> Tensor:
    """Tokens uniform over ``1..vocab_size`` minus ``avoid`` (elementwise)."""
    offset = _uniform(avoid.shape, 1, vocab_size - 1, gen)
    return (avoid - 1 + offset) % vocab_size + 1


def _random_positions(
    n: int, seq_len: int, k: int, gen: torch.Generator, low: int = 0
) -> Tensor:
    """``(n, k)`` distinct positions per row, uniform in ``[low, seq_len)``."""
    scores = torch.rand(n, seq_len - low, generator=gen)
    return scores.argsort(dim=1)[:, :k] + low


@dataclass(frozen=True)
class SyntheticTask:
    """A labelled sequence task. Call it to sample a balanced dataset.

    Subclasses implement :meth:`label` (the ground truth, used by the tests and to
    check generated data) and :meth:`_sample` (sample sequences of a given class).
    """

    name: str = field(default="", init=False)
    num_classes: int = field(default=2, init=False)

    def label(self, X: Tensor) -> Tensor:
        """The label of each row of ``X`` (``(n, S)`` long) as an ``(n,)`` long tensor."""
        raise NotImplementedError

    def _sample(
        self, y: Tensor, seq_len: int, vocab_size: int, gen: torch.Generator
    ) -> Tensor:
        raise NotImplementedError

    def check(self, seq_len: int, vocab_size: int) -> None:
        """Raise ``ValueError`` when the task cannot be built at this size."""
        if seq_len < 2 or vocab_size < 2:
            raise ValueError("need seq_len >= 2 and vocab_size >= 2")

    def __call__(
        self,
        n: int = DEFAULT_N,
        seq_len: int = DEFAULT_SEQ_LEN,
        vocab_size: int = DEFAULT_VOCAB_SIZE,
        seed: int = 0,
    ) -> tuple[Tensor, Tensor]:
        """Sample ``n`` sequences with exactly balanced classes.

        Args:
            n: number of sequences.
            seq_len: ``S``, tokens per sequence.
            vocab_size: tokens are valued ``1..vocab_size``.
            seed: seeds a private ``torch.Generator``; global RNG state is untouched.

        Returns:
            ``(X, y)``: ``X`` long ``(n, seq_len)``, ``y`` long ``(n,)``.
        """
        self.check(seq_len, vocab_size)
        gen = torch.Generator().manual_seed(seed)
        y = torch.arange(n) % self.num_classes
        y = y[torch.randperm(n, generator=gen)]
        X = self._sample(y, seq_len, vocab_size, gen)
        return X.long(), y.long()

    @property
    def display_name(self) -> str:
        return self.name


@dataclass(frozen=True)
class ContainsTokenSet(SyntheticTask):
    """True when ``X`` contains every token of ``tokens``."""

    tokens: tuple[int, ...] = (1, 2, 3)
    name: str = field(default="ContainsTokenSet", init=False)

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "tokens", tuple(sorted(set(int(t) for t in self.tokens)))
        )
        if not self.tokens:
            raise ValueError("ContainsTokenSet needs at least one token")

    @property
    def display_name(self) -> str:
        return f"{self.name}({{{','.join(map(str, self.tokens))}}})"

    def check(self, seq_len: int, vocab_size: int) -> None:
        super().check(seq_len, vocab_size)
        if len(self.tokens) > seq_len:
            raise ValueError(
                f"{len(self.tokens)} tokens do not fit in seq_len={seq_len}"
            )
        if min(self.tokens) < 1 or max(self.tokens) > vocab_size:
            raise ValueError(f"tokens must lie in 1..{vocab_size}")
        if len(self.tokens) == vocab_size:
            raise ValueError("the token set is the whole vocabulary: no negatives")

    def label(self, X: Tensor) -> Tensor:
        hits = torch.stack([(X == t).any(dim=1) for t in self.tokens])
        return hits.all(dim=0).long()

    def _sample(
        self, y: Tensor, seq_len: int, vocab_size: int, gen: torch.Generator
    ) -> Tensor:
        n, T = len(y), torch.tensor(self.tokens)
        X = _uniform((n, seq_len), 1, vocab_size, gen)
        # positives: write the set at distinct random positions
        pos = _random_positions(n, seq_len, len(T), gen)
        X_pos = X.scatter(1, pos, T.expand(n, -1))
        # negatives: pick one token of the set to leave out and resample it away
        missing = T[_uniform((n,), 0, len(T) - 1, gen)].unsqueeze(1).expand(n, seq_len)
        X_neg = torch.where(X == missing, _other_than(missing, vocab_size, gen), X)
        return torch.where(y.bool().unsqueeze(1), X_pos, X_neg)


@dataclass(frozen=True)
class Contains1(ContainsTokenSet):
    """True when ``X`` contains the token 1 (Lovering et al., 2021)."""

    tokens: tuple[int, ...] = field(default=(1,), init=False)
    name: str = field(default="Contains1", init=False)

    @property
    def display_name(self) -> str:
        return self.name


@dataclass(frozen=True)
class FirstTokenRepeatedImmediately(SyntheticTask):
    """True when the first two tokens are equal (Lovering et al., 2021)."""

    name: str = field(default="FirstTokenRepeatedImmediately", init=False)

    def label(self, X: Tensor) -> Tensor:
        return (X[:, 0] == X[:, 1]).long()

    def _sample(
        self, y: Tensor, seq_len: int, vocab_size: int, gen: torch.Generator
    ) -> Tensor:
        X = _uniform((len(y), seq_len), 1, vocab_size, gen)
        X[:, 1] = torch.where(y.bool(), X[:, 0], _other_than(X[:, 0], vocab_size, gen))
        return X


@dataclass(frozen=True)
class FirstTokenRepeatedLast(SyntheticTask):
    """True when the first and the last tokens are equal (Lovering et al., 2021)."""

    name: str = field(default="FirstTokenRepeatedLast", init=False)

    def label(self, X: Tensor) -> Tensor:
        return (X[:, 0] == X[:, -1]).long()

    def _sample(
        self, y: Tensor, seq_len: int, vocab_size: int, gen: torch.Generator
    ) -> Tensor:
        X = _uniform((len(y), seq_len), 1, vocab_size, gen)
        X[:, -1] = torch.where(y.bool(), X[:, 0], _other_than(X[:, 0], vocab_size, gen))
        return X


@dataclass(frozen=True)
class AdjacentDuplicate(SyntheticTask):
    """True when two adjacent tokens are equal anywhere (Lovering et al., 2021)."""

    name: str = field(default="AdjacentDuplicate", init=False)

    def label(self, X: Tensor) -> Tensor:
        return (X[:, 1:] == X[:, :-1]).any(dim=1).long()

    def _sample(
        self, y: Tensor, seq_len: int, vocab_size: int, gen: torch.Generator
    ) -> Tensor:
        n = len(y)
        # negatives: each token differs from its left neighbour
        cols = [_uniform((n,), 1, vocab_size, gen)]
        for _ in range(1, seq_len):
            cols.append(_other_than(cols[-1], vocab_size, gen))
        X_neg = torch.stack(cols, dim=1)
        # positives: a uniform sequence with one forced duplicate at a random place
        X_pos = _uniform((n, seq_len), 1, vocab_size, gen)
        j = _uniform((n, 1), 0, seq_len - 2, gen)
        X_pos = X_pos.scatter(1, j + 1, X_pos.gather(1, j))
        return torch.where(y.bool().unsqueeze(1), X_pos, X_neg)


@dataclass(frozen=True)
class FirstTokenRepeatedOnce(SyntheticTask):
    """True when the first token occurs again. It occurs at most twice in all.

    The tokens other than the first never equal it, except for the one repeat of a
    positive; they may repeat among themselves.
    """

    name: str = field(default="FirstTokenRepeatedOnce", init=False)

    def label(self, X: Tensor) -> Tensor:
        return (X[:, 1:] == X[:, :1]).any(dim=1).long()

    def _sample(
        self, y: Tensor, seq_len: int, vocab_size: int, gen: torch.Generator
    ) -> Tensor:
        n = len(y)
        first = _uniform((n, 1), 1, vocab_size, gen)
        rest = _other_than(first.expand(n, seq_len - 1), vocab_size, gen)
        X = torch.cat([first, rest], dim=1)
        where = _uniform((n, 1), 1, seq_len - 1, gen)
        X_pos = X.scatter(1, where, first)
        return torch.where(y.bool().unsqueeze(1), X_pos, X)


@dataclass(frozen=True)
class BinCountOnes(SyntheticTask):
    """``C`` classes by the number of 1s: ``max(ceil(Count1(X) / (S / C)) - 1, 0)``.

    A sequence with no 1 gets class 0 (the formula would give -1). Each class is
    sampled by drawing a count of 1s uniformly among the counts of that class, putting
    the 1s at random positions and filling the rest from ``2..vocab_size``.
    """

    C: int = 2
    name: str = field(default="BinCountOnes", init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "num_classes", int(self.C))
        if self.C < 2:
            raise ValueError("BinCountOnes needs C >= 2")

    @property
    def display_name(self) -> str:
        return f"{self.name}({self.C})"

    def check(self, seq_len: int, vocab_size: int) -> None:
        super().check(seq_len, vocab_size)
        if self.C > seq_len or seq_len % self.C:
            raise ValueError(f"C={self.C} must divide seq_len={seq_len}")

    def label(self, X: Tensor) -> Tensor:
        S = X.shape[1]
        count = (X == 1).sum(dim=1)
        return ((count * self.C + S - 1) // S - 1).clamp(min=0).long()

    def _sample(
        self, y: Tensor, seq_len: int, vocab_size: int, gen: torch.Generator
    ) -> Tensor:
        n, width = len(y), seq_len // self.C
        # class 0 holds counts 0..width; class c >= 1 holds c*width+1 .. (c+1)*width
        low = torch.where(y == 0, 0, y * width + 1)
        high = (y + 1) * width
        count = low + (torch.rand(n, generator=gen) * (high - low + 1)).long().clamp(
            max=high - low
        )
        X = _uniform((n, seq_len), 2, vocab_size, gen)
        order = torch.rand(n, seq_len, generator=gen).argsort(dim=1)
        ones = torch.arange(seq_len).unsqueeze(0) < count.unsqueeze(
            1
        )  # first `count` slots
        mask = torch.zeros_like(ones).scatter(1, order, ones)
        return torch.where(mask, torch.ones_like(X), X)


TASKS: dict[str, Callable[..., SyntheticTask]] = {
    "ContainsTokenSet": ContainsTokenSet,
    "Contains1": Contains1,
    "FirstTokenRepeatedImmediately": FirstTokenRepeatedImmediately,
    "FirstTokenRepeatedLast": FirstTokenRepeatedLast,
    "AdjacentDuplicate": AdjacentDuplicate,
    "FirstTokenRepeatedOnce": FirstTokenRepeatedOnce,
    "BinCountOnes": BinCountOnes,
}
"""Task name → task class. Parametrized ones take ``tokens=`` or ``C=``."""


def get_task(spec: str | SyntheticTask, **params: object) -> SyntheticTask:
    """A task from its name, e.g. ``"Contains1"``, ``"BinCountOnes(5)"`` or
    ``"ContainsTokenSet(1,2,3)"``; a task instance is returned as is."""
    if isinstance(spec, SyntheticTask):
        return spec
    name, _, args = spec.strip().partition("(")
    if name not in TASKS:
        raise KeyError(f"unknown task {name!r}; available: {', '.join(TASKS)}")
    values = [
        int(a)
        for a in args.rstrip(")").replace("{", "").replace("}", "").split(",")
        if a.strip()
    ]
    if values:
        if name == "BinCountOnes":
            params.setdefault("C", values[0])
        elif name == "ContainsTokenSet":
            params.setdefault("tokens", tuple(values))
        else:
            raise ValueError(f"task {name} takes no parameters")
    return TASKS[name](**params)


def split(
    X: Tensor,
    y: Tensor,
    fractions: Iterable[float] = (0.7, 0.1, 0.2),
    seed: int | None = None,
) -> list[tuple[Tensor, Tensor]]:
    """Split ``(X, y)`` into train / validation / test parts (70/10/20 by default).

    The generators already shuffle, so by default the split is by position. Pass
    ``seed`` to shuffle again first.
    """
    fr = list(fractions)
    if abs(sum(fr) - 1.0) > 1e-6:
        raise ValueError("fractions must sum to 1")
    n = len(y)
    if seed is not None:
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
        X, y = X[perm], y[perm]
    bounds = [0]
    acc = 0.0
    for f in fr[:-1]:
        acc += f
        bounds.append(round(acc * n))
    bounds.append(n)
    return [(X[a:b], y[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]
