"""``analysis.explain``: the typed result of one input, checked field by field on the
demo model and against closed forms on a model small enough to differentiate by hand."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import torch
from torch import nn

from captum_semiring import Path as SemiringPath
from captum_semiring.analysis.branch_flow import TRANSFORMER_BRANCHES
from captum_semiring.analysis.explain import (
    DEMO_TOKENS,
    ExplainError,
    ExplainReport,
    ExplainResult,
    IGComparison,
    LayerFlow,
    TopPath,
    demo_examples,
    explain,
    explain_inputs,
    prepare_target,
    token_example,
)
from captum_semiring.analysis.models import LoadedModel, from_module
from captum_semiring.reproductions.tasks.models import load_default_model

# summary.json's keys of one input
ITEM_KEYS = [
    "index",
    "tokens",
    "ids",
    "label",
    "target",
    "output",
    "prediction",
    "top_path_per_token",
    "entropy_per_token",
    "normalized_entropy_per_token",
    "top_path_share_per_token",
    "most_important_token",
    "top_paths",
    "branch_flow",
    "integrated_gradients",
    "plots",
]


@pytest.fixture(scope="module")
def demo() -> LoadedModel:
    return load_default_model(verbose=False)


@pytest.fixture(scope="module")
def demo_result(demo: LoadedModel) -> ExplainResult:
    examples, pair = demo_examples(demo)
    assert pair is None and len(examples) == len(DEMO_TOKENS)
    target, prediction = prepare_target(demo, examples[0])
    return explain(demo, examples[0], target, prediction=prediction, ig_steps=16)


def test_demo_result_fields(demo: LoadedModel, demo_result: ExplainResult) -> None:
    r = demo_result
    L = len(DEMO_TOKENS[0])
    assert r.index == 0 and r.ids == DEMO_TOKENS[0]
    assert r.tokens == [str(t) for t in DEMO_TOKENS[0]]
    assert r.target.kind == "class" and r.label == 1
    assert r.prediction == r.target.info["class"] == 1
    assert r.target.description == "logit of class 1 (the correct class)"
    # the output is the target logit of a plain forward pass
    ids = torch.tensor([DEMO_TOKENS[0]])
    with torch.no_grad():
        logits = demo.model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
    assert r.output == pytest.approx(float(logits[0, 1]), rel=1e-6)

    assert len(r.top_path_per_token) == len(r.entropy_per_token) == L
    assert all(e >= 0 for e in r.entropy_per_token)
    assert 0 <= r.most_important_token < L

    assert 1 <= len(r.top_paths) <= 3
    assert all(isinstance(p, TopPath) for p in r.top_paths)
    assert [p.rank for p in r.top_paths] == list(range(1, len(r.top_paths) + 1))
    magnitudes = [abs(p.value) for p in r.top_paths]
    assert magnitudes == sorted(magnitudes, reverse=True)
    # TopK ranks by |path product|: the best one is at least the most positive path
    assert max(r.top_path_per_token) <= magnitudes[0] * (1 + 1e-6)
    for p in r.top_paths:
        assert p.token_index == r.most_important_token
        assert p.token == r.tokens[p.token_index] and p.element[0] == p.token_index
        assert p.modules[-1] == "" and "classifier" in p.modules
        assert p.hops == len(p.ops) >= len(p.modules)
        assert isinstance(p.path, SemiringPath) and float(p.path.value) == p.value

    [flow] = r.branch_flow
    assert isinstance(flow, LayerFlow) and flow.name == "bert.encoder.layer.0"
    assert list(flow.top_branch) == list(flow.branch_max) == list(TRANSFORMER_BRANCHES)
    for t in range(L):  # each token's top path enters through one branch at most
        assert sum(1 for b in TRANSFORMER_BRANCHES if flow.top_branch[b][t]) <= 1
    assert sum(flow.wins().values()) <= L
    assert r.branch_flow_note is None

    ig = r.integrated_gradients
    assert isinstance(ig, IGComparison) and ig.n_steps == 16
    assert len(ig.per_token) == L and -1 <= (ig.spearman or 0) <= 1

    assert r.plots == {
        "tokens": "input1_tokens.png",
        "branch_flow": "input1_branch_flow.png",
    }
    assert sorted(r.images) == sorted(r.plots.values())
    assert all(png[:8] == b"\x89PNG\r\n\x1a\n" for png in r.images.values())


def test_demo_ig_is_complete(demo: LoadedModel, demo_result: ExplainResult) -> None:
    """IG's per-token sums add up to f(input) - f(baseline), within Captum's delta;
    the baseline is all padding (the demo has no special tokens)."""
    ig = demo_result.integrated_gradients
    assert ig is not None
    ids = torch.tensor([DEMO_TOKENS[0]])
    with torch.no_grad():
        f_base = demo.model(
            input_ids=torch.zeros_like(ids), attention_mask=torch.ones_like(ids)
        ).logits[0, 1]
    gap = demo_result.output - float(f_base)
    assert sum(ig.per_token) == pytest.approx(gap, abs=abs(ig.convergence_delta) + 1e-5)


def test_to_json_keeps_the_summary_layout(
    demo: LoadedModel, demo_result: ExplainResult
) -> None:
    item = demo_result.to_json()
    assert list(item) == ITEM_KEYS
    assert item["target"] == {
        "kind": "class",
        "description": "logit of class 1 (the correct class)",
        "class": 1,
    }
    assert list(item["top_paths"][0]) == [
        "rank",
        "value",
        "token_index",
        "token",
        "element",
        "modules",
        "hops",
        "ops",
        "steps",
    ]
    assert list(item["branch_flow"][0]) == [
        "name",
        "top_branch",
        "branch_max",
        "labels",
        "other",
        "shares",
        "totals",
        "semiring",
    ]
    report = ExplainReport(demo, [demo_result], top_k=3).to_json()
    assert list(report) == [
        "model",
        "layer",
        "decompose",
        "encoder_layers",
        "semirings",
        "inputs",
    ]
    assert report["layer"] == "bert.embeddings"
    assert report["encoder_layers"] == ["bert.encoder.layer.0"]
    assert "TopK(3)" in report["semirings"]["top_paths"]
    json.dumps(report, allow_nan=False)  # plain JSON: no tensors, no images


class Bag(nn.Module):
    """logits = W tanh(mean of embeddings) + b: each embedding element reaches a
    logit by exactly one path, so every quantity has a closed form."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(12, 6)
        self.head = nn.Linear(6, 3)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(self.embed(ids)).mean(1))


@pytest.fixture(scope="module")
def bag() -> tuple[Bag, LoadedModel]:
    torch.manual_seed(0)
    model = Bag().double()
    return model, from_module(model)


def _bag_result(
    bag: tuple[Bag, LoadedModel], top_k: int, ig_steps: int = 32
) -> tuple[ExplainResult, torch.Tensor]:
    model, loaded = bag
    example = token_example(loaded, [1, 5, 7])
    target, prediction = prepare_target(loaded, example, target_class=2)
    result = explain(
        loaded,
        example,
        target,
        prediction=prediction,
        top_k=top_k,
        ig_steps=ig_steps,
        plots=False,
    )
    # d[t, j]: the one path product from embedding element (t, j) to logit 2
    e = model.embed.weight[example.ids[0]].detach()
    d = (1 - torch.tanh(e) ** 2) * model.head.weight[2].detach() / 3
    return result, d


def test_bag_against_closed_forms(bag: tuple[Bag, LoadedModel]) -> None:
    result, d = _bag_result(bag, top_k=3)
    assert result.target.description == "logit of class 2 (given)"
    assert result.label is None and result.plots == {} and result.images == {}
    assert result.branch_flow == [] and "no transformer layers" in (
        result.branch_flow_note or ""
    )
    # max-product: the most positive path product over the token's hidden units
    torch.testing.assert_close(
        torch.tensor(result.top_path_per_token, dtype=d.dtype), d.max(1).values
    )
    # entropy (eq. 3): of the token's paths weighted by |path product|
    p = d.abs() / d.abs().sum(1, keepdim=True)
    torch.testing.assert_close(
        torch.tensor(result.entropy_per_token, dtype=d.dtype), -(p * p.log()).sum(1)
    )
    # TopK(3): the token holding the largest |product|, then its three largest
    t_star = int(d.abs().max(1).values.argmax())
    assert result.most_important_token == t_star
    order = d[t_star].abs().argsort(descending=True)[:3]
    assert [p.value for p in result.top_paths] == pytest.approx(
        d[t_star, order].tolist(), rel=1e-12
    )
    assert [p.element for p in result.top_paths] == [[t_star, int(j)] for j in order]
    # tanh and mean run outside any submodule, the linear layer in ``head``, then the
    # target selects logit 2
    assert result.top_paths[0].ops == [
        "aten.tanh.default",
        "aten.mean.dim",
        "aten.addmm.default",
        "aten.select.int",
    ]
    assert result.top_paths[0].modules == ["", "head", ""]


def test_bag_top_path_with_k_1(bag: tuple[Bag, LoadedModel]) -> None:
    result, d = _bag_result(bag, top_k=1, ig_steps=0)
    assert result.integrated_gradients is None
    [path] = result.top_paths
    t, j = divmod(int(d.argmax()), d.shape[1])
    assert (path.token_index, path.element) == (t, [t, j])
    assert path.value == pytest.approx(float(d.max()), rel=1e-12)
    assert result.most_important_token == t


def test_bag_integrated_gradients_closed_form(bag: tuple[Bag, LoadedModel]) -> None:
    """Along the straight line from the padding embedding e0 to e, the integral of
    tanh' is (tanh(e) - tanh(e0)) / (e - e0): IG per token is a closed form."""
    model, _ = bag
    result, _ = _bag_result(bag, top_k=1, ig_steps=32)
    ig = result.integrated_gradients
    assert ig is not None and ig.baseline == "pad ids (special tokens kept)"
    e = model.embed.weight[[1, 5, 7]].detach()
    e0 = model.embed.weight[0].detach()
    w = model.head.weight[2].detach() / 3
    expected = (w * (torch.tanh(e) - torch.tanh(e0))).sum(1)
    torch.testing.assert_close(
        torch.tensor(ig.per_token, dtype=expected.dtype), expected, rtol=0, atol=1e-7
    )
    assert abs(ig.convergence_delta) < 1e-6
    assert ig.top_token_agrees == (
        int(expected.abs().argmax())
        == int(torch.tensor(result.top_path_per_token).argmax())
    )


def test_bad_inputs_raise_explain_error(bag: tuple[Bag, LoadedModel]) -> None:
    model, loaded = bag
    with pytest.raises(ExplainError, match="outside the model's vocabulary 0..11"):
        token_example(loaded, [1, 12], what="input A")
    example = token_example(loaded, [1, 2])
    with pytest.raises(ExplainError, match="out of range: the model has 3 classes"):
        prepare_target(loaded, example, target_class=3)
    with pytest.raises(ExplainError, match="needs a masked language model"):
        prepare_target(loaded, example, target_pair=("1", "2"))
    head = from_module(model, layer="head")
    target, _ = prepare_target(head, example, target_class=0)
    with pytest.raises(ExplainError, match=r"outputs shape \(1, 3\)"):
        explain(head, example, target, plots=False)
    with pytest.raises(ValueError, match="top_k"):
        explain(loaded, example, top_k=0)


def test_default_target_and_prediction(bag: tuple[Bag, LoadedModel]) -> None:
    """Without a target, explain uses the predicted class and computes the prediction."""
    model, loaded = bag
    example = token_example(loaded, [3, 4])
    result = explain(loaded, example, top_k=1, ig_steps=0, plots=False)
    with torch.no_grad():
        predicted = int(model(example.ids).argmax())
    assert result.prediction == predicted == result.target.info["class"]
    assert (
        result.target.description == f"logit of class {predicted} (the predicted class)"
    )
    assert math.isfinite(result.output)


def test_explain_inputs_runs_each_input_with_an_optional_bar(
    bag: tuple[Bag, LoadedModel], capsys: pytest.CaptureFixture[str]
) -> None:
    _, loaded = bag
    examples = [token_example(loaded, ids) for ids in ([3, 4], [1, 5, 7], [2, 2])]
    targets = [prepare_target(loaded, ex, target_class=2) for ex in examples]
    options = dict(top_k=2, ig_steps=4, plots=False)
    quiet = list(explain_inputs(loaded, examples, targets, **options))
    assert capsys.readouterr() == ("", "")
    shown = list(
        explain_inputs(loaded, examples, targets, show_progress=True, **options)
    )
    out, err = capsys.readouterr()
    assert out == "" and "explaining" in err and "3/3" in err
    alone = [
        explain(loaded, ex, t, prediction=p, index=i, **options)
        for i, (ex, (t, p)) in enumerate(zip(examples, targets))
    ]
    assert [r.index for r in shown] == [0, 1, 2]
    assert [r.to_json() for r in quiet] == [r.to_json() for r in shown]
    assert [r.to_json() for r in shown] == [r.to_json() for r in alone]
    with pytest.raises(ValueError, match="2 targets for 3 examples"):
        next(explain_inputs(loaded, examples, targets[:2]))


def test_importing_explain_loads_no_plotting_module() -> None:
    code = (
        "import sys, captum_semiring.analysis.explain, captum_semiring.analysis.models\n"
        "print('captum_semiring.visualization' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"


def test_entropy_scale_is_consistent_across_sweeps(demo: LoadedModel) -> None:
    # Three separate sweeps must agree with what entropy bounds: H <= log #paths
    # (PathCount), and the largest path's share p_max = max|g| / Z (MaxProduct
    # absolute, LogSum) satisfies exp(-H) <= p_max <= 1 (min-entropy <= entropy).
    examples, _ = demo_examples(demo)
    result = explain(demo, examples[0], ig_steps=0, plots=False)
    for h, norm, share in zip(
        result.entropy_per_token,
        result.normalized_entropy_per_token,
        result.top_path_share_per_token,
        strict=True,
    ):
        assert norm is not None and 0.0 <= norm <= 1.0 + 1e-6
        assert math.exp(-h) <= share * (1 + 1e-5) and share <= 1.0 + 1e-6


def test_path_steps_name_branch_head_and_weight() -> None:
    from captum_semiring import Hop, Path
    from captum_semiring.analysis.explain import path_steps

    value = "bert.encoder.layer.0.attention.self.value"
    hops = [
        Hop("aten.addmm.default", value, (0, 2, 5), 0.5, node=7),
        Hop("aten.view.default", value, (0, 2, 1, 1), 1.0, node=8),
        Hop("aten.add.Tensor", "bert.encoder.layer.0.attention.output", (0, 2, 5), 2.0),
        Hop(
            "aten.addmm.default",
            "bert.encoder.layer.0.intermediate.dense",
            (0, 2, 3),
            -3.0,
        ),
        Hop("aten.select.int", "", (0,), 1.0),
    ]
    path = Path(0.5 * 2.0 * -3.0, (0, 2, 4), hops)
    shapes = {7: (1, 3, 8), 8: (1, 3, 2, 4)}
    steps = path_steps(path, num_heads=2, shape_of=shapes.__getitem__)
    # the add alone in attention.output is the residual; a dense op is the MLP
    assert [s.branch for s in steps] == ["value", "skip (attention)", "MLP", None]
    assert steps[0].ops == ["addmm", "view"] and steps[0].weight == 0.5
    # read off the projection's output (1, 3, 8): element 5, heads of width 4
    assert steps[0].head == 5 // (8 // 2)
    assert math.prod(s.weight for s in steps) == path.value


def test_top_paths_steps_multiply_to_the_path_value() -> None:
    from builders import tiny_bert_config
    from transformers import BertForSequenceClassification

    torch.manual_seed(0)
    model = BertForSequenceClassification(tiny_bert_config()).double().eval()
    loaded = from_module(model)
    result = explain(
        loaded, token_example(loaded, [2, 5, 7, 3]), top_k=3, ig_steps=0, plots=False
    )
    assert result.top_paths
    for p in result.top_paths:
        assert math.isclose(math.prod(s.weight for s in p.steps), p.value, rel_tol=1e-9)
        assert [s.module for s in p.steps] == p.modules
