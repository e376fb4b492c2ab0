"""Speed and memory of semiring sweeps, as ratios measured side by side in one run.

    python benchmarks/run.py                  # every model (slow on 2 cores)
    python benchmarks/run.py --quick          # small models only
    python benchmarks/run.py --models mlp-16x256 --semirings sum max
    python benchmarks/run.py --scaling        # time vs sequence length and depth
    python benchmarks/run.py --first-call bert-6x512-30   # first call in a fresh process
    python benchmarks/run.py --zoo --semirings sum max    # median over the test zoo
    python benchmarks/run.py --device cuda    # the same on a GPU

Sections (each row goes to benchmarks/results.json, and a table is printed):

- **Speed.** Each cost is (recorded forward + sweep + finalize) over (forward +
  torch.autograd.grad to the same source): medians over repeats after a warm-up, the
  two runs interleaved so that load from elsewhere hits both alike. Compilation
  happens in the warm-up and is reported separately (``*_warmup_s``). The sweeps
  keep only the sources' values, as ``attribute`` does; ``max+path`` also traces the
  best element's top path from a sweep that kept every value, ``max+path/ckpt`` the
  same path from a ``keep="checkpoints"`` sweep.
- **Memory.** The peak memory of the same two runs, as a ratio (``*_mem_ratio``). On
  CUDA: ``torch.cuda.max_memory_allocated`` above what was allocated before. On CPU
  no allocator keeps a peak, so we read the kernel's high-water mark of resident
  memory: ``/proc/self/clear_refs`` (write ``5``) resets ``VmHWM`` to the current
  resident size, and the peak is ``VmHWM`` after the run minus ``VmRSS`` before it.
  RSS alone misses the peak when freed memory stays in malloc's free lists and is
  reused; so first glibc is told to serve every allocation over 64 KiB by its own
  ``mmap`` (``mallopt(M_MMAP_THRESHOLD)``, which also stops the threshold from
  growing), and ``malloc_trim(0)`` hands back what is free before each reset. Then a
  tensor is resident exactly while it lives. The run checks the method on a known
  256 MiB allocation first (``memory_calibration``: measured over expected, ~1.0).
  Both runs include their forward pass (autograd's saved activations, our recorded
  tensors); model weights and inputs are resident before, so they are not counted.
  Memory is measured in a child process per model: that malloc setting makes every
  large allocation a fresh ``mmap`` with its page faults, which no user's process
  pays, so the timings run in a process without it.
- **Captum.** ``TopGradientPath`` (inputs; for token models the embedded inputs) and
  ``SemiringLayerAttribution(semiring="max")`` (a layer: the embeddings, or the first
  layer) against Captum's ``IntegratedGradients`` and ``LayerIntegratedGradients``
  with ``n_steps=50``.
- **Targets** (``--targets``, on by default without ``--quick``): BERT-base at 128
  tokens, MaxProduct with its top path: absolute time and peak memory against the
  targets (10 s, 4 GiB).
- **Scaling** (``--scaling``): the 6-layer 512-wide BERT at 32 ... 512 tokens, and at
  2 ... 12 layers, for SumProduct and MaxProduct, with the number of edges of the
  recorded graph and the autograd time; seconds per million edges should stay flat
  when the cost is linear in the edges.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import math
import platform
import re
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
    "max+path/ckpt": cs.MaxProduct(),  # keep="checkpoints": paths swept again
    "topk5": cs.TopK(5),
}
#: The runs that recover a path, with what their sweep keeps.
PATH_KEEP = {"max+path": "all", "max+path/ckpt": "checkpoints"}
DEVICE = torch.device("cpu")
TARGET_SECONDS, TARGET_GIB = 10.0, 4.0


def _sync() -> None:
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


def _median_time(fn: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        gc.collect()
        _sync()
        start = time.perf_counter()
        fn()
        _sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


# ----- peak memory -----------------------------------------------------------------
class _PeakMemory:
    """Peak memory of one call above what was in use before it (see the docstring)."""

    def __init__(self) -> None:
        self.libc: Any = None
        if DEVICE.type == "cpu":
            try:
                self.libc = ctypes.CDLL("libc.so.6")
                self.libc.mallopt(-3, 64 * 1024)  # M_MMAP_THRESHOLD = 64 KiB
                open("/proc/self/clear_refs", "w").write("5")
            except OSError as err:
                raise RuntimeError(f"no CPU peak-memory probe here: {err}") from err

    @staticmethod
    def _status(key: str) -> int:
        text = Path("/proc/self/status").read_text()
        return int(re.search(rf"{key}:\s+(\d+) kB", text).group(1)) * 1024  # type: ignore[union-attr]

    def __call__(self, fn: Callable[[], Any]) -> int:
        gc.collect()
        if DEVICE.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            before = torch.cuda.memory_allocated()
            fn()
            torch.cuda.synchronize()
            return torch.cuda.max_memory_allocated() - before
        self.libc.malloc_trim(0)
        open("/proc/self/clear_refs", "w").write("5")
        before = self._status("VmRSS")
        fn()
        return self._status("VmHWM") - before

    def calibrate(self) -> float:
        """Measured over expected peak for a known 256 MiB allocation (~1.0)."""
        size = 256 * 2**20

        def allocate() -> None:
            x = torch.ones(size // 4, device=DEVICE)
            del x

        return self(allocate) / size


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
    from captum_semiring.reproductions.tasks import load_minilm

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


def _load(name: str) -> tuple[nn.Module, dict, Any]:
    model, inputs, layer = MODELS[name]()
    model = model.to(DEVICE)
    return model, {k: v.to(DEVICE) for k, v in inputs.items()}, layer


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


def _runners(
    model: nn.Module, inputs: dict, layer: Any
) -> tuple[Callable[[], None], Callable[[str], Callable[[], None]]]:
    """The autograd baseline and our run for a semiring name, on the same source."""
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
            # as the attribution classes do: every value only where paths need it
            keep = PATH_KEEP.get(semiring, "sources")
            res = graph.backward(out, SEMIRINGS[semiring], keep=keep)
            res[source]  # finalize
            if semiring in PATH_KEEP:
                res.path(source, _best_element(res, source, tokens=layer is not None))

        return run

    return autograd, ours


def bench_model(
    name: str, repeats: int, semirings: list[str], memory: bool
) -> dict[str, Any]:
    model, inputs, layer = _load(name)
    autograd, ours = _runners(model, inputs, layer)
    autograd()
    row: dict[str, Any] = {"autograd_s": _median_time(autograd, repeats)}
    peaks = _peaks_in_child(name, semirings) if memory else {}
    if peaks:
        row["autograd_peak_bytes"] = base_peak = peaks["autograd"]
        # the probe on a known 256 MiB allocation, measured over expected (~1.0)
        row["memory_calibration"] = peaks["calibration"]
        print(f"  memory probe: 256 MiB measured as {peaks['calibration']:.3f}x")
    for semiring in semirings:
        run = ours(semiring)
        start = time.perf_counter()
        run()  # warm-up: compiles kernels on first use
        _sync()
        row[f"{semiring}_warmup_s"] = time.perf_counter() - start
        # Interleave the two, so that load from elsewhere hits both alike.
        ours_t, base_t = [], []
        for _ in range(repeats):
            base_t.append(_median_time(autograd, 1))
            ours_t.append(_median_time(run, 1))
        t, b = statistics.median(ours_t), statistics.median(base_t)
        row[f"{semiring}_s"] = t
        row[f"{semiring}_ratio"] = t / b
        line = f"  {name:16s} {semiring:9s} {t:8.3f} s  {t / b:7.2f}x autograd"
        if peaks:
            peak = peaks[semiring]
            row[f"{semiring}_peak_bytes"] = peak
            row[f"{semiring}_mem_ratio"] = peak / max(base_peak, 1)
            line += (
                f"  {peak / 2**20:8.1f} MiB  {peak / max(base_peak, 1):6.2f}x memory"
            )
        print(line, flush=True)
    return row


def memory_child(name: str, semirings: list[str]) -> None:
    """In a fresh process with the memory probe: the calibration, then the peak bytes
    of autograd and of each semiring's run (after a warm-up), as one JSON line."""
    memory = _PeakMemory()
    peaks: dict[str, Any] = {"calibration": memory.calibrate()}
    model, inputs, layer = _load(name)
    autograd, ours = _runners(model, inputs, layer)
    autograd()
    peaks["autograd"] = memory(autograd)
    for semiring in semirings:
        run = ours(semiring)
        run()
        peaks[semiring] = memory(run)
    print(json.dumps(peaks))


def _peaks_in_child(name: str, semirings: list[str]) -> dict[str, Any]:
    return _child("--device", str(DEVICE), "--memory-child", name, *semirings)


def _child(*args: str) -> dict[str, Any]:
    """This script run in a fresh process with ``args``: its last line, as JSON."""
    import subprocess

    child = subprocess.run(
        [sys.executable, __file__, *args], capture_output=True, text=True, check=True
    )
    return json.loads(child.stdout.strip().splitlines()[-1])


def first_call_child(name: str, semiring: str) -> None:
    """In a fresh process: the first run of ``semiring`` on ``name`` and the best of
    three warm ones, printed as one JSON line (see :func:`bench_first_call`)."""
    model, inputs, layer = _load(name)
    _, ours = _runners(model, inputs, layer)
    run = ours(semiring)
    start = time.perf_counter()
    run()
    first = time.perf_counter() - start
    warm = _median_time(run, 3)
    print(json.dumps({"first_s": first, "warm_s": warm}))


def bench_first_call(name: str, semirings: list[str]) -> dict[str, Any]:
    """Each semiring's first call in a fresh Python process (compiled kernels load or
    compile then) against a warm call; the target is at most 2 s more."""
    row: dict[str, Any] = {}
    for semiring in semirings:
        times = _child("--first-call-child", name, semiring)
        extra = times["first_s"] - times["warm_s"]
        row[semiring] = {**times, "extra_s": extra}
        print(
            f"  {name:16s} {semiring:9s} first {times['first_s']:6.2f} s, warm "
            f"{times['warm_s']:6.3f} s: {extra:+.2f} s",
            flush=True,
        )
    return row


def bench_zoo(semirings: list[str], repeats: int) -> dict[str, Any]:
    """Each architecture of the test zoo (tests/arch_zoo.py: random-init, 2 layers,
    hidden 32, a padded batch of 2) in float32: our run against autograd on the same
    source, and the median ratio over the architectures that record."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    import arch_zoo

    rows: dict[str, Any] = {}
    for case_id in arch_zoo.case_ids():
        try:
            case = arch_zoo.build(case_id)
            case.model.float()
            case.inputs = {
                k: v.float() if torch.is_tensor(v) and v.is_floating_point() else v
                for k, v in case.inputs.items()
            }
            if isinstance(case.source, torch.Tensor):
                continue  # a parameter source: autograd needs its own set-up

            def autograd(case: Any = case) -> None:
                arch_zoo._reference(case, case.inputs)

            def ours(semiring: str, case: Any = case) -> Callable[[], None]:
                def sweep() -> None:
                    graph, key, out = arch_zoo._record(case, case.inputs)
                    graph.backward(out, SEMIRINGS[semiring])[key]

                return sweep

            autograd()
            row: dict[str, Any] = {}
            for semiring in semirings:
                run = ours(semiring)
                run()
                ours_t, base_t = [], []
                for _ in range(repeats):
                    base_t.append(_median_time(autograd, 1))
                    ours_t.append(_median_time(run, 1))
                row[semiring] = statistics.median(ours_t) / statistics.median(base_t)
        except Exception as err:  # noqa: BLE001 - a case that fails is reported
            print(f"  {case_id:28s} skipped: {type(err).__name__}: {err}"[:120])
            continue
        rows[case_id] = row
        print(
            f"  {case_id:28s} " + "  ".join(f"{s} {r:5.2f}x" for s, r in row.items()),
            flush=True,
        )
    medians = {
        s: statistics.median(r[s] for r in rows.values()) for s in semirings if rows
    }
    print(
        "  median over "
        + f"{len(rows)} architectures: "
        + "  ".join(f"{s} {m:.2f}x" for s, m in medians.items())
    )
    return {"cases": rows, "median": medians}


def _token_forward(model: nn.Module) -> Callable[..., torch.Tensor]:
    """The model as a function of its embedded tokens, first hidden state out."""

    def forward(embeds: torch.Tensor) -> torch.Tensor:
        return model(inputs_embeds=embeds).last_hidden_state[:, 0]

    return forward


def bench_captum(name: str, repeats: int) -> dict[str, Any]:
    """TopGradientPath and the layer class (n_steps=1) against Captum's IG and
    LayerIntegratedGradients at 50 steps."""
    from captum.attr import IntegratedGradients, LayerIntegratedGradients

    model, inputs, layer = _load(name)
    row: dict[str, Any] = {}
    if layer is None:
        x = inputs["x"]
        forward = model
        layer_of = next(m for m in model.modules() if not list(m.children()))
        layer_inputs = x
    else:
        ids = inputs["input_ids"]
        x = model.get_input_embeddings()(ids).detach()
        forward = _token_forward(model)
        layer_of = layer

        def layer_forward(t: torch.Tensor) -> torch.Tensor:
            return model(input_ids=t).last_hidden_state[:, 0]

        layer_inputs = ids
    ig = _median_time(
        lambda: IntegratedGradients(forward).attribute(x, target=0, n_steps=50),
        repeats,
    )
    tgp = _median_time(
        lambda: cs.TopGradientPath(forward).attribute(x, target=0), repeats
    )
    layer_model = model if layer is None else layer_forward
    lig = _median_time(
        lambda: LayerIntegratedGradients(layer_model, layer_of).attribute(
            layer_inputs, target=0, n_steps=50
        ),
        repeats,
    )
    lsa = _median_time(
        lambda: cs.SemiringLayerAttribution(
            layer_model, layer_of, semiring="max"
        ).attribute(layer_inputs, target=0),
        repeats,
    )
    row.update(
        ig50_s=ig,
        top_gradient_path_s=tgp,
        speedup_vs_ig50=ig / tgp,
        layer_ig50_s=lig,
        layer_semiring_s=lsa,
        layer_speedup_vs_lig50=lig / lsa,
    )
    print(
        f"  {name:16s} TopGradientPath vs IG(50): {ig / tgp:6.2f}x faster; "
        f"SemiringLayerAttribution vs LayerIG(50): {lig / lsa:6.2f}x faster",
        flush=True,
    )
    return row


# ----- absolute targets ------------------------------------------------------------
def bench_targets(name: str, repeats: int, memory: bool) -> dict:
    """MaxProduct with its top path: absolute seconds and peak bytes."""
    model, inputs, layer = _load(name)
    _, ours = _runners(model, inputs, layer)
    run = ours("max+path")
    run()  # warm-up
    seconds = _median_time(run, repeats)
    row: dict[str, Any] = {"model": name, "max+path_s": seconds}
    line = f"  {name:16s} max+path {seconds:8.2f} s (target {TARGET_SECONDS:.0f} s)"
    if memory:
        peak = _peaks_in_child(name, ["max+path"])["max+path"]
        row["max+path_peak_bytes"] = peak
        line += f"  {peak / 2**30:6.2f} GiB (target {TARGET_GIB:.0f} GiB)"
        row["meets_targets"] = seconds < TARGET_SECONDS and peak < TARGET_GIB * 2**30
    print(line, flush=True)
    return row


# ----- scaling ---------------------------------------------------------------------
def count_edges(graph: Any) -> int:
    """Edges of a recorded graph, by local map (every pair of a contraction, every
    pair in a row of a row-wise op, one per element of the other maps)."""
    from captum_semiring.rules import _maps, index_maps

    total = 0
    for record in graph.records:
        for local in graph.local_maps(record).values():
            if isinstance(local, _maps.MatMul):
                k = local.in_view[-1] if local.side == "right" else local.in_view[-2]
                total += math.prod(local.out_view) * k
            elif isinstance(local, _maps.Blockwise):
                n = math.prod(local.in_shape[d] for d in local.block)
                total += local.rows * n * n
            elif isinstance(local, _maps.Elementwise):
                total += math.prod(local.common)
            elif isinstance(local, _maps.IndexMap):
                total += int(local.used.numel())
            elif isinstance(local, index_maps.Im2col):
                total += int(local.index.used.numel())
            else:
                total += math.prod(local.out_shape)
    return total


def bench_scaling(
    lengths: list[int], depths: list[int], depth_tokens: int, repeats: int
) -> list[dict[str, Any]]:
    rows = []
    points = [(6, n) for n in lengths] + [(d, depth_tokens) for d in depths]
    print(
        f"  {'layers':>6s} {'tokens':>6s} {'edges':>12s} {'autograd':>9s} "
        f"{'sum':>8s} {'max':>8s} {'sum s/Medge':>12s} {'max s/Medge':>12s}"
    )
    for layers, tokens in points:
        model, inputs, layer = _bert(layers, 512, 8, tokens)
        model = model.to(DEVICE)
        inputs = {k: v.to(DEVICE) for k, v in inputs.items()}
        autograd, ours = _runners(model, inputs, layer)
        with cs.record(layer) as graph:
            _call(model, inputs)
        edges = count_edges(graph)
        del graph
        autograd()
        row: dict[str, Any] = {"layers": layers, "tokens": tokens, "edges": edges}
        row["autograd_s"] = _median_time(autograd, repeats)
        for semiring in ("sum", "max"):
            run = ours(semiring)
            run()  # warm-up
            row[f"{semiring}_s"] = _median_time(run, repeats)
        per = {s: row[f"{s}_s"] / (edges / 1e6) for s in ("sum", "max")}
        print(
            f"  {layers:6d} {tokens:6d} {edges:12,d} {row['autograd_s']:8.3f}s "
            f"{row['sum_s']:7.3f}s {row['max_s']:7.3f}s {per['sum']:12.5f} "
            f"{per['max']:12.5f}",
            flush=True,
        )
        rows.append(row)
    return rows


# ----- output ----------------------------------------------------------------------
def _table(results: dict[str, Any], semirings: list[str]) -> str:
    """The model rows as one table: time ratio (and memory ratio) per semiring."""
    models = results["models"]
    if not models:
        return ""
    head = f"{'model':16s} {'autograd':>9s}" + "".join(f" {s:>13s}" for s in semirings)
    head += f" {'TGP/IG50':>9s} {'layer/LIG50':>11s}"
    lines = [head, "-" * len(head)]
    for name, row in models.items():
        cells = f"{name:16s} {row['autograd_s']:8.3f}s"
        for s in semirings:
            ratio = row.get(f"{s}_ratio")
            mem = row.get(f"{s}_mem_ratio")
            cell = "" if ratio is None else f"{ratio:.2f}x"
            cell += "" if mem is None else f" m{mem:.1f}"
            cells += f" {cell:>13s}"
        for key, width in (("speedup_vs_ig50", 9), ("layer_speedup_vs_lig50", 11)):
            value = row.get(key)
            cells += f" {'' if value is None else f'{value:.2f}x':>{width}s}"
        lines.append(cells)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    global DEVICE
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small models only")
    parser.add_argument(
        "--models", nargs="*", choices=list(MODELS), help="a subset of the models"
    )
    parser.add_argument(
        "--semirings", nargs="*", default=list(SEMIRINGS), choices=list(SEMIRINGS)
    )
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument(
        "--no-memory", action="store_true", help="skip the peak-memory runs"
    )
    parser.add_argument(
        "--no-captum", action="store_true", help="skip the Captum comparison"
    )
    parser.add_argument(
        "--targets",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="BERT-base max+path against the time and memory targets "
        "(default: on without --quick)",
    )
    parser.add_argument("--target-model", default="bert-base-128", choices=list(MODELS))
    parser.add_argument(
        "--scaling", action="store_true", help="time vs sequence length and depth"
    )
    parser.add_argument(
        "--scaling-lengths", nargs="*", type=int, default=[32, 64, 128, 256, 512]
    )
    parser.add_argument("--scaling-depths", nargs="*", type=int, default=[2, 4, 8, 12])
    parser.add_argument("--scaling-depth-tokens", type=int, default=128)
    parser.add_argument(
        "--first-call",
        metavar="MODEL",
        choices=list(MODELS),
        help="each semiring's first call in a fresh process against a warm call",
    )
    parser.add_argument("--first-call-child", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--memory-child", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument(
        "--zoo",
        action="store_true",
        help="the median ratio over the test zoo's small architectures",
    )
    parser.add_argument("--out", default=str(Path(__file__).with_name("results.json")))
    args = parser.parse_args(argv)
    if args.first_call_child:
        first_call_child(*args.first_call_child)
        return 0
    DEVICE = torch.device(args.device)
    if args.memory_child:
        memory_child(args.memory_child[0], args.memory_child[1:])
        return 0
    names = args.models if args.models is not None else None
    if names is None:
        names = (
            []
            if args.scaling or args.first_call or args.zoo
            else (QUICK if args.quick else list(MODELS))
        )
    targets = args.targets if args.targets is not None else not args.quick
    targets = targets and not (args.scaling or args.first_call or args.zoo)
    memory = not args.no_memory
    results: dict[str, Any] = {
        "machine": {
            "python": sys.version.split()[0],
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "platform": platform.platform(),
            "device": str(DEVICE)
            if DEVICE.type != "cuda"
            else torch.cuda.get_device_name(DEVICE),
        },
        "models": {},
    }

    def save() -> None:
        Path(args.out).write_text(json.dumps(results, indent=2))

    for name in names:
        print(f"{name}:", flush=True)
        row = bench_model(name, args.repeats, args.semirings, memory)
        if not args.no_captum:
            try:
                row.update(bench_captum(name, max(1, args.repeats // 2)))
            except (AttributeError, ImportError, TypeError) as err:
                print(f"  (Captum comparison skipped: {err})")
        results["models"][name] = row
        save()
    if names:
        print()
        print(_table(results, args.semirings))
    if targets:
        print("targets:", flush=True)
        results["targets"] = bench_targets(
            args.target_model, max(1, min(3, args.repeats)), memory
        )
        save()
    if args.first_call:
        print(f"first call in a fresh process ({args.first_call}):", flush=True)
        results["first_call"] = {
            args.first_call: bench_first_call(args.first_call, args.semirings)
        }
        save()
    if args.zoo:
        print("zoo (float32, padded batch of 2):", flush=True)
        zoo_semirings = [s for s in args.semirings if s not in PATH_KEEP]
        results["zoo"] = bench_zoo(zoo_semirings, args.repeats)
        save()
    if args.scaling:
        print("scaling (6 layers x 512 wide BERT; then depth at fixed tokens):")
        results["scaling"] = bench_scaling(
            args.scaling_lengths,
            args.scaling_depths,
            args.scaling_depth_tokens,
            max(1, min(3, args.repeats)),
        )
        save()
    save()
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
