"""The architecture zoo of issue 12: tiny random-init models and the checks run on each.

Every case is built by a function ``build() -> ZooCase``. A case carries the model in
float64 eval mode, a padded batch of 2 examples (the second one padded: right padding
for encoders, left padding for decoders, with an attention mask), the source to record
(a module, usually the input embeddings, or a float input tensor) and a function that
reduces the model output to one scalar per example.

:func:`check` runs the checks and raises a distinct exception class per kind of
failure, so that a test can mark a known failure with ``xfail(raises=...)``:

- :class:`Mismatch`: SumProduct differs from ``torch.autograd.grad`` (a silent wrong
  answer), a path's hop weights do not multiply to its value, or the unpadded example's
  result changes when a padded example is batched with it;
- :class:`NonFinite`: a finalized MaxProduct, Entropy or TopK(2) result (or the
  SumProduct one) has a NaN or an inf;
- :class:`captum_semiring.rules.UnsupportedOpError`: an op without a rule, raised by
  the recorder (clean, naming the op);
- anything else is a crash.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

import captum_semiring as cs

SEQ = 6
VOCAB = 64
HIDDEN = 32
HEADS = 2
FFN = 64


class Mismatch(AssertionError):
    """A wrong number: SumProduct != autograd, path product != value, or padding leaks."""


class NonFinite(AssertionError):
    """A finalized semiring result has a NaN or an inf for finite inputs."""


@dataclass
class ZooCase:
    model: nn.Module
    # runs the model on the batch given as keyword arguments
    inputs: dict[str, Any]
    output_fn: Callable[[Any], Tensor]
    # an nn.Module (its output is the source), the name of a float input in
    # ``inputs``, or a parameter
    source: nn.Module | str | Tensor
    # the inputs of example 0 (unpadded) alone, or None where that check is skipped
    alone: dict[str, Any] | None = None
    call: Callable[..., Any] | None = None
    notes: list[str] = field(default_factory=list)

    def run(self, inputs: dict[str, Any]) -> Any:
        return (self.call or self.model)(**inputs)


# ---------------------------------------------------------------------------------
# batches


def _ids(seed: int = 0) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(3, VOCAB, (2, SEQ), generator=g)


def encoder_batch(pad_id: int = 0) -> tuple[Tensor, Tensor]:
    """Right padding: example 1 has 4 real tokens and 2 pads."""
    ids = _ids()
    mask = torch.ones(2, SEQ, dtype=torch.long)
    mask[1, 4:] = 0
    ids[1, 4:] = pad_id
    return ids, mask


def decoder_batch(pad_id: int = 0) -> tuple[Tensor, Tensor]:
    """Left padding: example 1 has 2 pads, then 4 real tokens."""
    ids = _ids()
    mask = torch.ones(2, SEQ, dtype=torch.long)
    mask[1, :2] = 0
    ids[1, :2] = pad_id
    return ids, mask


def _first(inputs: dict[str, Any]) -> dict[str, Any]:
    return {k: v[:1] if isinstance(v, Tensor) else v for k, v in inputs.items()}


def _prepare(model: nn.Module) -> nn.Module:
    return model.double().eval()


# ---------------------------------------------------------------------------------
# Hugging Face models


def _hf_model(
    cls_name: str, config_name: str, impl: str | None, **config: Any
) -> nn.Module:
    import transformers

    torch.manual_seed(0)
    cfg = getattr(transformers, config_name)(**config)
    cls = getattr(transformers, cls_name)
    if impl is None:
        return _prepare(cls(cfg))
    cfg._attn_implementation = impl
    return _prepare(cls._from_config(cfg, attn_implementation=impl))


COMMON = dict(
    vocab_size=VOCAB,
    hidden_size=HIDDEN,
    num_hidden_layers=2,
    num_attention_heads=HEADS,
    intermediate_size=FFN,
    max_position_embeddings=32,
    pad_token_id=0,
    bos_token_id=1,
    eos_token_id=2,
)


def _encoder(
    cls_name: str, config_name: str, impl: str | None, **config: Any
) -> ZooCase:
    settings = dict(COMMON, num_labels=3)
    settings.update(config)
    model = _hf_model(cls_name, config_name, impl, **settings)
    ids, mask = encoder_batch(settings.get("pad_token_id") or 0)
    inputs = {"input_ids": ids, "attention_mask": mask}
    return ZooCase(
        model,
        inputs,
        lambda out: out.logits[:, 1],
        model.get_input_embeddings(),
        alone=_first(inputs),
    )


def additive_causal_mask(mask: Tensor, value: float = -1e9) -> Tensor:
    """The (batch, 1, query, key) additive mask of a causal model on a padded batch,
    with a finite ``value`` where a key is hidden."""
    n = mask.shape[1]
    allowed = torch.ones(n, n, dtype=torch.bool).tril() & mask[:, None, None, :].bool()
    return torch.zeros(allowed.shape, dtype=torch.float64).masked_fill(~allowed, value)


def _decoder(
    cls_name: str,
    config_name: str,
    impl: str | None,
    mask4d: bool = False,
    positions: bool = False,
    eager_right_pad: bool = False,
    **config: Any,
) -> ZooCase:
    """A causal LM on a left-padded batch; the output is a fixed token's logit at the
    last position.

    Many of these models' eager attention computes its softmax in float32, where their
    own float64 mask value, finfo(float64).min, becomes -inf: a query row whose keys
    are all padding (every left pad) is then NaN in plain PyTorch, before any
    recording. For them, with eager attention:

    - ``mask4d``: the mask is passed ready-made, 4-d and additive with -1e9 (as
      older Hugging Face code did); ``positions`` also passes the position ids that
      the model would infer from a 2-d mask;
    - ``eager_right_pad``: the batch is right-padded instead (BLOOM, whose ALiBi
      needs the 2-d mask), and the output is taken at each example's last real token.
    """
    settings = dict(COMMON)
    settings.update(config)
    model = _hf_model(cls_name, config_name, impl, **settings)
    pad_id = settings.get("pad_token_id") or 0
    eager = impl == "eager"
    if eager and eager_right_pad:
        ids, mask = encoder_batch(pad_id)
    else:
        ids, mask = decoder_batch(pad_id)
    inputs: dict[str, Any] = {
        "input_ids": ids,
        "attention_mask": mask,
        "use_cache": False,
    }
    if eager and mask4d:
        inputs["attention_mask"] = additive_causal_mask(mask)
        if positions:
            inputs["position_ids"] = (mask.cumsum(1) * mask - 1).clamp(min=0)
    last = mask.sum(1) - 1 if eager and eager_right_pad else torch.full((2,), SEQ - 1)

    def output_fn(out: Any) -> Tensor:
        # the last real position of each example
        return out.logits[
            torch.arange(out.logits.shape[0]), last[: out.logits.shape[0]], 7
        ]

    return ZooCase(
        model, inputs, output_fn, model.get_input_embeddings(), alone=_first(inputs)
    )


def _seq2seq(
    cls_name: str, config_name: str, impl: str | None, **config: Any
) -> ZooCase:
    """Encoder-decoder: the encoder's inputs_embeds are the source (the shared
    embedding also runs on the decoder ids, so it is not one tensor)."""
    model = _hf_model(cls_name, config_name, impl, **config)
    ids, mask = encoder_batch(0)
    with torch.no_grad():
        embeds = model.get_input_embeddings()(ids).detach().clone()
    decoder_ids = torch.tensor([[0, 5, 9, 4], [0, 11, 3, 8]])
    inputs = {
        "inputs_embeds": embeds,
        "attention_mask": mask,
        "decoder_input_ids": decoder_ids,
        "use_cache": False,
    }
    return ZooCase(
        model,
        inputs,
        lambda out: out.logits[:, -1, 7],
        "inputs_embeds",
        alone=_first(inputs),
    )


def _vision(
    cls_name: str,
    config_name: str,
    impl: str | None,
    output: str = "logits",
    **config: Any,
) -> ZooCase:
    model = _hf_model(cls_name, config_name, impl, **config)
    g = torch.Generator().manual_seed(0)
    size = config.get("image_size", 16)
    pixels = torch.randn(
        2, config.get("num_channels", 3), size, size, generator=g, dtype=torch.float64
    )
    inputs = {"pixel_values": pixels}
    if output == "logits":
        fn = lambda out: out.logits[:, 1]
    else:
        fn = lambda out: out.pooler_output[:, 1]
    return ZooCase(model, inputs, fn, "pixel_values", alone=_first(inputs))


LLAMA_LIKE = dict(num_key_value_heads=1, head_dim=16)

# name -> (builder, attention implementations; None = the model has no attention switch)
HF: dict[str, tuple[Callable[[str | None], ZooCase], tuple[str | None, ...]]] = {
    "bert": (
        lambda impl: _encoder("BertForSequenceClassification", "BertConfig", impl),
        ("eager", "sdpa"),
    ),
    "roberta": (
        lambda impl: _encoder(
            "RobertaForSequenceClassification",
            "RobertaConfig",
            impl,
            pad_token_id=1,
            max_position_embeddings=40,
        ),
        ("eager", "sdpa"),
    ),
    "distilbert": (
        lambda impl: _encoder(
            "DistilBertForSequenceClassification",
            "DistilBertConfig",
            impl,
            dim=HIDDEN,
            n_layers=2,
            n_heads=HEADS,
            hidden_dim=FFN,
        ),
        ("eager", "sdpa"),
    ),
    "albert": (
        lambda impl: _encoder(
            "AlbertForSequenceClassification", "AlbertConfig", impl, embedding_size=16
        ),
        ("eager", "sdpa"),
    ),
    "electra": (
        lambda impl: _encoder(
            "ElectraForSequenceClassification", "ElectraConfig", impl, embedding_size=16
        ),
        ("eager", "sdpa"),
    ),
    "deberta-v2": (
        lambda impl: _encoder(
            "DebertaV2ForSequenceClassification",
            "DebertaV2Config",
            impl,
            relative_attention=True,
            position_buckets=8,
            pos_att_type=["p2c", "c2p"],
        ),
        ("eager", "sdpa"),
    ),
    "xlm-roberta": (
        lambda impl: _encoder(
            "XLMRobertaForSequenceClassification",
            "XLMRobertaConfig",
            impl,
            pad_token_id=1,
            max_position_embeddings=40,
        ),
        ("eager", "sdpa"),
    ),
    "modernbert": (
        lambda impl: _encoder(
            "ModernBertForSequenceClassification",
            "ModernBertConfig",
            impl,
            global_attn_every_n_layers=2,
            local_attention=4,
            cls_token_id=1,
            sep_token_id=2,
        ),
        ("eager", "sdpa"),
    ),
    "gpt2": (
        lambda impl: _decoder("GPT2LMHeadModel", "GPT2Config", impl, n_inner=FFN),
        ("eager", "sdpa"),
    ),
    "gpt-neo": (
        lambda impl: _decoder(
            "GPTNeoForCausalLM",
            "GPTNeoConfig",
            impl,
            num_layers=2,
            num_heads=HEADS,
            attention_types=[[["global", "local"], 1]],
            window_size=4,
        ),
        ("eager", "sdpa"),
    ),
    "gptj": (
        lambda impl: _decoder(
            "GPTJForCausalLM",
            "GPTJConfig",
            impl,
            n_embd=HIDDEN,
            n_layer=2,
            n_head=HEADS,
            rotary_dim=8,
            n_inner=FFN,
        ),
        ("eager", "sdpa"),
    ),
    "gpt-neox": (
        lambda impl: _decoder(
            "GPTNeoXForCausalLM", "GPTNeoXConfig", impl, mask4d=True, rotary_pct=0.5
        ),
        ("eager", "sdpa"),
    ),
    "opt": (
        lambda impl: _decoder(
            "OPTForCausalLM",
            "OPTConfig",
            impl,
            mask4d=True,
            positions=True,
            ffn_dim=FFN,
            word_embed_proj_dim=HIDDEN,
        ),
        ("eager", "sdpa"),
    ),
    "bloom": (
        lambda impl: _decoder(
            "BloomForCausalLM",
            "BloomConfig",
            impl,
            eager_right_pad=True,
            n_layer=2,
            n_head=HEADS,
        ),
        ("eager", "sdpa"),
    ),
    "llama": (
        lambda impl: _decoder(
            "LlamaForCausalLM", "LlamaConfig", impl, mask4d=True, **LLAMA_LIKE
        ),
        ("eager", "sdpa"),
    ),
    "mistral": (
        lambda impl: _decoder(
            "MistralForCausalLM",
            "MistralConfig",
            impl,
            mask4d=True,
            sliding_window=4,
            **LLAMA_LIKE,
        ),
        ("eager", "sdpa"),
    ),
    "qwen2": (
        lambda impl: _decoder(
            "Qwen2ForCausalLM", "Qwen2Config", impl, mask4d=True, **LLAMA_LIKE
        ),
        ("eager", "sdpa"),
    ),
    "qwen3": (
        lambda impl: _decoder(
            "Qwen3ForCausalLM", "Qwen3Config", impl, mask4d=True, **LLAMA_LIKE
        ),
        ("eager", "sdpa"),
    ),
    "gemma": (
        lambda impl: _decoder(
            "GemmaForCausalLM", "GemmaConfig", impl, mask4d=True, **LLAMA_LIKE
        ),
        ("eager", "sdpa"),
    ),
    "gemma2": (
        lambda impl: _decoder(
            "Gemma2ForCausalLM",
            "Gemma2Config",
            impl,
            mask4d=True,
            sliding_window=4,
            **LLAMA_LIKE,
        ),
        ("eager", "sdpa"),
    ),
    "gemma3": (
        lambda impl: _decoder(
            "Gemma3ForCausalLM",
            "Gemma3TextConfig",
            impl,
            mask4d=True,
            sliding_window=4,
            **LLAMA_LIKE,
        ),
        ("eager", "sdpa"),
    ),
    "phi": (
        lambda impl: _decoder(
            "PhiForCausalLM", "PhiConfig", impl, mask4d=True, partial_rotary_factor=0.5
        ),
        ("eager", "sdpa"),
    ),
    "phi3": (
        lambda impl: _decoder(
            "Phi3ForCausalLM", "Phi3Config", impl, mask4d=True, num_key_value_heads=1
        ),
        ("eager", "sdpa"),
    ),
    "falcon": (
        lambda impl: _decoder(
            "FalconForCausalLM",
            "FalconConfig",
            impl,
            new_decoder_architecture=True,
            num_kv_heads=1,
            ffn_hidden_size=FFN,
        ),
        ("eager", "sdpa"),
    ),
    "olmo": (
        lambda impl: _decoder(
            "OlmoForCausalLM", "OlmoConfig", impl, mask4d=True, num_key_value_heads=1
        ),
        ("eager", "sdpa"),
    ),
    "mixtral": (
        lambda impl: _decoder(
            "MixtralForCausalLM",
            "MixtralConfig",
            impl,
            mask4d=True,
            num_local_experts=4,
            num_experts_per_tok=2,
            experts_implementation="eager",
            **LLAMA_LIKE,
        ),
        ("eager", "sdpa"),
    ),
    "qwen3-moe": (
        lambda impl: _decoder(
            "Qwen3MoeForCausalLM",
            "Qwen3MoeConfig",
            impl,
            mask4d=True,
            num_experts=4,
            num_experts_per_tok=2,
            moe_intermediate_size=32,
            decoder_sparse_step=1,
            experts_implementation="eager",
            **LLAMA_LIKE,
        ),
        ("eager", "sdpa"),
    ),
    # the experts as one batched matmul over all experts (transformers' "batched_mm");
    # its default, "grouped_mm", runs torch._grouped_mm, which has no float64 kernel
    # on CPU (plain PyTorch fails before any recording)
    "mixtral-bmm": (
        lambda impl: _decoder(
            "MixtralForCausalLM",
            "MixtralConfig",
            impl,
            num_local_experts=4,
            num_experts_per_tok=2,
            experts_implementation="batched_mm",
            **LLAMA_LIKE,
        ),
        ("sdpa",),
    ),
    "qwen3-moe-bmm": (
        lambda impl: _decoder(
            "Qwen3MoeForCausalLM",
            "Qwen3MoeConfig",
            impl,
            num_experts=4,
            num_experts_per_tok=2,
            moe_intermediate_size=32,
            decoder_sparse_step=1,
            experts_implementation="batched_mm",
            **LLAMA_LIKE,
        ),
        ("sdpa",),
    ),
    "mamba": (
        lambda impl: _decoder(
            "MambaForCausalLM",
            "MambaConfig",
            None,
            state_size=4,
            expand=2,
            conv_kernel=3,
            time_step_rank=4,
        ),
        (None,),
    ),
    "mamba2": (
        lambda impl: _decoder(
            "Mamba2ForCausalLM",
            "Mamba2Config",
            None,
            num_heads=4,
            head_dim=16,
            expand=2,
            state_size=4,
            n_groups=1,
            conv_kernel=3,
            chunk_size=4,
        ),
        (None,),
    ),
    "t5": (
        lambda impl: _seq2seq(
            "T5ForConditionalGeneration",
            "T5Config",
            impl,
            vocab_size=VOCAB,
            d_model=HIDDEN,
            d_kv=16,
            d_ff=FFN,
            num_layers=2,
            num_decoder_layers=2,
            num_heads=HEADS,
            relative_attention_num_buckets=8,
            decoder_start_token_id=0,
            pad_token_id=0,
            eos_token_id=2,
        ),
        ("eager", "sdpa"),
    ),
    "bart": (
        lambda impl: _seq2seq(
            "BartForConditionalGeneration",
            "BartConfig",
            impl,
            vocab_size=VOCAB,
            d_model=HIDDEN,
            encoder_layers=2,
            decoder_layers=2,
            encoder_attention_heads=HEADS,
            decoder_attention_heads=HEADS,
            encoder_ffn_dim=FFN,
            decoder_ffn_dim=FFN,
            max_position_embeddings=32,
            pad_token_id=1,
            bos_token_id=0,
            eos_token_id=2,
            decoder_start_token_id=2,
        ),
        ("eager", "sdpa"),
    ),
    "vit": (
        lambda impl: _vision(
            "ViTForImageClassification",
            "ViTConfig",
            impl,
            image_size=16,
            patch_size=4,
            hidden_size=HIDDEN,
            num_hidden_layers=2,
            num_attention_heads=HEADS,
            intermediate_size=FFN,
            num_labels=3,
        ),
        ("eager", "sdpa"),
    ),
    "swin": (
        lambda impl: _vision(
            "SwinForImageClassification",
            "SwinConfig",
            impl,
            image_size=16,
            patch_size=2,
            embed_dim=16,
            depths=[1, 1],
            num_heads=[2, 2],
            window_size=2,
            num_labels=3,
        ),
        ("eager", "sdpa"),
    ),
    "convnext": (
        lambda impl: _vision(
            "ConvNextForImageClassification",
            "ConvNextConfig",
            None,
            image_size=16,
            patch_size=2,
            hidden_sizes=[8, 16],
            depths=[1, 1],
            num_stages=2,
            num_labels=3,
        ),
        (None,),
    ),
    "resnet": (
        lambda impl: _vision(
            "ResNetForImageClassification",
            "ResNetConfig",
            None,
            image_size=16,
            embedding_size=8,
            hidden_sizes=[8, 16],
            depths=[1, 1],
            layer_type="basic",
            num_labels=3,
        ),
        (None,),
    ),
    "clip-vision": (
        lambda impl: _vision(
            "CLIPVisionModel",
            "CLIPVisionConfig",
            impl,
            output="pooler",
            image_size=16,
            patch_size=4,
            hidden_size=HIDDEN,
            num_hidden_layers=2,
            num_attention_heads=HEADS,
            intermediate_size=FFN,
        ),
        ("eager", "sdpa"),
    ),
}


# ---------------------------------------------------------------------------------
# plain torch


class _EncoderLayer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.TransformerEncoderLayer(
            16, 2, 32, dropout=0.1, batch_first=True
        )

    def forward(self, x: Tensor, pad: Tensor) -> Tensor:
        return self.layer(x, src_key_padding_mask=pad)


class _DecoderLayer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.TransformerDecoderLayer(
            16, 2, 32, dropout=0.1, batch_first=True, norm_first=True
        )

    def forward(self, x: Tensor, memory: Tensor, pad: Tensor) -> Tensor:
        causal = nn.Transformer.generate_square_subsequent_mask(
            x.shape[1], dtype=x.dtype
        )
        return self.layer(
            x,
            memory,
            tgt_mask=causal,
            tgt_is_causal=True,
            tgt_key_padding_mask=pad,
            memory_key_padding_mask=pad,
        )


class _MHA(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(16, 4, batch_first=True, kdim=12, vdim=12)

    def forward(self, x: Tensor, kv: Tensor, pad: Tensor) -> Tensor:
        out, weights = self.attn(x, kv, kv, key_padding_mask=pad)
        return out + weights.sum(-1, keepdim=True)


class _Recurrent(nn.Module):
    def __init__(self, cell: type[nn.Module], bidirectional: bool) -> None:
        super().__init__()
        self.rnn = cell(
            6, 8, num_layers=2, batch_first=True, bidirectional=bidirectional
        )

    def forward(self, x: Tensor) -> Tensor:
        out, _ = self.rnn(x)
        return out[:, -1]


class _Packed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.LSTM(6, 8, num_layers=1, batch_first=True, bidirectional=True)

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        packed = nn.utils.rnn.pack_padded_sequence(
            x, lengths, batch_first=True, enforce_sorted=False
        )
        out, (h, _) = self.rnn(packed)
        padded, _ = nn.utils.rnn.pad_packed_sequence(
            out, batch_first=True, total_length=x.shape[1]
        )
        return padded.sum(1)[:, :8] + h[-1]


class _Bag(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.bag = nn.EmbeddingBag(20, 8, mode="mean")
        self.head = nn.Linear(8, 3)

    def forward(self, ids: Tensor, offsets: Tensor) -> Tensor:
        return self.head(torch.tanh(self.bag(ids, offsets)))


def _x(*shape: int, seed: int = 0) -> Tensor:
    return torch.randn(
        *shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64
    )


def _pad_mask() -> Tensor:
    pad = torch.zeros(2, 5, dtype=torch.bool)
    pad[1, 3:] = True
    return pad


def _torch_encoder(impl: str | None) -> ZooCase:
    torch.manual_seed(0)
    model = _prepare(_EncoderLayer())
    inputs = {"x": _x(2, 5, 16), "pad": _pad_mask()}
    return ZooCase(model, inputs, lambda out: out[:, 0, 1], "x", alone=_first(inputs))


def _torch_decoder(impl: str | None) -> ZooCase:
    torch.manual_seed(0)
    model = _prepare(_DecoderLayer())
    inputs = {"x": _x(2, 5, 16), "memory": _x(2, 5, 16, seed=1), "pad": _pad_mask()}
    return ZooCase(model, inputs, lambda out: out[:, 2, 1], "x", alone=_first(inputs))


def _torch_mha(impl: str | None) -> ZooCase:
    torch.manual_seed(0)
    model = _prepare(_MHA())
    inputs = {"x": _x(2, 4, 16), "kv": _x(2, 5, 12, seed=1), "pad": _pad_mask()}
    return ZooCase(model, inputs, lambda out: out[:, 1, 3], "kv", alone=_first(inputs))


def _torch_rnn(
    cell: type[nn.Module], bidirectional: bool
) -> Callable[[str | None], ZooCase]:
    def build(impl: str | None) -> ZooCase:
        torch.manual_seed(0)
        model = _prepare(_Recurrent(cell, bidirectional))
        inputs = {"x": _x(2, 5, 6)}
        return ZooCase(model, inputs, lambda out: out[:, 1], "x", alone=_first(inputs))

    return build


def _torch_packed(impl: str | None) -> ZooCase:
    torch.manual_seed(0)
    model = _prepare(_Packed())
    x = _x(2, 5, 6)
    x[1, 3:] = 0.0
    inputs = {"x": x, "lengths": torch.tensor([5, 3])}
    return ZooCase(
        model,
        inputs,
        lambda out: out[:, 1],
        "x",
        alone={"x": x[:1], "lengths": torch.tensor([5])},
    )


def _torch_bag(impl: str | None) -> ZooCase:
    torch.manual_seed(0)
    model = _prepare(_Bag())
    inputs = {
        "ids": torch.tensor([3, 7, 7, 12, 1, 5, 9]),
        "offsets": torch.tensor([0, 4]),
    }
    # the table is the source, so the bag lookup itself is recorded
    return ZooCase(model, inputs, lambda out: out[:, 2], model.bag.weight, alone=None)


TORCH: dict[str, tuple[Callable[[str | None], ZooCase], tuple[str | None, ...]]] = {
    "torch-encoder-layer": (_torch_encoder, (None,)),
    "torch-decoder-layer": (_torch_decoder, (None,)),
    "torch-mha": (_torch_mha, (None,)),
    "torch-bilstm": (_torch_rnn(nn.LSTM, True), (None,)),
    "torch-packed-lstm": (_torch_packed, (None,)),
    "torch-gru": (_torch_rnn(nn.GRU, False), (None,)),
    "torch-embedding-bag": (_torch_bag, (None,)),
}


def _torchvision(name: str, **kwargs: Any) -> Callable[[str | None], ZooCase]:
    """A torchvision model, random init, on two 32×32 images (logit 1)."""

    def build(impl: str | None) -> ZooCase:
        import torchvision

        torch.manual_seed(0)
        make = getattr(torchvision.models, name)
        # builder functions take weights=; a model class is random-init already
        model = _prepare(
            make(**kwargs) if isinstance(make, type) else make(weights=None, **kwargs)
        )
        inputs = {"x": _x(2, 3, 32, 32)}
        return ZooCase(model, inputs, lambda out: out[:, 1], "x", alone=_first(inputs))

    return build


# ViT-B/16 itself is 86M parameters: the same class at a tiny size.
_TINY_VIT = dict(
    image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64
)

# Only where torchvision imports: no release of it loads beside this project's
# torch 2.13 CPU build (PyPI's fails with "operator torchvision::nms does not exist").
TORCHVISION: dict[
    str, tuple[Callable[[str | None], ZooCase], tuple[str | None, ...]]
] = {
    f"torchvision-{name}": (_torchvision(builder, **kwargs), (None,))
    for name, builder, kwargs in (
        ("resnet18", "resnet18", {}),
        ("mobilenet_v3_small", "mobilenet_v3_small", {}),
        ("efficientnet_b0", "efficientnet_b0", {}),
        ("vit", "VisionTransformer", _TINY_VIT),
        ("convnext_tiny", "convnext_tiny", {}),
        ("densenet121", "densenet121", {}),
        ("regnet_y_400mf", "regnet_y_400mf", {}),
    )
}


def torchvision_available() -> bool:
    try:
        import torchvision  # noqa: F401
    except Exception:
        return False
    return True


ZOO = {**HF, **TORCH, **(TORCHVISION if torchvision_available() else {})}

# the installed transformers refuses attn_implementation="sdpa" for these
NO_SDPA = {"deberta-v2", "gpt-neo", "bloom", "gemma2"}


def case_ids() -> list[str]:
    """``name`` or ``name-impl`` for every architecture x attention implementation."""
    return [
        name if impl is None else f"{name}-{impl}"
        for name, (_, impls) in ZOO.items()
        for impl in impls
        if not (impl == "sdpa" and name in NO_SDPA)
    ]


def build(case_id: str) -> ZooCase:
    for name, (builder, impls) in ZOO.items():
        for impl in impls:
            if impl == "sdpa" and name in NO_SDPA:
                continue
            if case_id == (name if impl is None else f"{name}-{impl}"):
                return builder(impl)
    raise KeyError(case_id)


# ---------------------------------------------------------------------------------
# the checks


def _reference(case: ZooCase, inputs: dict[str, Any]) -> tuple[Tensor, Tensor]:
    """(output, d sum(output) / d source) by plain autograd."""
    captured: list[Tensor] = []
    inputs = dict(inputs)
    if isinstance(case.source, nn.Module):
        handle = case.source.register_forward_hook(
            lambda m, a, out: captured.append(out)
        )
    elif isinstance(case.source, Tensor):
        handle = None
        captured.append(case.source)
    else:
        handle = None
        inputs[case.source] = inputs[case.source].detach().clone().requires_grad_(True)
        captured.append(inputs[case.source])
    try:
        with torch.enable_grad():
            out = case.output_fn(case.run(inputs))
            if len(captured) != 1:
                raise RuntimeError(f"the source ran {len(captured)} times")
            (grad,) = torch.autograd.grad(out.sum(), captured, allow_unused=True)
    finally:
        if handle is not None:
            handle.remove()
    if grad is None:
        grad = torch.zeros_like(captured[0])
    return out.detach(), grad


def _record(case: ZooCase, inputs: dict[str, Any]) -> tuple[Any, Any, Tensor]:
    """(graph, source key, output) of one recording."""
    inputs = dict(inputs)
    if isinstance(case.source, (nn.Module, Tensor)):
        key: Any = case.source
    else:
        key = inputs[case.source] = inputs[case.source].detach().clone()
    with cs.record(key) as graph:
        out = case.output_fn(case.run(inputs))
    return graph, key, out


def _finite(name: str, t: Tensor) -> None:
    if not bool(torch.isfinite(t).all()):
        bad = (~torch.isfinite(t)).sum().item()
        raise NonFinite(f"{name}: {bad} of {t.numel()} finalized values are NaN or inf")


def check(case: ZooCase, padding: bool = True) -> None:
    """All of the zoo's checks on one case; see the module docstring."""
    want_out, want = _reference(case, case.inputs)
    graph, key, out = _record(case, case.inputs)
    torch.testing.assert_close(out.detach(), want_out, rtol=1e-9, atol=1e-12)

    got = graph.backward(out, cs.SumProduct())[key]
    _finite("SumProduct", got)
    # atol relative to the gradient's scale: models that compute a norm or a softmax
    # in float32 inside a float64 model (OLMo's LayerNorm, Mamba2's gated RMSNorm,
    # eager softmax) agree with autograd to about 1e-7 of the largest gradient.
    atol = 1e-6 * float(want.abs().max()) + 1e-12
    if not torch.allclose(got, want, rtol=1e-6, atol=atol):
        err = (got - want).abs().max().item()
        raise Mismatch(
            f"SumProduct != autograd: max abs error {err:.3g} (max |grad| {want.abs().max().item():.3g})"
        )

    for semiring in (cs.MaxProduct(), cs.Entropy(), cs.TopK(2)):
        res = graph.backward(out, semiring)
        _finite(repr(semiring), res[key])
        if isinstance(semiring, cs.MaxProduct):
            values = res[key]
            # the best element of example 0 (of the whole tensor for a parameter)
            part = values if isinstance(case.source, Tensor) else values[:1]
            flat = torch.tensor(int(part.abs().argmax()))
            index = tuple(int(i) for i in torch.unravel_index(flat, part.shape))
            path = res.path(key, index)
            if not math.isclose(
                path.product(), path.value, rel_tol=1e-6, abs_tol=1e-12
            ):
                raise Mismatch(
                    f"path hop weights multiply to {path.product()!r}, not the path value {path.value!r}"
                )
            if not math.isclose(
                path.value, float(values[index]), rel_tol=1e-6, abs_tol=1e-12
            ):
                raise Mismatch(
                    f"path value {path.value!r} != MaxProduct result {float(values[index])!r}"
                )

    if padding and case.alone is not None:
        graph1, key1, out1 = _record(case, case.alone)
        alone = graph1.backward(out1, cs.SumProduct())[key1]
        if not torch.allclose(got[:1], alone, rtol=1e-6, atol=atol):
            err = (got[:1] - alone).abs().max().item()
            raise Mismatch(
                f"example 0 batched with a padded example differs from it alone: {err:.3g}"
            )
