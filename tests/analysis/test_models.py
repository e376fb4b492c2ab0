"""``analysis.models``: layer discovery and model loading."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import torch
from builders import tiny_bert_config
from torch import nn

from captum_semiring.analysis.models import (
    LoadedModel,
    ModelLoadError,
    encoder_layers,
    find_embeddings,
    first_line,
    from_module,
    load_callable_model,
    load_hf_model,
    resolve_layer,
)

transformers = pytest.importorskip("transformers")


def _config(**overrides: object) -> transformers.BertConfig:
    return tiny_bert_config(**{"max_position_embeddings": 12, **overrides})


@pytest.fixture(scope="module")
def bert_mlm() -> nn.Module:
    torch.manual_seed(0)
    return transformers.BertForMaskedLM(_config()).eval()


def test_encoder_layers_of_a_bert(bert_mlm: nn.Module) -> None:
    names = ["bert.encoder.layer.0", "bert.encoder.layer.1"]
    layers = encoder_layers(bert_mlm)
    assert [n for n, _ in layers] == names
    assert [m for _, m in layers] == list(bert_mlm.bert.encoder.layer)
    # the strict finder reads the encoder's list and agrees on BERT
    strict = encoder_layers(bert_mlm, strict=True)
    assert [n for n, _ in strict] == names
    assert all(a is b for (_, a), (_, b) in zip(layers, strict))
    # a bare encoder: no prefix
    assert [n for n, _ in encoder_layers(bert_mlm.bert)] == [
        "encoder.layer.0",
        "encoder.layer.1",
    ]


def test_encoder_layers_without_a_transformer() -> None:
    model = nn.Sequential(nn.Embedding(5, 3), nn.Linear(3, 2))
    assert encoder_layers(model) == []
    with pytest.raises(ValueError, match="compare_with_ablation needs Hugging Face"):
        encoder_layers(model, strict=True, needed_by="compare_with_ablation")


def test_strict_encoder_layers_check_the_projections(bert_mlm: nn.Module) -> None:
    torch.manual_seed(0)
    model = transformers.BertModel(_config(num_hidden_layers=1))
    model.encoder.layer[0].attention.self.key = nn.Identity()
    assert encoder_layers(model) != []  # the loose finder only needs the names
    with pytest.raises(ValueError, match=r"encoder layer 0 \(BertLayer\) lacks BERT's"):
        encoder_layers(model, strict=True)


def test_find_embeddings() -> None:
    torch.manual_seed(0)
    bert = transformers.BertForSequenceClassification(_config(num_hidden_layers=1))
    name, module = find_embeddings(bert)
    assert name == "bert.embeddings" and module is bert.bert.embeddings
    model = nn.Sequential(nn.Linear(2, 2), nn.Embedding(5, 2))
    assert find_embeddings(model) == ("1", model[1])
    with pytest.raises(ModelLoadError, match="found no embedding layer"):
        find_embeddings(nn.Linear(2, 2))


def test_resolve_layer_errors() -> None:
    model = nn.Sequential(nn.Embedding(5, 2), nn.Linear(2, 2))
    assert resolve_layer(model, "1") == ("1", model[1])
    with pytest.raises(ModelLoadError, match="has no layer '2' .*such as 0"):
        resolve_layer(model, "2")
    with pytest.raises(ModelLoadError, match="needs a dotted module path"):
        resolve_layer(model, "")
    with pytest.raises(ModelLoadError, match="has no layer 'x' .*such as 0"):
        from_module(nn.Sequential(nn.Linear(2, 2)), layer="x")


def test_model_load_error_is_a_value_error() -> None:
    assert issubclass(ModelLoadError, ValueError)
    assert first_line(ModelLoadError("one\ntwo")) == "one"


def test_missing_directory_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    with pytest.raises(ModelLoadError, match="does not exist") as info:
        load_hf_model(missing)
    assert str(missing) in str(info.value)
    with pytest.raises(ModelLoadError, match="no config.json") as info:
        load_hf_model(tmp_path)
    assert str(tmp_path) in str(info.value)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="cannot read the model config"):
        load_hf_model(tmp_path)


def test_saved_masked_lm_loads(bert_mlm: nn.Module, tmp_path: Path) -> None:
    bert_mlm.save_pretrained(tmp_path)
    loaded = load_hf_model(tmp_path)
    assert isinstance(loaded, LoadedModel)
    assert loaded.kind == "hf" and loaded.is_mlm and loaded.hf
    assert type(loaded.model).__name__ == "BertForMaskedLM"
    assert not loaded.model.training
    assert loaded.layer_name == "bert.embeddings"
    assert [n for n, _ in loaded.encoder_layers] == [
        "bert.encoder.layer.0",
        "bert.encoder.layer.1",
    ]
    assert loaded.max_positions == 12 and loaded.vocab_size == 30
    assert loaded.num_labels is None
    # (without tokenizer files, recent transformers versions still build a tokenizer
    # of BERT's special tokens from the config, so the tokenizer is not checked here)
    assert not any("initialized randomly" in note for note in loaded.notes)
    # the weights are those saved
    for (name, a), b in zip(
        bert_mlm.state_dict().items(), loaded.model.state_dict().values()
    ):
        assert torch.equal(a, b), name
    # another attribution layer
    assert load_hf_model(tmp_path, layer="bert.encoder.layer.1").layer_name == (
        "bert.encoder.layer.1"
    )


def test_bare_encoder_gets_a_seeded_head(tmp_path: Path) -> None:
    torch.manual_seed(0)
    transformers.BertModel(_config(num_hidden_layers=1)).save_pretrained(tmp_path)
    first = load_hf_model(tmp_path, seed=3)
    assert not first.is_mlm and first.num_labels == 2
    assert type(first.model).__name__ == "BertForSequenceClassification"
    assert any("initialized randomly (seed 3)" in note for note in first.notes)
    again = load_hf_model(tmp_path, seed=3)
    assert torch.equal(first.model.classifier.weight, again.model.classifier.weight)
    # a caller that needs per-token logits gets a masked LM from the same directory
    mlm = load_hf_model(tmp_path, prefer_masked_lm=True)
    assert mlm.is_mlm and type(mlm.model).__name__ == "BertForMaskedLM"


def test_prefer_masked_lm_does_not_override_a_classifier(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = transformers.BertForSequenceClassification(_config(num_hidden_layers=1))
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["architectures"] == ["BertForSequenceClassification"]
    assert not load_hf_model(tmp_path, prefer_masked_lm=True).is_mlm


def test_callable_models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "tiny_models_for_loading.py").write_text(
        textwrap.dedent("""
        from torch import nn

        def build():
            return nn.Sequential(nn.Embedding(7, 3), nn.Linear(3, 2))

        def not_a_model():
            return 42

        instance = nn.Sequential(nn.Embedding(4, 2))
        """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    loaded = load_callable_model("tiny_models_for_loading:build")
    assert loaded.kind == "callable" and loaded.vocab_size == 7
    assert loaded.layer_name == "0" and not loaded.hf and loaded.encoder_layers == []
    assert loaded.description == "Sequential from tiny_models_for_loading:build"
    assert load_callable_model("tiny_models_for_loading:instance").vocab_size == 4
    for spec, message in [
        ("nocolon", "must look like 'package.module:callable'"),
        ("no_such_module_xyz:build", "cannot import module 'no_such_module_xyz'"),
        ("tiny_models_for_loading:nothing", "has no attribute 'nothing'"),
        ("tiny_models_for_loading:not_a_model", "returned int, not a torch.nn.Module"),
    ]:
        with pytest.raises(ModelLoadError, match=message):
            load_callable_model(spec)
