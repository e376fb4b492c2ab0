"""Speed of semiring sweeps, as ratios measured side by side in one run.

    python benchmarks/run.py            # every model (slow on 2 cores)
    python benchmarks/run.py --quick    # small models only

Each cost is (recorded forward + sweep + finalize) over (forward + torch.autograd.grad
to the same source): medians over repeats after a warm-up, the two runs interleaved so
that load from elsewhere hits both alike. Compilation happens in the warm-up and is
reported separately. Results go to benchmarks/results.json.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

import captum_semiring as cs

SEMIRINGS: dict[str, Any] = {
    "sum": cs.SumProduct(),
    "entropy": cs.Entropy(),
    "logsum": cs.LogSum(),
    "max": cs.MaxProduct(),
    "max+path": cs.MaxProduct(),
    "topk5": cs.TopK(5),
}


def _median_time(fn: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        gc.collect()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


# ----- models --------------------------------------------------------------------
def _bert(
    layers: int, hidden: int, heads: int, tokens: int
) -> tuple[nn.Module, dict, nn.Module]:
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=4 * hidden,
        attn_implementation="eager",
    )
    model = BertModel(config).eval()
    ids = torch.randint(1000, 2000, (1, tokens))
    return model, {"input_ids": ids}, model.embeddings


def _minilm(tokens: int) -> tuple[nn.Module, dict, nn.Module]:
    from captum_semiring.tasks import load_minilm

    model, _ = load_minilm()
    ids = torch.randint(1000, 2000, (1, tokens))
    return model, {"input_ids": ids}, model.embeddings


def _gpt2() -> tuple[nn.Module, dict, nn.Module]:
    from transformers import GPT2Config, GPT2Model

    torch.manual_seed(0)
    model = GPT2Model(GPT2Config(attn_implementation="eager")).eval()
    return model, {"input_ids": torch.randint(0, 50000, (1, 64))}, model.wte


class _ResBlock(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c)
        self.conv2, self.bn2 = nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x + self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x))))))


def _resnet() -> tuple[nn.Module, dict, None]:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        _ResBlock(16),
        nn.MaxPool2d(2),
        _ResBlock(16),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 10),
    ).eval()
    return model, {"x": torch.randn(1, 3, 32, 32)}, None


def _mlp() -> tuple[nn.Module, dict, None]:
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for _ in range(16):
        layers += [nn.Linear(256, 256), nn.Tanh()]
    model = nn.Sequential(*layers, nn.Linear(256, 10)).eval()
    return model, {"x": torch.randn(1, 256)}, None


MODELS: dict[str, Callable[[], tuple[nn.Module, dict, Any]]] = {
    "minilm-32": lambda: _minilm(32),
    "minilm-128": lambda: _minilm(128),
    "bert-base-128": lambda: _bert(12, 768, 12, 128),
    "bert-6x512-30": lambda: _bert(6, 512, 8, 30),
    "gpt2-small-64": _gpt2,
    "resnet-cnn": _resnet,
    "mlp-16x256": _mlp,
}
QUICK = ["minilm-32", "bert-6x512-30", "resnet-cnn", "mlp-16x256"]


def _call(model: nn.Module, inputs: dict) -> torch.Tensor:
    if "x" in inputs:
        return model(inputs["x"])[:, 0]
    out = model(**inputs)
    return out.last_hidden_state[:, 0, 0]


def _best_element(res: Any, source: Any, tokens: bool) -> tuple[int, ...]:
    """The element with the largest value (for tokens: in the best token)."""
    values = res[source]
    if tokens:
        token = int(res.aggregate(source, dim=-1)[0].argmax())
        return (0, token, int(values[0, token].argmax()))
    flat = torch.unravel_index(values.argmax(), values.shape)
    return tuple(int(i) for i in flat)


def bench_model(name: str, repeats: int, semirings: list[str]) -> dict[str, Any]:
    model, inputs, layer = MODELS[name]()
    source: Any = layer if layer is not None else inputs["x"]

    def autograd() -> None:
        captured: dict[str, torch.Tensor] = {}
        if layer is not None:
            handle = layer.register_forward_hook(
                lambda m, a, o: captured.setdefault("o", o)
            )
            out = _call(model, inputs)
            handle.remove()
            torch.autograd.grad(out.sum(), captured["o"])
        else:
            x = inputs["x"].requires_grad_(True)
            torch.autograd.grad(_call(model, inputs).sum(), x)
            x.requires_grad_(False)

    def ours(semiring: str) -> Callable[[], None]:
        def run() -> None:
            with cs.record(source) as graph:
                out = _call(model, inputs)
            res = graph.backward(out, SEMIRINGS[semiring])
            res[source]  # finalize
            if semiring == "max+path":
                res.path(source, _best_element(res, source, tokens=layer is not None))

        return run

    autograd()
    base = _median_time(autograd, repeats)
    row: dict[str, Any] = {"autograd_s": base}
    for semiring in semirings:
        run = ours(semiring)
        start = time.perf_counter()
        run()  # warm-up: compiles kernels on first use
        row[f"{semiring}_warmup_s"] = time.perf_counter() - start
        # Interleave the two, so that load from elsewhere hits both alike.
        ours_t, base_t = [], []
        for _ in range(repeats):
            base_t.append(_median_time(autograd, 1))
            ours_t.append(_median_time(run, 1))
        t, b = statistics.median(ours_t), statistics.median(base_t)
        row[f"{semiring}_s"] = t
        row[f"{semiring}_ratio"] = t / b
        print(
            f"  {name:16s} {semiring:9s} {t:8.3f} s  {t / b:7.2f}x autograd", flush=True
        )
    return row


def bench_captum(name: str, repeats: int) -> dict[str, Any]:
    """TopGradientPath (n_steps=1) and the layer class against Captum's IG at 50 steps."""
    from captum.attr import IntegratedGradients, LayerIntegratedGradients

    model, inputs, layer = MODELS[name]()
    row: dict[str, Any] = {}
    if layer is None:
        x = inputs["x"]
        forward = lambda t: model(t)  # noqa: E731
        ig = _median_time(
            lambda: IntegratedGradients(forward).attribute(x, target=0, n_steps=50),
            repeats,
        )
        tgp = _median_time(
            lambda: cs.TopGradientPath(forward).attribute(x, target=0), repeats
        )
    else:
        ids = inputs["input_ids"]
        forward = lambda t: model(input_ids=t).last_hidden_state[:, 0]  # noqa: E731
        ig = _median_time(
            lambda: LayerIntegratedGradients(forward, layer).attribute(
                ids, target=0, n_steps=50
            ),
            repeats,
        )
        tgp = _median_time(
            lambda: cs.SemiringLayerAttribution(
                forward, layer, semiring="max"
            ).attribute(ids, target=0),
            repeats,
        )
    row.update(ig50_s=ig, top_gradient_path_s=tgp, speedup_vs_ig50=ig / tgp)
    print(
        f"  {name:16s} TopGradientPath vs IG(50): {ig / tgp:6.2f}x faster", flush=True
    )
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small models only")
    parser.add_argument("--models", nargs="*", help=f"subset of {list(MODELS)}")
    parser.add_argument("--semirings", nargs="*", default=list(SEMIRINGS))
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", default=str(Path(__file__).with_name("results.json")))
    args = parser.parse_args(argv)
    names = args.models or (QUICK if args.quick else list(MODELS))
    results: dict[str, Any] = {
        "machine": {
            "python": sys.version.split()[0],
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "platform": platform.platform(),
            "device": "cpu",
        },
        "models": {},
    }
    for name in names:
        print(f"{name}:", flush=True)
        row = bench_model(name, args.repeats, args.semirings)
        try:
            row.update(bench_captum(name, args.repeats))
        except (AttributeError, ImportError) as err:
            print(f"  (Captum comparison skipped: {err})")
        results["models"][name] = row
        Path(args.out).write_text(json.dumps(results, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
