"""The HTML report (issue 14): every number names its semiring, the page says how to
read it, an unconverged IG run and a random head are flagged."""

from __future__ import annotations

import dataclasses

import pytest

from captum_semiring.analysis.explain import (
    IG_DELTA_WARNING,
    ExplainReport,
    demo_examples,
    explain,
)
from captum_semiring.report import render_html_report
from captum_semiring.reproductions.tasks.models import load_default_model


@pytest.fixture(scope="module")
def run():  # type: ignore[no-untyped-def]
    model = load_default_model(verbose=False)
    examples, _ = demo_examples(model)
    result = explain(model, examples[0], top_k=3, ig_steps=4, plots=False)
    return model, result


def test_numbers_name_their_semiring_and_the_page_says_how_to_read_it(run) -> None:
    model, result = run
    page = render_html_report(ExplainReport(model, [result], top_k=3))
    assert "TopK(3)" in page and "MaxProduct, positive" in page
    assert "H / log #paths" in page and "top-path share of Z" in page
    assert "How to read this" in page
    assert "randomly initialized" not in page  # the demo model is trained


@pytest.mark.parametrize("fraction", [0.5 * IG_DELTA_WARNING, 3 * IG_DELTA_WARNING])
def test_an_unconverged_ig_run_is_flagged(run, fraction: float) -> None:
    model, result = run
    assert result.integrated_gradients is not None
    ig = dataclasses.replace(
        result.integrated_gradients, convergence_delta=fraction * result.output
    )
    page = render_html_report(
        ExplainReport(model, [dataclasses.replace(result, integrated_gradients=ig)], 3)
    )
    assert ("IG has not converged" in page) == (fraction > IG_DELTA_WARNING)


def test_a_random_head_gets_a_banner(run) -> None:
    model, result = run
    flagged = dataclasses.replace(model, random_weights=["classifier.weight"])
    page = render_html_report(ExplainReport(flagged, [result], top_k=3))
    assert "Warning: this model has 1 randomly initialized weight (" in page


def test_token_shading_is_signed_and_logarithmic() -> None:
    import re

    from captum_semiring.report import _token_strip

    page = _token_strip(["a", "b", "c", "d"], [1.0, 1e-2, -1e-1, 0.0])
    shades = re.findall(r"rgba\((\d+), (\d+), (\d+), ([\d.]+)\)", page)
    alphas = [float(a) for *_, a in shades]
    assert alphas[0] > alphas[2] > alphas[1] > alphas[3]  # by |value|
    assert alphas[1] > 0.2  # 100x below the top is still visible
    assert shades[2][:3] != shades[0][:3]  # negative: another colour


def test_a_long_input_keeps_its_plot_width() -> None:
    import re

    import torch
    from builders import tiny_bert_config
    from transformers import BertForSequenceClassification

    from captum_semiring.analysis.explain import token_example
    from captum_semiring.analysis.models import from_module

    torch.manual_seed(0)
    model = from_module(BertForSequenceClassification(tiny_bert_config()).eval())
    ids = [(i % 25) + 2 for i in range(39)]
    result = explain(model, token_example(model, ids), ig_steps=0, top_k=1)
    page = render_html_report(ExplainReport(model, [result], top_k=1))
    widths = [int(w) for w in re.findall(r'<img class="plot" width="(\d+)"', page)]
    assert widths and max(widths) > 2000  # wider than a page: it scrolls
    assert page.count('<div class="plotwrap"><img') == len(widths)


def test_the_path_graph_merges_the_top_paths_by_module(run) -> None:
    import re
    import xml.etree.ElementTree as ET

    model, result = run
    page = render_html_report(ExplainReport(model, [result], top_k=3))
    (svg,) = re.findall(r"<svg class=\"pathgraph\".*?</svg>", page, flags=re.S)
    root = ET.fromstring(svg)
    ns = "{http://www.w3.org/2000/svg}"
    keys = {(s.module, s.branch, s.head) for p in result.top_paths for s in p.steps}
    pairs = {
        ((a.module, a.branch, a.head), (b.module, b.branch, b.head))
        for p in result.top_paths
        for a, b in zip(p.steps, p.steps[1:])
    }
    assert len(root.findall(f"{ns}g")) == len(keys)
    assert len(root.findall(f"{ns}line")) == len(pairs)
    # every node can be hovered for its hops
    assert all(g.find(f"{ns}title") is not None for g in root.findall(f"{ns}g"))


def test_several_inputs_get_a_comparison_table(run) -> None:
    import xml.etree.ElementTree as ET

    model, result = run
    second = dataclasses.replace(result, index=1, output=-1.25)
    page = render_html_report(ExplainReport(model, [result, second], top_k=3))
    start = page.index('<section class="card"><h2>Inputs compared</h2>')
    table = page[page.index("<table>", start) : page.index("</table>", start) + 8]
    rows = ET.fromstring(table).findall("tr")[1:]
    assert [row.find("td").text for row in rows] == ["1", "2"]
    assert rows[1].findall("td")[2].text == "-1.25"  # each row is its own input
    single = render_html_report(ExplainReport(model, [result], top_k=3))
    assert "Inputs compared" not in single


def test_the_branch_flow_diagram_draws_each_branch_by_its_share() -> None:
    """One band per (layer, branch) on a two-layer BERT, its width the share of the
    layer input's elements whose best path enters through that branch. The shares
    are recomputed here from a sweep of our own: the paper's top branch per element,
    with the branches merged by the semiring's ⊕."""
    import re
    import xml.etree.ElementTree as ET

    import torch
    from builders import tiny_bert_config
    from transformers import BertForSequenceClassification

    import captum_semiring as cs
    from captum_semiring.analysis.branch_flow import (
        TRANSFORMER_BRANCHES,
        transformer_branch,
    )
    from captum_semiring.analysis.explain import (
        forward_logits,
        prepare_target,
        token_example,
    )
    from captum_semiring.analysis.models import from_module

    torch.manual_seed(0)
    model = from_module(BertForSequenceClassification(tiny_bert_config()).eval())
    example = token_example(model, [3, 7, 12, 5, 3, 9])
    result = explain(model, example, ig_steps=0, top_k=1, plots=False)
    page = render_html_report(ExplainReport(model, [result], top_k=1))
    (svg,) = re.findall(r"<svg class=\"branchflow\".*?</svg>", page, flags=re.S)
    ns = "{http://www.w3.org/2000/svg}"
    root = ET.fromstring(svg)
    bars = [r for r in root.iter(f"{ns}rect") if r.get("class") == "node"]
    (full,) = {float(r.get("height", 0)) for r in bars}  # all the flow
    bands = {
        (g.get("data-layer"), g.get("data-branch")): g
        for g in root.iter(f"{ns}g")
        if g.get("class") == "band"
    }

    target, _ = prepare_target(model, example)
    inputs = [(name, cs.layer_input(m)) for name, m in model.encoder_layers]
    with cs.record(*[li for _, li in inputs]) as graph:
        out = target.fn(forward_logits(model, example.ids, example.extra))
    sr = cs.MaxProduct()
    res = graph.backward(out, sr)
    assert len(bars) == len(inputs) + 1 == 3
    assert set(bands) == {(n, b) for n, _ in inputs for b in TRANSFORMER_BRANCHES}
    seen = []
    for name, li in inputs:
        flow = res.branch_flow(li)
        per_branch = []
        for branch in TRANSFORMER_BRANCHES:
            rows = [
                v
                for label, v in zip(flow.labels, flow.values)
                if transformer_branch(label, name) == branch
            ]
            merged = rows[0]
            for v in rows[1:]:
                merged = sr.plus(merged, v)
            per_branch.append(sr.finalize(merged).flatten())
        best = torch.stack(per_branch)  # (branch, element)
        flowing = (best != 0).any(0)
        winner = best.argmax(0)[flowing]
        for j, branch in enumerate(TRANSFORMER_BRANCHES):
            share = float((winner == j).sum()) / int(flowing.sum())
            band = bands[(name, branch)]
            (path,) = band.findall(f"{ns}path")
            assert float(path.get("stroke-width", -1)) / full == pytest.approx(
                share, abs=1e-4
            ), (name, branch)
            title = band.findtext(f"{ns}title") or ""
            assert f"{name}: {branch}" in title and f"share {share:.6g}" in title
            assert "MaxProduct(sign='positive')" in title
            seen.append(share)
    assert any(0 < s < 1 for s in seen)  # not all the flow in one branch
