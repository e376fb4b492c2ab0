"""Small models for the attribution tests."""

from __future__ import annotations

import torch
from builders import tiny_bert_config
from torch import nn


class TitanicNet(nn.Module):
    """The Captum Titanic tutorial's model: 12 passenger features, 2 classes."""

    def __init__(self) -> None:
        super().__init__()
        self.linear1 = nn.Linear(12, 12)
        self.sigmoid1 = nn.Sigmoid()
        self.linear2 = nn.Linear(12, 8)
        self.sigmoid2 = nn.Sigmoid()
        self.linear3 = nn.Linear(8, 2)
        self.softmax = nn.Softmax(dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.sigmoid1(self.linear1(x))
        x = self.sigmoid2(self.linear2(x))
        return self.softmax(self.linear3(x))


def titanic_data(n: int = 4) -> torch.Tensor:
    """Tabular rows like the tutorial's: age, fare, sibsp, parch, one-hot class,
    sex and port, float64."""
    g = torch.Generator().manual_seed(1)
    age = torch.rand(n, 1, generator=g) * 70
    fare = torch.rand(n, 1, generator=g) * 100
    counts = torch.randint(0, 4, (n, 2), generator=g).double()
    pclass = nn.functional.one_hot(torch.randint(0, 3, (n,), generator=g), 3)
    sex = nn.functional.one_hot(torch.randint(0, 2, (n,), generator=g), 2)
    port = nn.functional.one_hot(torch.randint(0, 3, (n,), generator=g), 3)
    return torch.cat(
        [age.double() / 70, fare.double() / 100, counts, pclass, sex, port], 1
    ).double()


class SmallCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(6, 8, 3)
        self.relu2 = nn.ReLU()
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.relu1(self.conv1(x)))
        x = self.gap(self.relu2(self.conv2(x))).flatten(1)
        return self.fc(x)


class TwoInputNet(nn.Module):
    """Two tensor inputs plus a tensor and a non-tensor additional argument."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(3, 5)
        self.b = nn.Linear(4, 5)
        self.head = nn.Linear(5, 3)

    def forward(
        self, x1: torch.Tensor, x2: torch.Tensor, extra: torch.Tensor, scale: float
    ) -> torch.Tensor:
        return self.head(torch.tanh(self.a(x1) * scale + self.b(x2) + extra))


class BertLike(nn.Module):
    """A small random-init BertForSequenceClassification returning logits (float64)."""

    def __init__(self, num_layers: int = 2, attn_implementation: str = "eager") -> None:
        super().__init__()
        from transformers import BertForSequenceClassification

        torch.manual_seed(0)
        config = tiny_bert_config(
            vocab_size=128,
            hidden_size=16,
            num_hidden_layers=num_layers,
            intermediate_size=32,
            max_position_embeddings=32,
            num_labels=3,
            attn_implementation=attn_implementation,
        )
        self.model = BertForSequenceClassification(config).double().eval()
        self.bert = self.model.bert

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids).logits


class MiniLMHead(nn.Module):
    """MiniLM from input embeddings to its mean-pooled sentence embedding."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, embeds: torch.Tensor) -> torch.Tensor:
        return self.model(inputs_embeds=embeds).last_hidden_state.mean(1)


def hooks_of(*models: nn.Module) -> list[str]:
    """Modules that still carry forward (pre-)hooks."""
    left = []
    for model in models:
        for name, module in model.named_modules():
            if module._forward_hooks or module._forward_pre_hooks:
                left.append(name or type(module).__name__)
    return left
