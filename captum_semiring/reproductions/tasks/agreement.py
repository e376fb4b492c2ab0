"""Subject–verb number agreement from templates (sec. 5.2 of the paper), a word-level
tokenizer, the masked-LM corpus, and a small BERT trained on it.

The paper uses the sentences of Linzen et al. (2016) and pretrained BERT; neither can be
downloaded here, so sentences come from templates instead. A sentence has an optional
number-neutral prefix, a subject noun phrase, one to four *attractors* (nouns inside
prepositional phrases or relative clauses that follow the subject) and then the
present-tense verb whose number must agree with the subject, never with the nearest
noun:

    i think the key near the cabinets that the guards watched **is** on the table .

Relative clauses use past-tense verbs (``watched``), which are the same for both
numbers, so the masked verb is the only number-marked verb. Determiners and adjectives
are number-neutral too (``the``, ``my``, ``old``): only the nouns carry number.

:func:`agreement_model` trains a 4-layer ``BertForMaskedLM`` (hidden 64, 2 heads) from
scratch on such sentences with the verb masked (about 30 s on one core, then cached).
Its target, as in the paper, is the logit difference of the correct and the wrong verb
form at ``[MASK]``.

Examples::

    >>> from captum_semiring.reproductions.tasks.agreement import WordTokenizer, encode
    >>> from captum_semiring.reproductions.tasks.agreement import generate_sentences
    >>> s = generate_sentences(1, seed=3)[0]
    >>> len(s.attractor_indices) >= 1, s.words[s.verb_index] == s.correct_verb
    (True, True)
    >>> tok = WordTokenizer.default()
    >>> ex = encode(s, tok)
    >>> int(ex.ids[ex.mask_position]) == tok.mask_token_id
    True
"""

from __future__ import annotations

import json
import os
import random
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .determinism import deterministic

__all__ = [
    "NOUNS",
    "VERB_PAIRS",
    "SPECIAL_TOKENS",
    "AgreementSentence",
    "AgreementExample",
    "AgreementBatch",
    "WordTokenizer",
    "TrainedAgreementModel",
    "generate_sentences",
    "encode",
    "encode_all",
    "mlm_corpus",
    "training_sentences",
    "agreement_target",
    "batches",
    "agreement_bert_config",
    "train_agreement_model",
    "agreement_model",
    "evaluate",
    "save_hf_directory",
]

# --------------------------------------------------------------------------- templates

#: (singular, plural) nouns: subjects and attractors. Regular plurals only, so every
#: form is a single word-piece in BERT's uncased vocabulary for most of them.
NOUNS: tuple[tuple[str, str], ...] = (
    ("key", "keys"),
    ("author", "authors"),
    ("dog", "dogs"),
    ("teacher", "teachers"),
    ("car", "cars"),
    ("boy", "boys"),
    ("girl", "girls"),
    ("friend", "friends"),
    ("book", "books"),
    ("letter", "letters"),
    ("window", "windows"),
    ("student", "students"),
    ("doctor", "doctors"),
    ("farmer", "farmers"),
    ("bird", "birds"),
    ("house", "houses"),
    ("road", "roads"),
    ("table", "tables"),
    ("cabinet", "cabinets"),
    ("guard", "guards"),
    ("player", "players"),
    ("song", "songs"),
    ("picture", "pictures"),
    ("officer", "officers"),
)

#: (singular, plural) present-tense verb forms (and was/were), each with
#: number-neutral continuations.
VERB_PAIRS: tuple[tuple[str, str], ...] = (
    ("is", "are"),
    ("has", "have"),
    ("was", "were"),
    ("runs", "run"),
    ("likes", "like"),
    ("seems", "seem"),
    ("looks", "look"),
    ("sleeps", "sleep"),
)

_CONTINUATIONS: dict[str, tuple[tuple[str, ...], ...]] = {
    "is": (("here",), ("ready",), ("on", "the", "table"), ("very", "old")),
    "has": (("a", "problem"), ("no", "name"), ("a", "plan")),
    "was": (("here",), ("late",), ("on", "the", "table")),
    "runs": (("fast",), ("away",), ("every", "day")),
    "likes": (("music",), ("the", "garden")),
    "seems": (("happy",), ("tired",), ("fine",)),
    "looks": (("old",), ("nice",), ("great",)),
    "sleeps": (("well",), ("outside",), ("at", "night")),
}
_PREPOSITIONS = ("near", "behind", "beside", "of", "with", "from", "under", "above")
_RC_VERBS = ("liked", "saw", "found", "watched", "helped", "knew")
_DETERMINERS = ("the", "the", "the", "my", "our", "his", "her")
_ADJECTIVES = ("old", "new", "small", "big", "red", "young")
_PREFIXES: tuple[tuple[str, ...], ...] = (
    (),
    (),
    ("i", "think"),
    ("i", "know", "that"),
    ("maybe",),
    ("perhaps",),
    ("of", "course", ","),
)

#: Special tokens of :class:`WordTokenizer`, with ids 0..4 in this order.
SPECIAL_TOKENS = ("[PAD]", "[CLS]", "[SEP]", "[MASK]", "[UNK]")


@dataclass(frozen=True)
class AgreementSentence:
    """One template sentence, with the verb in its correct form.

    Attributes:
        words: the words, the verb included (its correct form).
        verb_index: index of the verb in ``words``.
        subject_index: index of the subject noun.
        attractor_indices: indices of the nouns between subject and verb.
        subject_plural: the subject's number.
        attractor_plural: each attractor's number.
        verb_pair: the verb's ``(singular, plural)`` forms.
    """

    words: tuple[str, ...]
    verb_index: int
    subject_index: int
    attractor_indices: tuple[int, ...]
    subject_plural: bool
    attractor_plural: tuple[bool, ...]
    verb_pair: tuple[str, str]

    @property
    def correct_verb(self) -> str:
        return self.verb_pair[int(self.subject_plural)]

    @property
    def wrong_verb(self) -> str:
        return self.verb_pair[1 - int(self.subject_plural)]

    @property
    def n_attractors(self) -> int:
        """Number of nouns between subject and verb."""
        return len(self.attractor_indices)

    @property
    def n_mismatched(self) -> int:
        """Attractors whose number differs from the subject's (Linzen et al.'s
        definition of an attractor)."""
        return sum(p != self.subject_plural for p in self.attractor_plural)

    def masked_words(self, mask: str = "[MASK]") -> tuple[str, ...]:
        """The words with the verb replaced by ``mask``."""
        w = list(self.words)
        w[self.verb_index] = mask
        return tuple(w)

    @property
    def text(self) -> str:
        return " ".join(self.words)


def _noun_phrase(rng: random.Random, noun: str) -> list[str]:
    np_ = [rng.choice(_DETERMINERS)]
    if rng.random() < 0.25:
        np_.append(rng.choice(_ADJECTIVES))
    return [*np_, noun]


def generate_sentences(
    n: int,
    seed: int = 0,
    max_attractors: int = 4,
    p_all_mismatched: float = 0.75,
    min_attractors: int = 1,
) -> list[AgreementSentence]:
    """``n`` seeded agreement sentences, balanced over 1..``max_attractors``
    attractors.

    Sentence ``i`` has ``1 + i % max_attractors`` attractors. With probability
    ``p_all_mismatched`` every attractor has the number opposite to the subject's;
    otherwise each attractor's number is drawn at random (so some agree with it).
    Each attractor sits in a prepositional phrase (``near the cabinets``), an object
    relative clause (``that the guards watched``) or a subject relative clause
    (``that watched the guards``).

    Args:
        n: number of sentences.
        seed: the seed; equal seeds give equal sentences.
        max_attractors: the most attractors in a sentence.
        p_all_mismatched: the probability that all attractors disagree with the
            subject.

    Returns:
        A list of :class:`AgreementSentence`.

    Examples::

        >>> from captum_semiring.reproductions.tasks.agreement import generate_sentences
        >>> a = generate_sentences(8, seed=1)
        >>> a == generate_sentences(8, seed=1)
        True
        >>> [s.n_attractors for s in a]
        [1, 2, 3, 4, 1, 2, 3, 4]
    """
    if not 0 <= min_attractors <= max_attractors:
        raise ValueError(
            f"need 0 <= min_attractors <= max_attractors, got {min_attractors}, "
            f"{max_attractors}"
        )
    rng = random.Random(seed)
    out = []
    for i in range(n):
        k = min_attractors + i % (max_attractors - min_attractors + 1)
        subject_plural = rng.random() < 0.5
        if rng.random() < p_all_mismatched:
            att_plural = [not subject_plural] * k
        else:
            att_plural = [rng.random() < 0.5 for _ in range(k)]
        words: list[str] = list(rng.choice(_PREFIXES))
        subject = rng.choice(NOUNS)
        words += _noun_phrase(rng, subject[int(subject_plural)])
        subject_index = len(words) - 1
        attractors = []
        for plural in att_plural:
            # an attractor noun other than the subject's, so the two never coincide
            noun = rng.choice([p for p in NOUNS if p != subject])[int(plural)]
            kind = rng.random()
            if kind < 0.5:  # prepositional phrase
                words += [rng.choice(_PREPOSITIONS), *_noun_phrase(rng, noun)]
                attractors.append(len(words) - 1)
            elif kind < 0.75:  # object relative clause: "that the guards watched"
                words += ["that", *_noun_phrase(rng, noun)]
                attractors.append(len(words) - 1)
                words.append(rng.choice(_RC_VERBS))
            else:  # subject relative clause: "that watched the guards"
                words += ["that", rng.choice(_RC_VERBS), *_noun_phrase(rng, noun)]
                attractors.append(len(words) - 1)
        pair = rng.choice(VERB_PAIRS)
        verb_index = len(words)
        words.append(pair[int(subject_plural)])
        words += [*rng.choice(_CONTINUATIONS[pair[0]]), "."]
        out.append(
            AgreementSentence(
                words=tuple(words),
                verb_index=verb_index,
                subject_index=subject_index,
                attractor_indices=tuple(attractors),
                subject_plural=subject_plural,
                attractor_plural=tuple(att_plural),
                verb_pair=pair,
            )
        )
    return out


def _all_words() -> list[str]:
    words: set[str] = set()
    for pair in (*NOUNS, *VERB_PAIRS):
        words.update(pair)
    for conts in _CONTINUATIONS.values():
        for cont in conts:
            words.update(cont)
    for group in (_PREPOSITIONS, _RC_VERBS, _DETERMINERS, _ADJECTIVES):
        words.update(group)
    for prefix in _PREFIXES:
        words.update(prefix)
    words.update(("that", "."))
    return sorted(words)


# --------------------------------------------------------------------------- tokenizer


class WordTokenizer:
    """A word-level tokenizer: one id per word, :data:`SPECIAL_TOKENS` first.

    Args:
        words: the non-special words, in id order (ids start after the specials).

    Examples::

        >>> from captum_semiring.reproductions.tasks.agreement import WordTokenizer
        >>> tok = WordTokenizer(["the", "dog", "runs"])
        >>> tok.encode("the dog runs".split())
        [1, 5, 6, 7, 2]
        >>> tok.decode([1, 5, 6, 3, 2])
        ['[CLS]', 'the', 'dog', '[MASK]', '[SEP]']
        >>> tok.encode(["a", "cat"], add_special_tokens=False)
        [4, 4]
    """

    def __init__(self, words: Iterable[str]) -> None:
        self.vocab: list[str] = list(SPECIAL_TOKENS)
        for w in words:
            if w in SPECIAL_TOKENS:
                continue
            self.vocab.append(w)
        self.ids: dict[str, int] = {w: i for i, w in enumerate(self.vocab)}
        if len(self.ids) != len(self.vocab):
            raise ValueError("duplicate words in the vocabulary")
        (
            self.pad_token_id,
            self.cls_token_id,
            self.sep_token_id,
            self.mask_token_id,
            self.unk_token_id,
        ) = range(5)
        self.mask_token = "[MASK]"

    @classmethod
    def default(cls) -> WordTokenizer:
        """The vocabulary of every word the templates use."""
        return cls(_all_words())

    def __len__(self) -> int:
        return len(self.vocab)

    def token_id(self, word: str) -> int:
        """The id of ``word`` (``[UNK]``'s for an unknown word)."""
        return self.ids.get(word, self.unk_token_id)

    def word_ids(self, word: str) -> list[int]:
        """The ids of one word: always exactly one here."""
        return [self.token_id(word)]

    def encode(
        self, words: Sequence[str], add_special_tokens: bool = True
    ) -> list[int]:
        """Ids of ``words``, between ``[CLS]`` and ``[SEP]`` by default."""
        ids = [self.token_id(w) for w in words]
        if add_special_tokens:
            ids = [self.cls_token_id, *ids, self.sep_token_id]
        return ids

    def decode(self, ids: Iterable[int]) -> list[str]:
        """The words of ``ids``."""
        return [self.vocab[int(i)] for i in ids]

    def save_vocabulary(self, directory: str | os.PathLike[str]) -> Path:
        """Write ``vocab.txt`` (one token a line, in id order), the file format of
        ``BertTokenizerFast``."""
        path = Path(directory) / "vocab.txt"
        path.write_text("\n".join(self.vocab) + "\n", encoding="utf-8")
        return path

    def to_hf(self) -> Any:
        """The same vocabulary as a Hugging Face fast BERT tokenizer (word-piece with
        no sub-word pieces): every word of the vocabulary is one token, anything
        else is ``[UNK]``.

        Examples::

            >>> from captum_semiring.reproductions.tasks.agreement import WordTokenizer
            >>> tok = WordTokenizer.default()
            >>> hf = tok.to_hf()
            >>> hf("the keys [MASK] here .")["input_ids"] == tok.encode(
            ...     "the keys [MASK] here .".split())
            True
        """
        import inspect

        import transformers

        kwargs: dict[str, Any] = dict(
            do_lower_case=True, tokenize_chinese_chars=False, model_max_length=512
        )
        bert = transformers.BertTokenizer
        if "vocab" in inspect.signature(bert.__init__).parameters:
            # transformers >= 5: BertTokenizer is the fast one and takes the dict
            return bert(vocab=dict(self.ids), **kwargs)
        with tempfile.TemporaryDirectory() as tmp:  # transformers 4
            fast = getattr(transformers, "BertTokenizerFast")  # noqa: B009
            return fast(vocab_file=str(self.save_vocabulary(tmp)), **kwargs)


# --------------------------------------------------------------------------- examples


@dataclass
class AgreementExample:
    """One sentence, encoded, with the verb masked.

    Attributes:
        ids: token ids, shape ``(seq,)``, with ``[CLS]``/``[SEP]`` (or the
            tokenizer's own special tokens) and the verb replaced by the mask token.
        mask_position: position of the mask token.
        subject_position: position of the subject noun's token.
        attractor_positions: positions of the attractor nouns' tokens.
        mismatched: per attractor, whether its number differs from the subject's.
        correct_id, wrong_id: ids of the correct and the wrong verb form.
        sentence: the template sentence.
    """

    ids: Tensor
    mask_position: int
    subject_position: int
    attractor_positions: tuple[int, ...]
    mismatched: tuple[bool, ...]
    correct_id: int
    wrong_id: int
    sentence: AgreementSentence

    @property
    def n_attractors(self) -> int:
        return len(self.attractor_positions)

    def metadata(self) -> dict[str, Any]:
        """Everything but the tensor, JSON-ready."""
        return {
            "text": self.sentence.text,
            "mask_position": self.mask_position,
            "subject_position": self.subject_position,
            "attractor_positions": list(self.attractor_positions),
            "mismatched": list(self.mismatched),
            "n_attractors": self.n_attractors,
            "correct": self.sentence.correct_verb,
            "wrong": self.sentence.wrong_verb,
            "correct_id": self.correct_id,
            "wrong_id": self.wrong_id,
        }


def _word_pieces(tokenizer: Any, word: str) -> list[int]:
    if isinstance(tokenizer, WordTokenizer):
        return tokenizer.word_ids(word)
    pieces = tokenizer.tokenize(word)
    return [int(i) for i in tokenizer.convert_tokens_to_ids(pieces)]


def encode(sentence: AgreementSentence, tokenizer: Any) -> AgreementExample | None:
    """Encode ``sentence`` with the verb masked, word by word, so that token
    positions of the subject and the attractors are known.

    Works with :class:`WordTokenizer` and with Hugging Face tokenizers (word-piece or
    other; ``[CLS]``/``[SEP]`` come from ``cls_token_id``/``sep_token_id``, else
    ``bos``/``eos``). As in the paper, a sentence whose subject, attractors or verb
    forms are not single tokens is skipped.

    Returns:
        An :class:`AgreementExample`, or None if the sentence was skipped.
    """
    if isinstance(tokenizer, WordTokenizer):
        unk: int | None = tokenizer.unk_token_id
    else:
        unk = getattr(tokenizer, "unk_token_id", None)
    mask_id = getattr(tokenizer, "mask_token_id", None)
    if mask_id is None:
        raise ValueError("the tokenizer has no mask token; fig4 needs a masked LM")
    verbs = [_word_pieces(tokenizer, v) for v in sentence.verb_pair]
    if any(len(v) != 1 or v[0] == unk for v in verbs):
        return None
    cls_id = getattr(tokenizer, "cls_token_id", None)
    if cls_id is None:
        cls_id = getattr(tokenizer, "bos_token_id", None)
    sep_id = getattr(tokenizer, "sep_token_id", None)
    if sep_id is None:
        sep_id = getattr(tokenizer, "eos_token_id", None)
    ids: list[int] = [int(cls_id)] if cls_id is not None else []
    word_pos: dict[int, int] = {}
    nouns = {sentence.subject_index, *sentence.attractor_indices}
    for i, word in enumerate(sentence.words):
        if i == sentence.verb_index:
            word_pos[i] = len(ids)
            ids.append(int(mask_id))
            continue
        pieces = _word_pieces(tokenizer, word)
        if i in nouns and (len(pieces) != 1 or pieces[0] == unk):
            return None
        word_pos[i] = len(ids)
        ids += pieces
    if sep_id is not None:
        ids.append(int(sep_id))
    plural = sentence.subject_plural
    return AgreementExample(
        ids=torch.tensor(ids, dtype=torch.long),
        mask_position=word_pos[sentence.verb_index],
        subject_position=word_pos[sentence.subject_index],
        attractor_positions=tuple(word_pos[i] for i in sentence.attractor_indices),
        mismatched=tuple(p != plural for p in sentence.attractor_plural),
        correct_id=verbs[int(plural)][0],
        wrong_id=verbs[1 - int(plural)][0],
        sentence=sentence,
    )


def encode_all(
    sentences: Iterable[AgreementSentence], tokenizer: Any
) -> list[AgreementExample]:
    """:func:`encode` every sentence, dropping the skipped ones."""
    out = []
    for s in sentences:
        ex = encode(s, tokenizer)
        if ex is not None:
            out.append(ex)
    return out


def agreement_target(
    mask_positions: Sequence[int] | Tensor,
    correct_ids: Sequence[int] | Tensor,
    wrong_ids: Sequence[int] | Tensor,
) -> Callable[[Tensor], Tensor]:
    """The paper's target: ``logit(correct) − logit(wrong)`` at each example's mask.

    Args:
        mask_positions, correct_ids, wrong_ids: one entry per example of the batch.

    Returns:
        A function from MLM logits ``(batch, seq, vocab)`` to one value per example,
        ``(batch,)``.

    Examples::

        >>> import torch
        >>> from captum_semiring.reproductions.tasks.agreement import agreement_target
        >>> f = agreement_target([1, 0], [2, 0], [0, 1])
        >>> logits = torch.arange(2 * 2 * 3.0).reshape(2, 2, 3)
        >>> f(logits)   # [5 - 3, 6 - 7]
        tensor([ 2., -1.])
    """
    pos = torch.as_tensor(mask_positions, dtype=torch.long)
    good = torch.as_tensor(correct_ids, dtype=torch.long)
    bad = torch.as_tensor(wrong_ids, dtype=torch.long)

    def target(logits: Tensor) -> Tensor:
        rows = torch.arange(logits.shape[0])
        at_mask = logits[rows, pos]  # (batch, vocab)
        return (
            at_mask.gather(1, good[:, None])[:, 0]
            - at_mask.gather(1, bad[:, None])[:, 0]
        )

    return target


@dataclass
class AgreementBatch:
    """Encoded examples stacked into one batch, padded on the right where their
    lengths differ. Padding is masked out of attention, so examples never mix and
    each example's target is the same as on its own.

    Attributes:
        ids: ``(batch, seq)`` token ids.
        attention_mask: ``(batch, seq)``, 1 at real tokens and 0 at padding.
        examples: the examples, in row order.
        target: logits ``(batch, seq, vocab)`` → ``(batch,)``, see
            :func:`agreement_target`.
    """

    ids: Tensor
    attention_mask: Tensor
    examples: list[AgreementExample]
    target: Callable[[Tensor], Tensor]

    def forward_func(self, model: Any) -> Callable[..., Tensor]:
        """``f(ids, attention_mask=None) -> (batch,)``: ``model``'s target values.

        Without ``attention_mask`` it uses this batch's, repeated when ``ids`` stacks
        several copies of the batch (as Captum's ``n_steps`` expansion does).
        """

        def f(ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
            if attention_mask is None:
                reps = max(1, ids.shape[0] // self.ids.shape[0])
                attention_mask = self.attention_mask.repeat(reps, 1)
            logits = model(input_ids=ids, attention_mask=attention_mask).logits
            reps = max(1, logits.shape[0] // self.ids.shape[0])
            if reps == 1:
                return self.target(logits)
            parts = logits.reshape(reps, self.ids.shape[0], *logits.shape[1:])
            return torch.cat([self.target(p) for p in parts])

        return f

    def subject_mask(self) -> Tensor:
        """``(batch, seq)``: True at each example's subject."""
        m = torch.zeros_like(self.ids, dtype=torch.bool)
        for b, ex in enumerate(self.examples):
            m[b, ex.subject_position] = True
        return m

    def attractor_mask(self, mismatched_only: bool = True) -> Tensor:
        """``(batch, seq)``: True at each example's attractors (by default only those
        that disagree with the subject in number, Linzen et al.'s attractors)."""
        m = torch.zeros_like(self.ids, dtype=torch.bool)
        for b, ex in enumerate(self.examples):
            for p, mis in zip(ex.attractor_positions, ex.mismatched):
                if mis or not mismatched_only:
                    m[b, p] = True
        return m


def batches(
    examples: Sequence[AgreementExample],
    batch_size: int = 64,
    pad: bool = True,
    pad_id: int = 0,
) -> Iterator[AgreementBatch]:
    """Stack ``examples`` into :class:`AgreementBatch` es of at most ``batch_size``.

    With ``pad`` (the default) examples are sorted by length and each batch is padded
    to its longest (few, full batches: fast sweeps). Without, each batch holds
    examples of one length only (no padding at all).

    Examples::

        >>> from captum_semiring.reproductions.tasks.agreement import *
        >>> tok = WordTokenizer.default()
        >>> exs = encode_all(generate_sentences(10), tok)
        >>> [b.ids.shape[0] for b in batches(exs, batch_size=4)]
        [4, 4, 2]
        >>> sum(len(b.examples) for b in batches(exs, pad=False)) == len(exs)
        True
    """
    groups: list[list[AgreementExample]] = []
    if pad:
        ordered = sorted(examples, key=lambda ex: int(ex.ids.numel()))
        groups = [
            list(ordered[i : i + batch_size])
            for i in range(0, len(ordered), batch_size)
        ]
    else:
        by_len: dict[int, list[AgreementExample]] = {}
        for ex in examples:
            by_len.setdefault(int(ex.ids.numel()), []).append(ex)
        for group in by_len.values():
            groups += [
                group[i : i + batch_size] for i in range(0, len(group), batch_size)
            ]
    for chunk in groups:
        width = max(int(ex.ids.numel()) for ex in chunk)
        ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for b, ex in enumerate(chunk):
            ids[b, : ex.ids.numel()] = ex.ids
            mask[b, : ex.ids.numel()] = 1
        yield AgreementBatch(
            ids=ids,
            attention_mask=mask,
            examples=chunk,
            target=agreement_target(
                [ex.mask_position for ex in chunk],
                [ex.correct_id for ex in chunk],
                [ex.wrong_id for ex in chunk],
            ),
        )


def mlm_corpus(
    examples: Sequence[AgreementExample],
    subject_mask_prob: float = 0.5,
    extra_mask_prob: float = 0.0,
    pad_id: int = 0,
    mask_id: int = 3,
    special_ids: Iterable[int] = (0, 1, 2),
    seed: int = 0,
) -> tuple[Tensor, Tensor, Tensor]:
    """The masked-LM training tensors.

    Each sentence is used once, with either the verb masked (label: its correct
    form) or, with probability ``subject_mask_prob``, the verb shown and the subject
    masked instead (label: the subject noun). Predicting the subject's number from
    the verb is the same dependency seen from the other end; without it, a small
    model trained from scratch takes many times longer to leave the plateau where it
    guesses the number. With ``extra_mask_prob`` other non-special tokens are masked
    too.

    Args:
        examples: encoded sentences (:func:`encode`), with the verb masked.
        subject_mask_prob: probability of masking the subject instead of the verb.
        extra_mask_prob: probability of masking each other non-special token.
        pad_id, mask_id, special_ids: the tokenizer's ids.
        seed: the seed of the choices.

    Returns:
        ``(input_ids, attention_mask, labels)``, padded to the longest example;
        ``labels`` is -100 wherever no loss is taken.

    Examples::

        >>> from captum_semiring.reproductions.tasks.agreement import *
        >>> tok = WordTokenizer.default()
        >>> exs = encode_all(generate_sentences(4), tok)
        >>> ids, attn, labels = mlm_corpus(exs, subject_mask_prob=0.0)
        >>> [tok.vocab[int(labels[i, e.mask_position])] == e.sentence.correct_verb
        ...  for i, e in enumerate(exs)]
        [True, True, True, True]
    """
    L = max(int(ex.ids.numel()) for ex in examples)
    n = len(examples)
    ids = torch.full((n, L), pad_id, dtype=torch.long)
    attn = torch.zeros((n, L), dtype=torch.long)
    labels = torch.full((n, L), -100, dtype=torch.long)
    gen = torch.Generator().manual_seed(seed)
    special = torch.tensor(sorted(set(special_ids)), dtype=torch.long)
    for i, ex in enumerate(examples):
        m = int(ex.ids.numel())
        ids[i, :m] = ex.ids
        attn[i, :m] = 1
        if float(torch.rand((), generator=gen)) < subject_mask_prob:
            ids[i, ex.mask_position] = ex.correct_id
            labels[i, ex.subject_position] = ex.ids[ex.subject_position]
            ids[i, ex.subject_position] = mask_id
        else:
            labels[i, ex.mask_position] = ex.correct_id
        if extra_mask_prob > 0:
            row = ids[i, :m]
            pick = (torch.rand(m, generator=gen) < extra_mask_prob) & ~torch.isin(
                row, special
            )
            pick &= labels[i, :m] == -100
            labels[i, :m][pick] = row[pick]
            ids[i, :m][pick] = mask_id
    return ids, attn, labels


# --------------------------------------------------------------------------- model

# Bump when the recipe (templates, vocabulary, config, training) changes: it names the
# cache entry.
AGREEMENT_MODEL_VERSION = 2
N_TRAIN = 12_000
N_EVAL = 400  # 100 per number of attractors


def agreement_bert_config(vocab_size: int, **overrides: Any) -> Any:
    """The ``BertConfig`` of the agreement model: 4 layers, hidden 64, 2 heads,
    intermediate 128, 64 positions, eager attention, no dropout.

    Args:
        vocab_size: the tokenizer's vocabulary size.
        overrides: any other ``BertConfig`` field.
    """
    from transformers import BertConfig

    kwargs: dict[str, Any] = dict(
        vocab_size=vocab_size,
        hidden_size=64,
        num_hidden_layers=4,
        num_attention_heads=2,
        intermediate_size=128,
        max_position_embeddings=64,
        type_vocab_size=1,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        pad_token_id=0,
    )
    kwargs.update(overrides)
    config = BertConfig(**kwargs)
    config._attn_implementation = kwargs.get("attn_implementation", "eager")
    return config


@torch.no_grad()
def evaluate(
    model: Any, examples: Sequence[AgreementExample], batch_size: int = 256
) -> dict[str, Any]:
    """Agreement accuracy: the share of examples whose target
    (``logit(correct) − logit(wrong)``) is positive, overall and by number of
    attractors.

    Returns:
        ``{"accuracy": float, "n": int, "by_attractors": {k: {"accuracy", "n"}},
        "by_mismatched": {k: {"accuracy", "n"}}}``.
    """
    was_training = model.training
    model.eval()
    right: dict[str, dict[int, list[bool]]] = {"by_attractors": {}, "by_mismatched": {}}
    total: list[bool] = []
    for batch in batches(examples, batch_size):
        values = batch.forward_func(model)(batch.ids)
        for ex, v in zip(batch.examples, values.tolist()):
            ok = v > 0
            total.append(ok)
            right["by_attractors"].setdefault(ex.n_attractors, []).append(ok)
            right["by_mismatched"].setdefault(sum(ex.mismatched), []).append(ok)
    model.train(was_training)
    result: dict[str, Any] = {
        "accuracy": sum(total) / max(len(total), 1),
        "n": len(total),
    }
    for key, groups in right.items():
        result[key] = {
            k: {"accuracy": sum(v) / len(v), "n": len(v)}
            for k, v in sorted(groups.items())
        }
    return result


@dataclass
class TrainedAgreementModel:
    """The agreement ``BertForMaskedLM`` with its tokenizer and held-out sentences.

    Attributes:
        model: the ``BertForMaskedLM``, in eval mode.
        tokenizer: the :class:`WordTokenizer`.
        examples: held-out evaluation examples (:data:`N_EVAL`, balanced over 1..4
            attractors; regenerated from the seed on load).
        accuracy: the evaluation accuracy (see :func:`evaluate`).
        accuracy_by_attractors: accuracy per number of attractors.
        seconds: training wall time (0 when loaded from the cache).
        steps: optimizer steps.
        seed: the seed of data, initialization and batch order.
    """

    model: Any
    tokenizer: WordTokenizer
    examples: list[AgreementExample] = field(repr=False)
    accuracy: float
    accuracy_by_attractors: dict[int, float]
    seconds: float
    steps: int
    seed: int
    train_loss: float = float("nan")

    def batches(
        self, max_sentences: int | None = None, batch_size: int = 64, pad: bool = True
    ) -> list[AgreementBatch]:
        """The evaluation examples (the first ``max_sentences``) as
        :class:`AgreementBatch` es (see :func:`batches`)."""
        exs = self.examples[:max_sentences] if max_sentences else self.examples
        return list(batches(exs, batch_size, pad=pad))

    def metadata(self) -> dict[str, Any]:
        return {
            "accuracy": self.accuracy,
            "accuracy_by_attractors": {
                str(k): v for k, v in self.accuracy_by_attractors.items()
            },
            "steps": self.steps,
            "seed": self.seed,
            "train_seconds": self.seconds,
            "train_loss": self.train_loss,
        }


def _eval_sentences(seed: int, n: int = N_EVAL) -> list[AgreementSentence]:
    # a seed stream disjoint from training's, so held-out sentences are new draws
    return generate_sentences(n, seed=10_000 + seed)


def training_sentences(seed: int = 0, n: int = N_TRAIN) -> list[AgreementSentence]:
    """The training sentences of :func:`train_agreement_model`: ``n`` with 1..4
    attractors, all mismatched in only 30% of them (a natural corpus has many
    attractors that agree), plus ``n // 3`` without attractors. Disjoint from the
    held-out sentences by construction (another seed) and by filtering."""
    sents = generate_sentences(
        n // 3, seed=seed + 1, min_attractors=0, max_attractors=0
    )
    sents += generate_sentences(n, seed=seed, p_all_mismatched=0.3)
    held_out = {s.words for s in _eval_sentences(seed)}
    return [s for s in sents if s.words not in held_out]


def train_agreement_model(
    seed: int = 0,
    n_train: int = N_TRAIN,
    steps: int = 800,
    batch_size: int = 32,
    lr: float = 1e-3,
    subject_mask_prob: float = 0.5,
    extra_mask_prob: float = 0.0,
    threads: int | None = 1,
    verbose: bool = False,
    **config_overrides: Any,
) -> TrainedAgreementModel:
    """Train the agreement ``BertForMaskedLM`` from scratch.

    Adam at ``lr`` (warm-up over the first 5% of the steps, linear decay to 10% over
    the last 30%), ``steps`` mini-batches of ``batch_size`` sentences drawn at
    random, cross-entropy at the masked tokens (see :func:`mlm_corpus`). Data,
    initialization and batch order are seeded by ``seed``; kernels are
    deterministic and the thread count is fixed during training.

    Args:
        seed: the seed of everything.
        n_train: training sentences with attractors (see :func:`training_sentences`).
        steps: optimizer steps.
        batch_size: sentences per step.
        lr: peak learning rate.
        subject_mask_prob, extra_mask_prob: see :func:`mlm_corpus`.
        threads: torch threads during training (restored afterwards).
        verbose: print the loss and held-out accuracy every 200 steps.
        config_overrides: ``BertConfig`` fields (e.g. ``num_hidden_layers=2``).

    Returns:
        A :class:`TrainedAgreementModel` in eval mode.
    """
    from transformers import BertForMaskedLM

    tokenizer = WordTokenizer.default()
    ids, attn, labels = mlm_corpus(
        encode_all(training_sentences(seed, n_train), tokenizer),
        subject_mask_prob=subject_mask_prob,
        extra_mask_prob=extra_mask_prob,
        pad_id=tokenizer.pad_token_id,
        mask_id=tokenizer.mask_token_id,
        special_ids=(
            tokenizer.pad_token_id,
            tokenizer.cls_token_id,
            tokenizer.sep_token_id,
        ),
        seed=seed,
    )
    held_out = encode_all(_eval_sentences(seed), tokenizer)
    config = agreement_bert_config(len(tokenizer), **config_overrides)
    warm, decay = max(1, steps // 20), max(1, (3 * steps) // 10)

    def schedule(step: int) -> float:
        return min((step + 1) / warm, 1.0, 0.1 + 0.9 * (steps - step) / decay)

    start = time.perf_counter()
    with deterministic(threads):
        torch.manual_seed(seed)
        model = BertForMaskedLM(config)
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
        gen = torch.Generator().manual_seed(seed + 1)
        model.train()
        loss_avg = float("nan")
        for step in range(steps):
            idx = torch.randint(len(ids), (batch_size,), generator=gen)
            # drop the padding columns of this batch: shorter sequences are faster
            width = int(attn[idx].sum(1).max())
            out = model(
                input_ids=ids[idx, :width],
                attention_mask=attn[idx, :width],
                labels=labels[idx, :width],
            )
            opt.zero_grad(set_to_none=True)
            out.loss.backward()
            opt.step()
            sched.step()
            loss = float(out.loss.detach())
            loss_avg = loss if step == 0 else 0.97 * loss_avg + 0.03 * loss
            if verbose and (step + 1) % 200 == 0:
                acc = evaluate(model, held_out)["accuracy"]
                print(
                    f"  step {step + 1}/{steps}: loss {loss_avg:.3f}, "
                    f"held-out accuracy {acc:.3f}",
                    flush=True,
                )
        model.eval()
        result = evaluate(model, held_out)
    seconds = time.perf_counter() - start
    return TrainedAgreementModel(
        model=model,
        tokenizer=tokenizer,
        examples=held_out,
        accuracy=result["accuracy"],
        accuracy_by_attractors={
            k: v["accuracy"] for k, v in result["by_attractors"].items()
        },
        seconds=seconds,
        steps=steps,
        seed=seed,
        train_loss=loss_avg,
    )


def _entry(seed: int) -> Path:
    from .models import cache_dir

    return cache_dir() / f"agreement-bert-v{AGREEMENT_MODEL_VERSION}-seed{seed}"


def _load(entry: Path, seed: int) -> TrainedAgreementModel:
    from transformers import BertConfig, BertForMaskedLM

    meta = json.loads((entry / "meta.json").read_text())
    config = BertConfig.from_dict(json.loads((entry / "config.json").read_text()))
    config._attn_implementation = "eager"
    model = BertForMaskedLM(config)
    model.load_state_dict(torch.load(entry / "state_dict.pt", weights_only=True))
    model.eval()
    words = (entry / "vocab.txt").read_text(encoding="utf-8").splitlines()
    tokenizer = WordTokenizer(words[len(SPECIAL_TOKENS) :])
    if tokenizer.vocab != words:
        raise ValueError("stale vocabulary")
    return TrainedAgreementModel(
        model=model,
        tokenizer=tokenizer,
        examples=encode_all(_eval_sentences(seed), tokenizer),
        accuracy=meta["accuracy"],
        accuracy_by_attractors={
            int(k): v for k, v in meta["accuracy_by_attractors"].items()
        },
        seconds=0.0,
        steps=meta["steps"],
        seed=seed,
        train_loss=meta.get("train_loss") or float("nan"),
    )


def agreement_model(
    seed: int = 0, retrain: bool = False, verbose: bool = False
) -> TrainedAgreementModel:
    """The trained agreement model of ``reproduce fig4``, cached.

    The first call trains it (:func:`train_agreement_model` with its defaults, about
    30 s on one core) and caches the weights, the config, the vocabulary and the
    scores in :func:`~captum_semiring.reproductions.tasks.models.cache_dir`; later calls load the
    cache. Writes are atomic, so concurrent first calls are safe.

    Args:
        seed: the seed of data, initialization and batch order.
        retrain: train again even if a cache entry exists.
        verbose: print progress.

    Returns:
        A :class:`TrainedAgreementModel`.

    Examples::

        >>> from captum_semiring.reproductions.tasks.agreement import agreement_model
        >>> trained = agreement_model()       # trains once, then cached
        >>> trained.accuracy > 0.8
        True
        >>> batch = trained.batches(max_sentences=4)[0]
        >>> batch.forward_func(trained.model)(batch.ids).shape[0] == len(batch.examples)
        True
    """
    from .models import write_cache_entry

    entry = _entry(seed)
    if not retrain and (entry / "meta.json").exists():
        try:
            return _load(entry, seed)
        except Exception:  # a corrupt or stale cache entry: train again
            pass
    if verbose:
        print("training the agreement model (first use only) ...", flush=True)
    trained = train_agreement_model(seed=seed, verbose=verbose)
    write_cache_entry(
        entry, trained.model, trained.metadata(), trained.tokenizer.save_vocabulary
    )
    if verbose:
        by = ", ".join(
            f"{k}: {v:.3f}" for k, v in trained.accuracy_by_attractors.items()
        )
        print(
            f"trained in {trained.seconds:.1f} s; held-out accuracy "
            f"{trained.accuracy:.3f} (by attractors {by}); cached in {entry}",
            flush=True,
        )
    return trained


def save_hf_directory(
    model: Any,
    directory: str | os.PathLike[str],
    tokenizer: WordTokenizer | None = None,
) -> Path:
    """Save a model with a fast BERT tokenizer of its vocabulary as a Hugging Face
    directory, loadable with ``AutoModelForMaskedLM``/``AutoTokenizer`` (and by
    ``reproduce fig4 --hf-model DIR``).

    Args:
        model: a :class:`TrainedAgreementModel`, or a ``BertForMaskedLM`` over
            ``tokenizer``'s vocabulary.
        directory: where to write (created if missing).
        tokenizer: the vocabulary; default: the trained model's, else
            :meth:`WordTokenizer.default`.

    Returns:
        The directory.
    """
    from transformers.utils import logging as hf_logging

    if isinstance(model, TrainedAgreementModel):
        tokenizer = tokenizer or model.tokenizer
        model = model.model
    tokenizer = tokenizer or WordTokenizer.default()
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    bar = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # no "Writing model shards" bar
    try:
        model.save_pretrained(path)
    finally:
        if bar:
            hf_logging.enable_progress_bar()
    tokenizer.to_hf().save_pretrained(path)
    return path
