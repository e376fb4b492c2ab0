"""Index maps: ops whose output elements are copies of input elements.

Views, casts and permutations get direct maps. Every other index map shares one rule:
the op is run on the positions ``1, 2, ...`` of its inputs and again on ``2, 3, ...``;
an output element that moved by one copies the input element it shows, and one that
did not move is a constant (padding, fill).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .._record import OpRecord, footprint
from ..semirings import Semiring
from . import UnsupportedOpError, register_decomposition, register_rule
from ._maps import Elementwise, IndexMap, LocalMap, Permute, Reshape

aten = torch.ops.aten


@register_rule(
    aten.view.default,
    aten._unsafe_view.default,
    aten.alias.default,
    aten.clone.default,
    aten._to_copy.default,
    aten.squeeze.default,
    aten.squeeze.dim,
    aten.squeeze.dims,
    aten.unsqueeze.default,
    copies=True,
)
def reshape_rule(call: OpRecord) -> dict[tuple[int, int], Reshape]:
    ((i, _),) = call.inputs
    return {(i, 0): Reshape(tuple(call.leaves[i].shape), tuple(call.output(0).shape))}


@register_rule(aten.permute.default, aten.transpose.int, aten.t.default, copies=True)
def permute_rule(call: OpRecord) -> dict[tuple[int, int], Permute]:
    ((i, _),) = call.inputs
    x = call.leaves[i]
    nd = x.dim()
    if call.func is aten.permute.default:
        dims = list(call.arg("dims"))
    else:
        dims = list(range(nd))
        a, b = (
            (call.arg("dim0"), call.arg("dim1"))
            if call.func is aten.transpose.int
            else (0, 1)
        )
        if nd >= 2:
            dims[a % nd], dims[b % nd] = dims[b % nd], dims[a % nd]
    return {(i, 0): Permute(tuple(x.shape), dims)}


@register_rule(aten.expand.default, copies=True)
def expand_rule(call: OpRecord) -> dict[tuple[int, int], Elementwise]:
    ((i, _),) = call.inputs
    out = tuple(call.output(0).shape)
    return {(i, 0): Elementwise(None, tuple(call.leaves[i].shape), out, out)}


class Im2col(LocalMap):
    """im2col's index map; the ordinary gradient takes col2im (autograd's own
    backward) and im2col itself instead of scattering through the index."""

    def __init__(self, index: IndexMap, call: OpRecord) -> None:
        self.index = index
        self.in_shape, self.out_shape = index.in_shape, index.out_shape
        self.params = [call.arg(name) for name in _IM2COL_PARAMS]

    def backward(self, sr: Semiring, values: Tensor) -> Tensor:
        if not sr.linear:
            return self._col2im_semiring(sr, values)
        cols = values.reshape(-1, *self.out_shape[-2:])
        image = aten.col2im(cols, list(self.in_shape[-2:]), *self.params)
        return image.reshape(values.shape[0], *self.in_shape)

    def _col2im_semiring(self, sr: Semiring, values: Tensor) -> Tensor:
        """col2im in any semiring: each kernel offset's columns land, strided, in its
        own plane of the padded image; ⊕ over the planes, then crop the padding.
        (A scatter through the index sorts every entry, several times slower.)"""
        (kh, kw), (dh, dw), (ph, pw), (sh, sw) = self.params
        channels, height, width = self.in_shape[-3:]
        rows = (height + 2 * ph - dh * (kh - 1) - 1) // sh + 1
        columns = self.out_shape[-1] // rows
        cols = values.reshape(values.shape[0], -1, channels, kh, kw, rows, columns)
        planes = sr.zeros(
            (kh * kw, cols.shape[1], channels, height + 2 * ph, width + 2 * pw), values
        )
        for i in range(kh):
            for j in range(kw):
                plane = planes[:, i * kw + j, ..., i * dh :: sh, j * dw :: sw]
                plane[..., :rows, :columns] = cols[:, :, :, i, j]
        image = sr.sum(planes, 1)[..., ph : ph + height, pw : pw + width]
        return image.reshape(values.shape[0], *self.in_shape)

    def forward(self, sr: Semiring, values: Tensor) -> Tensor:
        if not sr.linear:
            return self.index.forward(sr, values)
        image = values.reshape(-1, *self.in_shape[-3:])
        cols = aten.im2col(image, *self.params)
        return cols.reshape(values.shape[0], *self.out_shape)

    def edges_from(self, flat_index: int, like: Tensor) -> tuple[Tensor, Tensor]:
        return self.index.edges_from(flat_index, like)


_IM2COL_PARAMS = ("kernel_size", "dilation", "padding", "stride")


# Ops whose copy pattern depends only on shapes and non-tensor arguments (not on
# index tensors' values), so that one probe serves every call of the same form:
# repeated recordings (one per example, or per benchmark run) probe once.
_STRUCTURAL = (
    aten.slice.Tensor,
    aten.select.int,
    aten.cat.default,
    aten.stack.default,
    aten.split.Tensor,
    aten.split_with_sizes.default,
    aten.unsafe_split.Tensor,
    aten.unbind.int,
    aten.flip.default,
    aten.roll.default,
    aten.repeat.default,
    aten.unfold.default,
    aten.diagonal.default,
    aten.constant_pad_nd.default,
    aten.im2col.default,
    aten.pixel_shuffle.default,
)
# Ops probed on every call, uncached: gathers, whose pattern depends on index
# values, and scatters and copies.
_PROBED_PER_CALL = (
    aten.index_select.default,
    aten.gather.default,
    aten.index.Tensor,
    aten._unsafe_index.Tensor,
    aten.slice_scatter.default,
    aten.select_scatter.default,
    aten.as_strided_scatter.default,
    aten.diagonal_scatter.default,
    aten.masked_scatter.default,
    aten.copy.default,
    aten.take.default,
    aten.masked_select.default,
)


@register_rule(*_STRUCTURAL, *_PROBED_PER_CALL, copies=True)
def index_map_rule(call: OpRecord) -> dict[tuple[int, int], LocalMap]:
    if call.func is aten.im2col.default:
        return {key: Im2col(m, call) for key, m in _structured(call).items()}
    maps: dict[tuple[int, int], LocalMap] = dict(
        _structured(call) if call.func in _STRUCTURAL else probe_index_map(call)
    )
    return maps


def _structured(call: OpRecord) -> dict[tuple[int, int], IndexMap]:
    """The probed maps of a structural op, from the cache when seen before."""
    key = _structure_key(call)
    if key is None:
        return probe_index_map(call)
    maps = _PROBED.get(key)
    if maps is None:
        maps = probe_index_map(call)
        if sum(m.source.numel() for m in maps.values()) <= _CACHE_ELEMENTS:
            if len(_PROBED) >= _CACHE_ENTRIES:
                del _PROBED[next(iter(_PROBED))]  # the oldest entry
            _PROBED[key] = maps
    return maps


_PROBED: dict[Any, dict[tuple[int, int], IndexMap]] = {}
_CACHE_ENTRIES = 256
_CACHE_ELEMENTS = 1 << 22  # largest index map kept (4M elements, 32 MB)


def _structure_key(call: OpRecord) -> Any:
    """What the probe's result depends on: the op, which leaves are tracked, tensor
    shapes and device, and the other arguments; None when an argument is unhashable."""
    parts: list[Any] = [call.func, tuple(i for i, _ in call.inputs)]
    for leaf in call.leaves:
        if isinstance(leaf, torch.Tensor):
            parts.append((tuple(leaf.shape), leaf.dtype, leaf.device))
        else:
            parts.append((type(leaf), leaf))
    key = tuple(parts)
    try:
        hash(key)
    except TypeError:
        return None
    return key


@register_rule(aten.as_strided.default, copies=True)
def as_strided_rule(call: OpRecord) -> dict[tuple[int, int], IndexMap]:
    """``as_strided`` reads its input's *storage*: map each storage slot the input
    covers to the input element there, and read that map with the op's geometry.
    Slots outside the input (a view's base) are no edges."""
    ((i, _),) = call.inputs
    x = call.leaves[i]
    slots = x.untyped_storage().nbytes() // max(1, x.element_size())
    element = torch.full((slots,), -1, dtype=torch.int64)
    element[footprint(x)] = torch.arange(x.numel())
    offset = call.arg("storage_offset")
    read = element.as_strided(
        call.arg("size"),
        call.arg("stride"),
        x.storage_offset() if offset is None else offset,
    )
    return {(i, 0): IndexMap(read, tuple(x.shape), tuple(call.output(0).shape))}


@register_rule(aten.embedding.default, copies=True)
def embedding_rule(call: OpRecord) -> dict[tuple[int, int], IndexMap]:
    """Rows of the weight, copied. As in autograd, the ``padding_idx`` row gets no
    gradient: its copies are not edges."""
    if call.arg("scale_grad_by_freq", False):
        raise UnsupportedOpError(
            f"{call.func} with scale_grad_by_freq=True (module '{call.module}'): its "
            "gradient is scaled by batch counts, which is not a path weight"
        )
    maps = probe_index_map(call)
    padding = call.arg("padding_idx", -1)
    weight = call.position("weight")
    if padding is None or padding < 0:
        return maps
    width = call.leaves[weight].shape[-1]
    for key, m in maps.items():
        if key[0] == weight:
            padded = (m.source >= 0) & (m.source // width == padding)
            source = torch.where(padded, -1, m.source)
            maps[key] = IndexMap(source, m.in_shape, m.out_shape)
    return maps


@register_rule(aten.index_put.default, aten.scatter.src, aten.scatter.value)
def overwrite_rule(call: OpRecord) -> dict[tuple[int, int], IndexMap]:
    if call.arg("accumulate", False):
        from .scatter import index_put_accumulate_rule

        return index_put_accumulate_rule(call)  # type: ignore[return-value]
    return probe_index_map(call)


def probe_index_map(call: OpRecord) -> dict[tuple[int, int], IndexMap]:
    """Find which input element each output element copies, by running the op on
    element positions (in float64, exact up to 2**53 elements)."""
    offsets, replace = {}, {}
    start = 0
    for i, _ in call.inputs:
        offsets[i] = start
        start += call.leaves[i].numel()
    for i, leaf in enumerate(call.leaves):
        if isinstance(leaf, torch.Tensor) and leaf.is_floating_point():
            replace[i] = leaf.detach().to(torch.float64)
    probes = []
    for shift in (1.0, 2.0):
        for i, _ in call.inputs:
            leaf = call.leaves[i]
            positions = torch.arange(
                leaf.numel(), dtype=torch.float64, device=leaf.device
            )
            replace[i] = (positions + (offsets[i] + shift)).reshape(leaf.shape)
        probes.append(call.rerun(replace))
    maps = {}
    for o, _ in call.outputs:
        first, second = probes[0][o], probes[1][o]
        source = (
            torch.where(second - first == 1.0, first - 1.0, -1.0)
            .to(torch.int64)
            .reshape(-1)
        )
        for i, _ in call.inputs:
            n = call.leaves[i].numel()
            local = torch.where(
                (source >= offsets[i]) & (source < offsets[i] + n),
                source - offsets[i],
                -1,
            )
            if bool((local >= 0).any()):
                maps[(i, o)] = IndexMap(
                    local, tuple(call.leaves[i].shape), tuple(call.output(o).shape)
                )
    return maps


@register_decomposition(aten._pack_padded_sequence.default)
def pack_padded_sequence(input: Tensor, lengths: Tensor, batch_first: bool) -> Any:
    """A packed sequence's data is, per time step, the rows of the examples still
    running (lengths sorted descending, as ``pack_padded_sequence`` passes them):
    slices and a cat, which have rules."""
    steps = input.transpose(0, 1) if batch_first else input
    sizes = [int((lengths > t).sum()) for t in range(int(lengths.max()))]
    data = torch.cat([steps[t, :n] for t, n in enumerate(sizes)])
    return data, torch.tensor(sizes, dtype=torch.int64)
