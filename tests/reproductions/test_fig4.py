"""Subject–verb agreement (sec. 5.2 / Fig. 4): templates, tokenizer, target, the branch
flow analysis and ``reproduce fig4``.

Agreement is checked with English morphology, independently of the generator's own
tables: the templates use regular nouns only (plural = ends in "s") and third-person
verbs (singular = ends in "s": is, has, was, runs, ...). The trained model is the
cached one (trained once, ~30 s); the other models are tiny and random.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

import captum_semiring as cs
from captum_semiring.analysis.branch_flow import TRANSFORMER_BRANCHES
from captum_semiring.cli import main
from captum_semiring.reproductions.fig4 import (
    AGGREGATIONS,
    CSV_COLUMNS,
    TOKEN_GROUPS,
    agreement_branch_flow,
)
from captum_semiring.reproductions.tasks.agreement import (
    SPECIAL_TOKENS,
    WordTokenizer,
    agreement_bert_config,
    agreement_target,
    batches,
    encode,
    encode_all,
    generate_sentences,
    mlm_corpus,
    save_hf_directory,
    train_agreement_model,
)

# present/past verb forms of the templates (independent of the module's table)
SINGULAR_VERBS = {"is", "has", "was", "runs", "likes", "seems", "looks", "sleeps"}
PLURAL_VERBS = {"are", "have", "were", "run", "like", "seem", "look", "sleep"}
# words of the templates that are not nouns but end in "s"
NOT_NOUNS = SINGULAR_VERBS | {"his", "perhaps", "."}


@pytest.fixture(scope="module")
def tok() -> WordTokenizer:
    return WordTokenizer.default()


@pytest.fixture(scope="module")
def tiny_model(tok: WordTokenizer):
    from transformers import BertForMaskedLM

    torch.manual_seed(0)
    config = agreement_bert_config(
        len(tok),
        num_hidden_layers=2,
        hidden_size=16,
        num_attention_heads=2,
        intermediate_size=32,
    )
    return BertForMaskedLM(config).eval()


def _noun_forms(sentences) -> set[str]:
    """Every noun form, found by morphology: words ending in "s" that are not verbs
    or function words are plural nouns, and their stems are the singulars."""
    plurals = {
        w
        for s in sentences
        for w in s.words
        if w.endswith("s") and w not in NOT_NOUNS | PLURAL_VERBS
    }
    return plurals | {w[:-1] for w in plurals}


# ---------------------------------------------------------------- the generator


def test_generator_is_seeded() -> None:
    a = generate_sentences(40, seed=7)
    assert a == generate_sentences(40, seed=7)
    assert a != generate_sentences(40, seed=8)


def test_agreement_is_correct_by_english_morphology() -> None:
    sentences = generate_sentences(400, seed=3)
    nouns = _noun_forms(sentences)
    assert len(nouns) >= 20
    counts = {k: 0 for k in range(1, 5)}
    mismatched = total = 0
    for s in sentences:
        words = list(s.words)
        # the main verb: the only present/past verb form of the inventory
        verbs = [i for i, w in enumerate(words) if w in SINGULAR_VERBS | PLURAL_VERBS]
        assert verbs == [s.verb_index], s.text
        verb = words[s.verb_index]
        # the subject: the first noun of the sentence
        noun_positions = [i for i, w in enumerate(words) if w in nouns]
        subject = noun_positions[0]
        assert subject == s.subject_index, s.text
        subject_plural = words[subject].endswith("s")
        verb_singular = verb.endswith("s")
        assert subject_plural != verb_singular, s.text
        assert s.correct_verb == verb and s.wrong_verb != verb
        assert s.wrong_verb.endswith("s") == subject_plural
        # attractors: the nouns between subject and verb
        between = [i for i in noun_positions if subject < i < s.verb_index]
        assert list(s.attractor_indices) == between, s.text
        counts[len(between)] += 1
        for i, flag in zip(between, s.attractor_plural):
            assert words[i].endswith("s") == flag
            mismatched += flag != subject_plural
            total += 1
    assert all(c == 100 for c in counts.values()), counts
    # most attractors disagree with the subject, some agree
    assert 0.6 < mismatched / total < 0.95


def test_generator_rejects_bad_attractor_ranges() -> None:
    with pytest.raises(ValueError):
        generate_sentences(3, min_attractors=3, max_attractors=2)
    zero = generate_sentences(5, min_attractors=0, max_attractors=0)
    assert all(s.n_attractors == 0 for s in zero)


# ---------------------------------------------------------------- tokenizer, encoding


def test_tokenizer_round_trip(tok: WordTokenizer) -> None:
    assert tok.vocab[: len(SPECIAL_TOKENS)] == list(SPECIAL_TOKENS)
    for s in generate_sentences(50, seed=1):
        ids = tok.encode(list(s.words))
        assert tok.decode(ids) == ["[CLS]", *s.words, "[SEP]"]
        assert tok.unk_token_id not in ids
    assert tok.encode(["zebra"], add_special_tokens=False) == [tok.unk_token_id]
    hf = tok.to_hf()
    text = " ".join(generate_sentences(1, seed=2)[0].masked_words())
    assert hf(text)["input_ids"] == tok.encode(text.split())


def test_encode_positions(tok: WordTokenizer) -> None:
    for s in generate_sentences(60, seed=4):
        ex = encode(s, tok)
        assert ex is not None
        words = tok.decode(ex.ids)
        assert words[ex.mask_position] == "[MASK]"
        assert words.count("[MASK]") == 1
        assert words[ex.subject_position] == s.words[s.subject_index]
        assert [words[p] for p in ex.attractor_positions] == [
            s.words[i] for i in s.attractor_indices
        ]
        assert ex.mask_position > max(ex.attractor_positions) > ex.subject_position
        # the mask replaces exactly the verb
        restored = list(words)
        restored[ex.mask_position] = s.correct_verb
        assert restored == ["[CLS]", *s.words, "[SEP]"]
        assert tok.vocab[ex.correct_id] == s.correct_verb
        assert tok.vocab[ex.wrong_id] == s.wrong_verb
        subject_plural = s.words[s.subject_index].endswith("s")
        assert ex.mismatched == tuple(
            tok.vocab[int(ex.ids[p])].endswith("s") != subject_plural
            for p in ex.attractor_positions
        )


def test_encode_skips_multi_piece_words(tok: WordTokenizer) -> None:
    # a tokenizer that does not know the subject: the sentence is skipped
    s = generate_sentences(1, seed=5)[0]
    smaller = WordTokenizer(w for w in tok.vocab if w != s.words[s.subject_index])
    assert encode(s, smaller) is None
    assert encode(s, tok) is not None


def test_mlm_corpus_masks_verb_or_subject(tok: WordTokenizer) -> None:
    exs = encode_all(generate_sentences(200, seed=6), tok)
    ids, attn, labels = mlm_corpus(exs, subject_mask_prob=0.5, seed=1)
    n_subject = 0
    for i, ex in enumerate(exs):
        (pos,) = (labels[i] != -100).nonzero()[:, 0].tolist()
        assert ids[i, pos] == tok.mask_token_id
        if pos == ex.subject_position:
            n_subject += 1
            assert labels[i, pos] == ex.ids[ex.subject_position]
            assert ids[i, ex.mask_position] == ex.correct_id  # the verb is shown
        else:
            assert pos == ex.mask_position and labels[i, pos] == ex.correct_id
        assert int(attn[i].sum()) == ex.ids.numel()
    assert 60 < n_subject < 140


# ---------------------------------------------------------------- target, batches


def test_target_is_the_logit_difference_at_the_mask() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(5, 7, 11, generator=g)
    pos, good, bad = [1, 6, 0, 3, 3], [2, 10, 0, 4, 5], [3, 9, 1, 5, 4]
    got = agreement_target(pos, good, bad)(logits)
    for b in range(5):
        want = logits[b, pos[b], good[b]] - logits[b, pos[b], bad[b]]
        assert torch.equal(got[b], want)


def test_padding_does_not_change_targets(tok: WordTokenizer, tiny_model) -> None:
    exs = encode_all(generate_sentences(24, seed=9), tok)
    with torch.no_grad():
        padded = {
            id(e): v
            for b in batches(exs, 8)
            for e, v in zip(b.examples, b.forward_func(tiny_model)(b.ids))
        }
        for ex in exs:
            alone = tiny_model(input_ids=ex.ids[None]).logits[0, ex.mask_position]
            want = alone[ex.correct_id] - alone[ex.wrong_id]
            assert torch.allclose(padded[id(ex)], want, atol=1e-5)


# ---------------------------------------------------------------- analysis


def _with_attractor(examples) -> int:
    """Sentences with an attractor, by English morphology (a plural noun ends in -s):
    a noun between subject and verb whose number differs from the subject's; not from
    the module's ``mismatched`` flags or its attractor mask."""
    return sum(
        any(
            ex.sentence.words[i].endswith("s")
            != ex.sentence.words[ex.sentence.subject_index].endswith("s")
            for i in ex.sentence.attractor_indices
        )
        for ex in examples
    )


def test_branch_flow_structure_and_direct_computation(
    tok: WordTokenizer, tiny_model
) -> None:
    exs = encode_all(generate_sentences(6, seed=11), tok)
    flow = agreement_branch_flow(tiny_model, exs, batch_size=4)
    layers = ["bert.encoder.layer.0", "bert.encoder.layer.1"]
    assert flow.layers == layers and flow.n_sentences == 6
    assert all(set(r) == set(CSV_COLUMNS) for r in flow.rows)
    seen = {(r["layer"], r["token_group"], r["aggregation"]) for r in flow.rows}
    assert seen == {
        (li, g, a) for li in range(2) for g in TOKEN_GROUPS for a in AGGREGATIONS
    }
    for r in flow.rows:
        assert r["ci_low"] <= r["mean"] <= r["ci_high"]
        want_n = _with_attractor(exs) if r["token_group"] == "attractor" else 6
        assert r["n"] == want_n
    # sentences without attractors count for the subject and all tokens only
    none = encode_all(
        generate_sentences(2, seed=12, min_attractors=0, max_attractors=0), tok
    )
    mixed = exs[:3] + none
    assert len(none) == 2 and _with_attractor(mixed) == 3
    n_by_group = {
        r["token_group"]: r["n"]
        for r in agreement_branch_flow(tiny_model, mixed, batch_size=4).rows
    }
    assert n_by_group == {"subject": 5, "all": 5, "attractor": 3}

    # one sentence, no padding: the subject's flow straight from the engine
    ex = exs[0]
    single = agreement_branch_flow(tiny_model, [ex])
    layer = tiny_model.bert.encoder.layer[1]
    with cs.record(cs.layer_input(layer)) as graph:
        logits = tiny_model(input_ids=ex.ids[None]).logits
        out = (
            logits[:, ex.mask_position, ex.correct_id]
            - logits[:, ex.mask_position, ex.wrong_id]
        )
    bf = graph.backward(out, cs.MaxProduct()).branch_flow(cs.layer_input(layer))
    per_label = bf.aggregate(-1)[:, 0, ex.subject_position]  # (labels,)
    want = torch.zeros(4, dtype=torch.float64)
    for label, value in zip(bf.labels, per_label.tolist()):
        if label.endswith(".attention.output"):
            branch = "skip"
        elif label.rsplit(".", 1)[-1] in ("query", "key", "value"):
            branch = label.rsplit(".", 1)[-1]
        else:
            continue
        i = TRANSFORMER_BRANCHES.index(branch)
        want[i] = max(want[i], value)
    got_max = single.samples[(1, "subject", "branch-max")][0]
    assert torch.allclose(got_max, want, rtol=1e-5)
    got_top = single.samples[(1, "subject", "top-branch")][0]
    winner = int(want.argmax())
    assert torch.allclose(got_top[winner], want[winner], rtol=1e-5)
    assert (got_top[torch.arange(4) != winner] == 0).all()
    # the last layer: a non-mask token reaches the target only via key and value
    assert want[0] == 0 and want[1] == 0


# ---------------------------------------------------------------- training


def test_training_is_deterministic() -> None:
    kw = dict(
        n_train=120,
        steps=3,
        batch_size=8,
        num_hidden_layers=1,
        hidden_size=16,
        num_attention_heads=2,
        intermediate_size=16,
    )
    a = train_agreement_model(seed=2, **kw)
    b = train_agreement_model(seed=2, **kw)
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert a.steps == 3 and 0.0 <= a.accuracy <= 1.0


# ---------------------------------------------------------------- command line


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open() as fh:
        return list(csv.DictReader(fh))


def test_reproduce_fig4_trained_model(tmp_path: Path) -> None:
    out = tmp_path / "fig4"
    assert main(["reproduce", "fig4", "--out", str(out), "--max-sentences", "8"]) == 0
    for name in (
        "fig4_branch_flow.csv",
        "fig4_branch_flow_aten.csv",
        "fig4_accuracy.csv",
        "fig4_summary.json",
    ):
        assert (out / name).stat().st_size > 0
    assert (out / "fig4_branch_flow.png").read_bytes()[:4] == b"\x89PNG"
    rows = _rows(out / "fig4_branch_flow.csv")
    assert list(rows[0]) == list(CSV_COLUMNS)
    assert {r["layer"] for r in rows} == {"0", "1", "2", "3"}
    summary = json.loads((out / "fig4_summary.json").read_text())
    assert summary["n_sentences"] == 8
    # balanced: 2 sentences per number of attractors
    assert set(summary["accuracy_by_attractors"]) == {"1", "2", "3", "4"}
    # the trained model agrees far above chance
    assert summary["accuracy"] >= 0.75
    assert all(isinstance(v, bool) for v in summary["reproduced"].values())


def test_reproduce_fig4_hf_directory(
    tmp_path: Path, tok: WordTokenizer, tiny_model
) -> None:
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    model_dir = save_hf_directory(tiny_model, tmp_path / "mlm", tok)
    out = tmp_path / "fig4"
    argv = ["reproduce", "fig4", "--out", str(out), "--max-sentences", "12"]
    assert main([*argv, "--hf-model", str(model_dir)]) == 0
    summary = json.loads((out / "fig4_summary.json").read_text())
    assert summary["n_sentences"] == 12
    assert summary["layers"] == ["bert.encoder.layer.0", "bert.encoder.layer.1"]
    assert not any("initialized randomly" in n for n in summary["model"]["notes"])

    # the accuracy, recomputed by tokenizing whole sentences with the saved tokenizer
    model = AutoModelForMaskedLM.from_pretrained(model_dir).eval()
    hf_tok = AutoTokenizer.from_pretrained(model_dir)
    right = 0
    for s in generate_sentences(12, seed=10_000):
        enc = hf_tok(" ".join(s.masked_words()), return_tensors="pt")
        pos = int((enc["input_ids"][0] == hf_tok.mask_token_id).nonzero()[0, 0])
        with torch.no_grad():
            at = model(**enc).logits[0, pos]
        good, bad = hf_tok.convert_tokens_to_ids([s.correct_verb, s.wrong_verb])
        right += bool(at[good] > at[bad])
    (overall,) = [
        r for r in _rows(out / "fig4_accuracy.csv") if r["n_attractors"] == "all"
    ]
    assert float(overall["accuracy"]) == pytest.approx(right / 12)


def test_reproduce_fig4_bad_hf_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "empty").mkdir()
    code = main(
        [
            "reproduce",
            "fig4",
            "--out",
            str(tmp_path / "o"),
            "--hf-model",
            str(tmp_path / "empty"),
        ]
    )
    assert code == 2
    assert "config.json" in capsys.readouterr().err
