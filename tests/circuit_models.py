"""Small transformers for the circuit tests, written out by hand so the tests can
name each component by its module independently of the library's discovery."""

from __future__ import annotations

import math
from collections.abc import Callable

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


# ----- an independent edge-patching forward of the pre-LayerNorm toy ---------------
Key = tuple[str, str, str]  # (upstream, downstream, slot)


def reference_run(
    model: Toy,
    x: Tensor,
    use: Callable[[Key], bool],
    replacement: dict[str, Tensor] | None,
) -> tuple[Tensor, dict[str, Tensor], dict[tuple[str, str], Tensor]]:
    """(output, writes, reads) of the pre-LN toy run with explicit per-head, per-slot
    residual inputs: a read sums, over the components before it, this run's write
    where ``use(edge)`` and ``replacement``'s otherwise, plus the output
    projections' biases. A head's write is its slice of the output projection
    without the bias. ``reads`` holds each read's input, its gradient retained when
    ``x`` requires grad."""
    writes: dict[str, Tensor] = {"embed": x}
    biases: list[Tensor] = []
    reads: dict[tuple[str, str], Tensor] = {}

    def read(name: str, slot: str) -> Tensor:
        total = sum(biases, torch.zeros_like(x))
        for u, w in writes.items():
            kept = replacement is None or use((u, name, slot))
            total = total + (w if kept else replacement[u])
        if total.requires_grad:
            total.retain_grad()
        reads[name, slot] = total
        return total

    b, t, d = x.shape
    for i, block in enumerate(model.blocks):
        assert not block.post_ln
        attn, prefix = block.attn, f"blocks.{i}.attn"
        heads, dh = attn.heads, attn.d_head
        new: dict[str, Tensor] = {}
        for h in range(heads):
            name, cols = f"{prefix}.head{h}", slice(h * dh, (h + 1) * dh)

            def project(
                lin: nn.Linear,
                slot: str,
                name: str = name,
                cols: slice = cols,
                ln: nn.Module = block.ln,
            ) -> Tensor:
                return ln(read(name, slot)) @ lin.weight[cols].T + lin.bias[cols]

            q, k, v = project(attn.q, "q"), project(attn.k, "k"), project(attn.v, "v")
            scores = q @ k.transpose(-1, -2) / math.sqrt(dh)
            causal = torch.ones(t, t, dtype=torch.bool).triu(1)
            weights = torch.softmax(scores.masked_fill(causal, -1e9), dim=-1)
            new[name] = (weights @ v) @ attn.o.weight[:, cols].T
        writes.update(new)
        biases.append(attn.o.bias.expand(b, t, d))
        if block.mlp is not None:
            name = f"blocks.{i}.mlp"
            writes[name] = block.mlp(read(name, "in"))
    out = model.unembed(read("logits", "in"))
    return out, writes, reads
