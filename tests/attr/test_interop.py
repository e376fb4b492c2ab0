"""Captum's wrappers, metrics and visualizations work with the semiring classes."""

from __future__ import annotations

import pytest
import torch
from attr_models import MiniLMHead, hooks_of
from captum.attr import (
    IntegratedGradients,
    LayerIntegratedGradients,
    LLMGradientAttribution,
    NoiseTunnel,
    TextTokenInput,
)
from captum.attr import visualization as viz
from captum.metrics import infidelity, sensitivity_max

import captum_semiring as cs


@pytest.mark.parametrize("nt_type", ["smoothgrad", "smoothgrad_sq", "vargrad"])
def test_noise_tunnel_with_tuple_inputs(two_input, nt_type):
    model, inputs, args = two_input
    kwargs = dict(
        nt_type=nt_type,
        nt_samples=4,
        stdevs=0.1,
        target=[0, 2, 1],
        additional_forward_args=args,
        baselines=(0.0, 0.0),
        n_steps=5,
    )
    torch.manual_seed(3)
    got = NoiseTunnel(
        cs.SemiringAttribution(model, "sum", multiply_by_inputs=True)
    ).attribute(inputs, **kwargs)
    torch.manual_seed(3)
    ref = NoiseTunnel(IntegratedGradients(model)).attribute(inputs, **kwargs)
    assert all(torch.allclose(g, r, atol=1e-6) for g, r in zip(got, ref))
    for explainer in (cs.TopGradientPath(model), cs.GradientEntropy(model)):
        tunnel = NoiseTunnel(explainer)
        assert tunnel.multiplies_by_inputs is False
        smooth = tunnel.attribute(inputs, **kwargs)
        assert isinstance(smooth, tuple)
        assert [s.shape for s in smooth] == [x.shape for x in inputs]
        assert all(torch.isfinite(s).all() for s in smooth)


def test_noise_tunnel_returns_deltas(titanic):
    model, x = titanic
    tunnel = NoiseTunnel(cs.SemiringAttribution(model, "sum", multiply_by_inputs=True))
    attr, delta = tunnel.attribute(
        x,
        nt_samples=3,
        stdevs=0.05,
        target=1,
        n_steps=40,
        return_convergence_delta=True,
    )
    assert attr.shape == x.shape and delta.shape == (3 * x.shape[0],)
    assert delta.abs().max() < 1e-3


def test_infidelity_and_sensitivity(titanic):
    model, x = titanic

    def perturb(inputs):
        noise = torch.randn_like(inputs) * 0.01
        return noise, inputs - noise

    for explainer in (cs.TopGradientPath(model), cs.GradientEntropy(model)):
        attr = explainer.attribute(x, target=1)
        torch.manual_seed(0)
        score = infidelity(model, perturb, x, attr, target=1, n_perturb_samples=4)
        assert score.shape == (x.shape[0],) and torch.isfinite(score).all()
        sens = sensitivity_max(explainer.attribute, x, target=1, n_perturb_samples=3)
        assert (
            sens.shape == (x.shape[0],)
            and torch.isfinite(sens).all()
            and (sens >= 0).all()
        )


def test_visualize_image_attr_on_cnn(cnn):
    model, x = cnn
    image = x[0].permute(1, 2, 0).numpy()
    image = (image - image.min()) / (image.max() - image.min())
    cases = [
        (cs.TopGradientPath(model, multiply_by_inputs=True), "blended_heat_map", "all"),
        (cs.TopGradientPath(model), "heat_map", "absolute_value"),
        (cs.GradientEntropy(model), "heat_map", "positive"),
    ]
    for explainer, method, sign in cases:
        attr = explainer.attribute(
            x, baselines=torch.zeros_like(x), target=2, n_steps=3
        )
        fig, ax = viz.visualize_image_attr(
            attr[0].permute(1, 2, 0).numpy(),
            image,
            method=method,
            sign=sign,
            use_pyplot=False,
        )
        assert fig is not None and ax is not None


def test_word_importances_and_visualize_text(minilm):
    model, tokenizer = minilm
    ids = tokenizer(["a movie that was very good"], return_tensors="pt")["input_ids"]
    tokens = tokenizer.convert_ids_to_tokens(ids[0])
    embeds = model.embeddings.word_embeddings(ids).detach()
    explainer = cs.GradientEntropy(
        MiniLMHead(model), aggregate_dims=-1
    )  # one entropy per token
    scores, delta = explainer.attribute(embeds, target=3, return_convergence_delta=True)
    assert scores.shape == (1, len(tokens))
    scores = scores[0] / scores.abs().max()
    html = viz.format_word_importances(tokens, scores.tolist())
    assert all(token in html for token in ("movie", "good"))
    record = viz.VisualizationDataRecord(
        scores, 0.9, 1, 1, 1, scores.sum(), tokens, delta
    )
    shown = viz.visualize_text([record])
    assert "movie" in shown.data
    assert hooks_of(model) == []


def _tiny_gpt2(vocab_size: int = 2048):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    # The MiniLM ids of the words used here are below 2048. A small vocabulary keeps
    # the log-softmax over it cheap: its Jacobian is recorded densely, V x V per row.
    config = GPT2Config(
        vocab_size=vocab_size, n_embd=16, n_layer=2, n_head=2, n_positions=64
    )
    return GPT2LMHeadModel(config).eval()


def test_llm_gradient_attribution(minilm):
    _, tokenizer = minilm
    lm = _tiny_gpt2()
    embeddings = lm.transformer.wte
    prompt = TextTokenInput("he was in the", tokenizer)
    assert (
        max(
            prompt.inp_tensor[0].tolist()
            + tokenizer.encode("of it", add_special_tokens=False)
        )
        < 2048
    )

    with pytest.raises(AssertionError, match="does not support"):
        LLMGradientAttribution(cs.SemiringLayerAttribution(lm, embeddings), tokenizer)

    llm = cs.SemiringLLMGradientAttribution(
        cs.SemiringLayerAttribution(lm, embeddings, "max"), tokenizer
    )
    result = llm.attribute(prompt, target="of it")
    assert result.token_attr.shape == (2, 6) and result.seq_attr.shape == (6,)
    assert torch.isfinite(result.token_attr).all()
    fig, ax = result.plot_seq_attr(show=False)
    assert len(ax.patches) == 2 * 6  # a positive and a negative bar per token
    fig, ax = result.plot_token_attr(show=False)
    assert fig is not None

    entropy = cs.SemiringLLMGradientAttribution(
        cs.SemiringLayerAttribution(lm, embeddings, "entropy"), tokenizer
    )
    assert (entropy.attribute(prompt, target="of it", n_steps=2).token_attr >= 0).all()

    ours = cs.SemiringLayerAttribution(lm, embeddings, "sum", multiply_by_inputs=True)
    got = cs.SemiringLLMGradientAttribution(ours, tokenizer).attribute(
        prompt, target="of it", n_steps=4
    )
    ref = LLMGradientAttribution(
        LayerIntegratedGradients(lm, embeddings), tokenizer
    ).attribute(prompt, target="of it", n_steps=4)
    assert torch.allclose(got.token_attr, ref.token_attr, atol=1e-5)
    assert hooks_of(lm) == []


def test_llm_rejects_semirings_with_several_values(minilm):
    _, tokenizer = minilm
    lm = _tiny_gpt2(vocab_size=128)
    with pytest.raises(ValueError, match="several values per element"):
        cs.SemiringLLMGradientAttribution(
            cs.SemiringLayerAttribution(lm, lm.transformer.wte, cs.TopK(2)), tokenizer
        )


def test_llm_token_value_is_the_aggregated_derivative(minilm):
    # Under MaxProduct a token's value is its best path from any embedding
    # dimension (⊕ = max over the axis), not a sum of per-dimension best paths.
    _, tokenizer = minilm
    lm = _tiny_gpt2()
    prompt = TextTokenInput("he was in the", tokenizer)
    llm = cs.SemiringLLMGradientAttribution(
        cs.SemiringLayerAttribution(lm, lm.transformer.wte, "max"), tokenizer
    )
    got = llm.attribute(prompt, target="of it").token_attr
    # the same forward function (log p of target token 0), per dimension
    per_dimension = llm.attr_method.method.attribute(
        prompt.to_tensor(),
        additional_forward_args=(prompt, llm._get_target_tokens(prompt, "of it"), 0),
    )
    assert per_dimension.shape[-1] == 16
    torch.testing.assert_close(got[0], per_dimension.amax(-1)[0])
    assert not torch.allclose(got[0], per_dimension.sum(-1)[0])
