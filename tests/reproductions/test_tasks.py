"""Synthetic tasks (paper App. C) and the sec. 5.1 model builders.

Every label is checked against an independent, loop-based reading of the task's
definition in the paper (Tab. 1 and App. C.2), not against the generator's own code.
"""

from __future__ import annotations

import math

import pytest
import torch
from builders import tiny_bert_config

from captum_semiring.reproductions.tasks import (
    TASKS,
    AdjacentDuplicate,
    BinCountOnes,
    Contains1,
    ContainsTokenSet,
    FirstTokenRepeatedImmediately,
    FirstTokenRepeatedLast,
    FirstTokenRepeatedOnce,
    cache_dir,
    get_task,
    paper_bert_config,
    split,
    train_classifier,
)

S, V = 10, 20


def _contains_all(x: list[int], tokens: tuple[int, ...]) -> int:
    return int(all(t in x for t in tokens))


def _reference_label(task: object, x: list[int]) -> int:
    """The paper's definitions, written out with plain Python."""
    if isinstance(task, Contains1):
        return int(1 in x)
    if isinstance(task, ContainsTokenSet):
        return _contains_all(x, task.tokens)
    if isinstance(task, FirstTokenRepeatedImmediately):
        return int(x[0] == x[1])
    if isinstance(task, FirstTokenRepeatedLast):
        return int(x[0] == x[-1])
    if isinstance(task, AdjacentDuplicate):
        return int(any(a == b for a, b in zip(x, x[1:])))
    if isinstance(task, FirstTokenRepeatedOnce):
        return int(x[0] in x[1:])
    if isinstance(task, BinCountOnes):
        # label = ceil(Count1 / (S / C)) - 1; a sequence without 1s is class 0
        return max(math.ceil(x.count(1) / (len(x) / task.C)) - 1, 0)
    raise AssertionError(task)


ALL_TASKS = [
    ContainsTokenSet(),
    ContainsTokenSet((4, 9)),
    ContainsTokenSet((1, 2, 3, 5, 8)),
    Contains1(),
    FirstTokenRepeatedImmediately(),
    FirstTokenRepeatedLast(),
    AdjacentDuplicate(),
    FirstTokenRepeatedOnce(),
    BinCountOnes(2),
    BinCountOnes(5),
    BinCountOnes(10),
]


@pytest.mark.parametrize("task", ALL_TASKS, ids=lambda t: t.display_name)
def test_labels_match_the_definition_and_classes_are_balanced(task) -> None:
    X, y = task(n=1000, seq_len=S, vocab_size=V, seed=3)
    assert X.dtype == torch.long and y.dtype == torch.long
    assert X.shape == (1000, S) and y.shape == (1000,)
    assert int(X.min()) >= 1 and int(X.max()) <= V
    expected = [_reference_label(task, row) for row in X.tolist()]
    assert y.tolist() == expected
    counts = torch.bincount(y, minlength=task.num_classes).tolist()
    assert len(counts) == task.num_classes
    assert max(counts) - min(counts) <= 1, counts
    assert torch.equal(task.label(X), y)


@pytest.mark.parametrize("task", ALL_TASKS, ids=lambda t: t.display_name)
def test_generators_are_deterministic_by_seed(task) -> None:
    a = task(n=300, seed=11)
    b = task(n=300, seed=11)
    c = task(n=300, seed=12)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


def test_generators_leave_the_global_rng_alone() -> None:
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    FirstTokenRepeatedOnce()(n=50, seed=1)
    assert torch.equal(torch.rand(3), expected)


def test_first_token_repeated_once_repeats_at_most_once() -> None:
    X, y = FirstTokenRepeatedOnce()(n=5000, seed=0)
    repeats = (X[:, 1:] == X[:, :1]).sum(dim=1)
    assert int(repeats.max()) == 1
    assert torch.equal(repeats, y)
    # the repeat is spread over all later positions, not always in the same place
    where = (X[:, 1:] == X[:, :1]).float().argmax(dim=1)[y == 1]
    assert set(where.tolist()) == set(range(S - 1))


def test_paper_examples() -> None:
    """Tab. 1 (S = 6) and Tab. 2 (S = 6, C = 3) of the paper."""
    t = lambda rows: torch.tensor(rows)
    assert ContainsTokenSet((1, 2, 3)).label(
        t([[1, 3, 4, 2, 5, 2], [1, 5, 9, 2, 2, 4]])
    ).tolist() == [1, 0]
    assert Contains1().label(t([[1, 3, 4, 2, 5, 2], [6, 5, 9, 2, 2, 4]])).tolist() == [
        1,
        0,
    ]
    assert FirstTokenRepeatedImmediately().label(
        t([[3, 3, 2, 6, 7, 8], [5, 3, 2, 6, 7, 8]])
    ).tolist() == [1, 0]
    assert FirstTokenRepeatedLast().label(
        t([[8, 3, 2, 6, 7, 8], [8, 3, 2, 6, 7, 4]])
    ).tolist() == [1, 0]
    assert AdjacentDuplicate().label(
        t([[1, 3, 6, 6, 7, 8], [1, 3, 6, 8, 7, 8]])
    ).tolist() == [1, 0]
    assert FirstTokenRepeatedOnce().label(
        t([[1, 3, 6, 1, 7, 8], [1, 3, 6, 7, 7, 8]])
    ).tolist() == [1, 0]
    table2 = [
        [1, 3, 4, 2, 5, 2],
        [1, 3, 4, 2, 3, 1],
        [1, 3, 4, 2, 1, 1],
        [1, 3, 1, 1, 5, 1],
        [1, 3, 1, 1, 1, 1],
        [1, 1, 1, 1, 1, 1],
    ]
    assert BinCountOnes(3).label(t(table2)).tolist() == [0, 0, 1, 1, 2, 2]
    # no 1 at all: the formula's -1 is class 0
    assert BinCountOnes(3).label(t([[2, 3, 4, 5, 6, 7]])).tolist() == [0]


def test_bin_count_ones_every_count_is_reachable() -> None:
    X, y = BinCountOnes(10)(n=2000, seed=0)
    counts = (X == 1).sum(dim=1)
    assert set(counts.tolist()) == set(range(0, S + 1))
    assert set(counts[y == 0].tolist()) == {0, 1}


def test_invalid_parameters_raise() -> None:
    with pytest.raises(ValueError):
        BinCountOnes(3)(n=10, seq_len=10)  # 3 does not divide 10
    with pytest.raises(ValueError):
        BinCountOnes(1)
    with pytest.raises(ValueError):
        ContainsTokenSet((1, 25))(n=10, vocab_size=20)
    with pytest.raises(ValueError):
        ContainsTokenSet(tuple(range(1, 12)))(n=10, seq_len=10)


def test_registry_and_get_task() -> None:
    assert set(TASKS) == {
        "ContainsTokenSet",
        "Contains1",
        "FirstTokenRepeatedImmediately",
        "FirstTokenRepeatedLast",
        "AdjacentDuplicate",
        "FirstTokenRepeatedOnce",
        "BinCountOnes",
    }
    for name, cls in TASKS.items():
        assert isinstance(get_task(name), cls)
    assert get_task("BinCountOnes(5)").num_classes == 5
    assert get_task("ContainsTokenSet(2,7)").tokens == (2, 7)
    with pytest.raises(KeyError, match="available"):
        get_task("Nope")


def test_split_is_70_10_20() -> None:
    X, y = Contains1()(n=1000, seed=0)
    parts = split(X, y)
    assert [len(p[1]) for p in parts] == [700, 100, 200]
    assert torch.equal(torch.cat([p[0] for p in parts]), X)
    shuffled = split(X, y, seed=1)
    assert sorted(torch.cat([p[1] for p in shuffled]).tolist()) == sorted(y.tolist())


def test_paper_bert_config() -> None:
    c = paper_bert_config(num_labels=3)
    assert (
        c.num_hidden_layers,
        c.hidden_size,
        c.num_attention_heads,
        c.intermediate_size,
    ) == (1, 16, 2, 32)
    assert (
        c.vocab_size == V + 1 and c.max_position_embeddings == S and c.num_labels == 3
    )
    assert c._attn_implementation == "eager"


def test_train_classifier_is_seeded_and_reads_the_first_position() -> None:
    kwargs = dict(n=400, max_epochs=1, eval_every=1000)
    a = train_classifier("FirstTokenRepeatedImmediately", seed=5, **kwargs)
    b = train_classifier("FirstTokenRepeatedImmediately", seed=5, **kwargs)
    assert 0.0 <= a.val_accuracy <= 1.0 and a.epochs == 1.0
    for (ka, va), (kb, vb) in zip(
        a.model.state_dict().items(), b.model.state_dict().items()
    ):
        assert ka == kb and torch.equal(va, vb), ka
    assert len(a.data["train"][1]) == 280 and len(a.data["val"][1]) == 40
    assert not a.model.training
    # the classifier reads the first position: the pooler selects token 0
    ids = a.data["val"][0][:4]
    hidden = a.model.bert(ids).last_hidden_state
    pooled = a.model.bert.pooler(hidden)
    assert torch.allclose(pooled, torch.tanh(a.model.bert.pooler.dense(hidden[:, 0])))


def test_cache_dir_respects_the_environment(monkeypatch, tmp_path) -> None:
    monkeypatch.delenv("CAPTUM_SEMIRING_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "captum-semiring"
    monkeypatch.setenv("CAPTUM_SEMIRING_CACHE", str(tmp_path / "mine"))
    assert cache_dir() == tmp_path / "mine"
    monkeypatch.delenv("CAPTUM_SEMIRING_CACHE")
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_dir().parts[-2:] == (".cache", "captum-semiring")


def test_write_cache_entry_round_trips_and_replaces(tmp_path) -> None:
    import json

    from transformers import BertConfig, BertForSequenceClassification

    from captum_semiring.reproductions.tasks.models import write_cache_entry

    config = tiny_bert_config(
        vocab_size=10,
        hidden_size=4,
        num_hidden_layers=1,
        num_attention_heads=1,
        intermediate_size=8,
    )
    entry = tmp_path / "entry"
    for seed in (0, 1):  # the second write replaces the first
        torch.manual_seed(seed)
        model = BertForSequenceClassification(config)
        write_cache_entry(
            entry, model, {"seed": seed}, lambda d: (d / "extra.txt").write_text("x")
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["entry"]  # no temp left
    assert json.loads((entry / "meta.json").read_text()) == {"seed": 1}
    assert (entry / "extra.txt").read_text() == "x"
    loaded = BertForSequenceClassification(
        BertConfig.from_dict(json.loads((entry / "config.json").read_text()))
    )
    loaded.load_state_dict(torch.load(entry / "state_dict.pt", weights_only=True))
    for (ka, va), (kb, vb) in zip(
        model.state_dict().items(), loaded.state_dict().items(), strict=True
    ):
        assert ka == kb and torch.equal(va, vb), ka
