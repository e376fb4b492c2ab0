"""Small transformers for the circuit tests, written out by hand so the tests can
name each component by its module independently of the library's discovery."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class Attention(nn.Module):
    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.heads, self.d_head = heads, d // heads
        self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))

    def forward(self, x: Tensor) -> Tensor:
        b, t, d = x.shape

        def split(y: Tensor) -> Tensor:
            return y.view(b, t, self.heads, self.d_head).transpose(1, 2)

        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.d_head)
        causal = torch.ones(t, t, dtype=torch.bool).triu(1)
        weights = torch.softmax(scores.masked_fill(causal, -1e9), dim=-1)
        return self.o((weights @ v).transpose(1, 2).reshape(b, t, d))


class Block(nn.Module):
    def __init__(self, d: int, heads: int, mlp: bool, post_ln: bool, ln: bool) -> None:
        super().__init__()
        self.post_ln = post_ln
        self.ln = nn.LayerNorm(d) if ln else nn.Identity()
        self.attn = Attention(d, heads)
        self.mlp = (
            nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, d))
            if mlp
            else None
        )

    def forward(self, x: Tensor) -> Tensor:
        if self.post_ln:  # BERT's order: the layer norm after the residual sum
            x = self.ln(x + self.attn(x))
        else:
            x = x + self.attn(self.ln(x))
        if self.mlp is not None:
            x = x + self.mlp(x)
        return x


class Toy(nn.Module):
    """Blocks ``blocks.{i}`` of attention (``.attn``, heads in ``.q/.k/.v``) and an
    optional MLP (``.mlp``), then ``unembed``."""

    def __init__(
        self,
        d: int = 4,
        heads: int = 2,
        layers: int = 2,
        vocab: int = 3,
        mlp: bool = True,
        post_ln: bool = False,
        ln: bool = True,
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            Block(d, heads, mlp, post_ln, ln) for _ in range(layers)
        )
        self.unembed = nn.Linear(d, vocab)

    def forward(self, x: Tensor) -> Tensor:
        for block in self.blocks:
            x = block(x)
        return self.unembed(x)


def toy(
    seed: int = 0, batch: int = 1, tokens: int = 2, **config: object
) -> tuple[Toy, Tensor]:
    torch.manual_seed(seed)
    model = Toy(**config).double().eval()  # type: ignore[arg-type]
    return model, torch.randn(batch, tokens, model.unembed.in_features).double()
