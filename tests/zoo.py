"""Small models for the tests: each builder returns (model, inputs, output_fn, sources).

``output_fn(model_output)`` gives one scalar per example; ``sources`` are what
``cs.record`` tracks (float inputs, or a module for models that take token ids).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from builders import tiny_bert_config
from torch import nn

Case = tuple[nn.Module, tuple[Any, ...], Callable[[Any], torch.Tensor], tuple[Any, ...]]


def _double(model: nn.Module) -> nn.Module:
    return model.double().eval()


def mlp() -> Case:
    torch.manual_seed(0)
    model = _double(
        nn.Sequential(
            nn.Linear(5, 8),
            nn.ReLU(),
            nn.Linear(8, 8),
            nn.GELU(),
            nn.Linear(8, 8),
            nn.Tanh(),
            nn.Linear(8, 8),
            nn.Sigmoid(),
            nn.Linear(8, 8),
            nn.SiLU(),
            nn.Dropout(0.3),
            nn.Linear(8, 3),
        )
    )
    x = torch.randn(4, 5, dtype=torch.float64)
    return model, (x,), lambda out: out[:, 1], (x,)


def cnn() -> Case:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(4, 4, 3, stride=2, padding=1, groups=2),
        nn.AvgPool2d(2, padding=1, count_include_pad=False),
        nn.AdaptiveAvgPool2d(2),
        nn.AdaptiveMaxPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 3),
    )
    bn = model[1]
    bn.running_mean.uniform_(-0.5, 0.5)
    bn.running_var.uniform_(0.5, 2.0)
    model = _double(model)
    x = torch.randn(3, 2, 12, 12, dtype=torch.float64)
    return model, (x,), lambda out: out[:, 2], (x,)


def cnn1d() -> Case:
    torch.manual_seed(0)
    model = _double(
        nn.Sequential(
            nn.Conv1d(3, 4, 3),
            nn.ReLU(),
            nn.MaxPool1d(2),
            nn.Conv1d(4, 2, 2, dilation=2),
            nn.AvgPool1d(2),
            nn.Flatten(),
            nn.LazyLinear(1) if False else nn.Identity(),
        )
    )
    x = torch.randn(2, 3, 16, dtype=torch.float64)
    return model, (x,), lambda out: out.sum(-1), (x,)


class _Recurrent(nn.Module):
    def __init__(self, cell: type[nn.Module]) -> None:
        super().__init__()
        self.rnn = cell(3, 4, num_layers=2, batch_first=True)
        self.head = nn.Linear(4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)
        return self.head(out[:, -1]).squeeze(-1)


def lstm() -> Case:
    torch.manual_seed(0)
    model = _double(_Recurrent(nn.LSTM))
    x = torch.randn(2, 4, 3, dtype=torch.float64)
    return model, (x,), lambda out: out, (x,)


def gru() -> Case:
    torch.manual_seed(0)
    model = _double(_Recurrent(nn.GRU))
    x = torch.randn(2, 4, 3, dtype=torch.float64)
    return model, (x,), lambda out: out, (x,)


class _Tokens(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(11, 8)
        self.encoder = nn.TransformerEncoderLayer(
            8, 2, 16, batch_first=True, dropout=0.1
        )
        self.head = nn.Linear(8, 2)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(self.embed(ids))[:, 0])


def transformer_encoder() -> Case:
    torch.manual_seed(0)
    model = _double(_Tokens())
    ids = torch.tensor([[1, 4, 2, 7, 3], [5, 5, 9, 0, 1]])
    return model, (ids,), lambda out: out[:, 0], (model.embed, model.embed.weight)


def _hf(kind: str, impl: str) -> Case:
    from transformers import (
        BertForSequenceClassification,
        DistilBertConfig,
        DistilBertForSequenceClassification,
        GPT2Config,
        GPT2LMHeadModel,
    )

    torch.manual_seed(0)
    if kind == "bert":
        config = tiny_bert_config(
            vocab_size=40,
            hidden_size=16,
            intermediate_size=32,
            max_position_embeddings=16,
            attn_implementation=impl,
        )
        model = BertForSequenceClassification(config)
        embeddings = model.bert.embeddings
    elif kind == "distilbert":
        config = DistilBertConfig(
            vocab_size=40,
            dim=16,
            n_layers=2,
            n_heads=2,
            hidden_dim=32,
            max_position_embeddings=16,
            attn_implementation=impl,
        )
        model = DistilBertForSequenceClassification(config)
        embeddings = model.distilbert.embeddings
    else:
        config = GPT2Config(
            vocab_size=40,
            n_embd=16,
            n_layer=2,
            n_head=2,
            n_positions=16,
            attn_implementation=impl,
            bos_token_id=0,
            eos_token_id=0,
        )
        model = GPT2LMHeadModel(config)
        embeddings = model.transformer.wte
    model = _double(model)
    ids = torch.tensor([[3, 7, 12, 5, 9, 2], [4, 4, 30, 1, 8, 6]])
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]])
    if kind == "gpt2":
        return model, (ids,), lambda out: out.logits[:, -1, 5], (embeddings,)
    return model, (ids, mask), lambda out: out.logits[:, 1], (embeddings,)


def _minilm(impl: str) -> Case:
    from captum_semiring.reproductions.tasks import load_minilm

    model, tokenizer = load_minilm(impl, dtype=torch.float64)
    enc = tokenizer(
        ["the cat sat", "dogs bark at night"], padding=True, return_tensors="pt"
    )
    return (
        model,
        (enc["input_ids"], enc["attention_mask"]),
        lambda out: out.last_hidden_state[:, 0, :4].sum(-1),
        (model.embeddings,),
    )


def tiny_mlm(layers: int = 2) -> nn.Module:
    """A tiny ``BertForMaskedLM`` (vocabulary 12, hidden 8, 2 heads, eager attention,
    no dropout) with large random weights, in eval mode: a clearly nonlinear stand-in
    for a masked LM. Token ids ``1..11``, at most 8 positions."""
    from transformers import BertForMaskedLM

    config = tiny_bert_config(
        vocab_size=12,
        num_hidden_layers=layers,
        max_position_embeddings=8,
        type_vocab_size=1,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        initializer_range=0.5,  # large weights: a clearly nonlinear model
    )
    config._attn_implementation = "eager"
    torch.manual_seed(0)
    return BertForMaskedLM(config).eval()


CASES: dict[str, Callable[[], Case]] = {
    "mlp": mlp,
    "cnn": cnn,
    "cnn1d": cnn1d,
    "lstm": lstm,
    "gru": gru,
    "transformer_encoder": transformer_encoder,
}
for _kind in ("bert", "distilbert", "gpt2"):
    for _impl in ("eager", "sdpa"):
        CASES[f"{_kind}-{_impl}"] = lambda k=_kind, i=_impl: _hf(k, i)
for _impl in ("eager", "sdpa"):
    CASES[f"minilm-{_impl}"] = lambda i=_impl: _minilm(i)
