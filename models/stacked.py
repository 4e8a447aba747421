"""The members of an ensemble evaluated as one batched network (mcdsvdd-ens at stream rate).

The K member encoders share the input, so their first Linear layers are one matrix product
with the weights concatenated ([in, K*512]); every later Linear layer is one batched product
(``torch.baddbmm``) of K stacked [in, out] weights. Each BatchNorm is one ``batch_norm`` call on
the K members' channels side by side ([n, K*C], the members' running statistics and affine
parameters concatenated): the same per-channel kernel as K separate calls. The nearest-reference
search is one batched product of the latents with the K stacked references and one ``min``.
The gradient of the score with respect to the inputs (the explanations, models.explain) runs the
same stacked layers backwards (:meth:`StackedMembers.input_gradient`) from the hidden outputs
the forward pass kept: no autograd.

Every operation is the one the members run alone, in the same order on the same operands, so
the scores are bitwise those of the members one by one wherever the matrix kernels give the
same result for a batched as for a single product (checked on the shipped bundles by
tests/unit/test_stacked_ensemble.py). The stacked tensors are built once per set of weights:
the cache is keyed on the members' tensors (storage and version), checked by every
:meth:`StackedMembers.embed`, so moving or changing the members rebuilds it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.nn import functional

from models.exceptions import BundleError

if TYPE_CHECKING:
    from models.networks import AnomalyNet


@dataclass(frozen=True)
class _Norm:
    mean: torch.Tensor
    var: torch.Tensor
    weight: torch.Tensor
    bias: torch.Tensor
    eps: float
    scale: torch.Tensor  # weight / sqrt(var + eps): the eval-mode BatchNorm's derivative


@dataclass(frozen=True)
class _Layer:
    weight: torch.Tensor  # first layer: [K*out, in] (one linear); later: [K, in, out] (baddbmm)
    bias: torch.Tensor | None  # first: [K*out]; later: [K, 1, out]
    norm: _Norm | None  # BatchNorm + LeakyReLU after the layer (all but the last)
    slope: float


_Slot = tuple[Mapping[str, torch.Tensor | None], str]


def _slots(members: list[AnomalyNet]) -> list[_Slot]:
    """Where the members' parameters and buffers live (their modules' dictionaries): read
    through these, the cache key sees a tensor replaced or changed in place without walking
    the modules at every call (which took ~0.1 ms, ~1 us per row of a 128-row chunk)."""
    return [
        (table, name)
        for member in members
        for module in member.modules()
        for table in (module._parameters, module._buffers)
        for name, tensor in table.items()
        if tensor is not None
    ]


def _key(slots: list[_Slot]) -> tuple[tuple[int, int], ...]:
    tensors = [table[name] for table, name in slots]
    return tuple((t.data_ptr(), t._version) if t is not None else (0, -1) for t in tensors)


Block = tuple[nn.Linear, nn.BatchNorm1d | None, nn.LeakyReLU | None]


def blocks(member: AnomalyNet) -> list[Block]:
    """A network's encoder as [Linear, BatchNorm, LeakyReLU] blocks, the last a Linear alone."""
    modules = list(member.encoder.net)
    out: list[Block] = []
    for i in range(0, len(modules), 3):
        lin, *rest = modules[i : i + 3]
        bn, act = rest if len(rest) == 2 else (None, None)
        if not (
            isinstance(lin, nn.Linear)
            and (bn is None or isinstance(bn, nn.BatchNorm1d))
            and (act is None or isinstance(act, nn.LeakyReLU))
        ):
            raise BundleError("an ensemble member's encoder is not Linear-BatchNorm-LeakyReLU")
        out.append((lin, bn, act))
    return out


def _stack_layer(first: bool, layer: list[Block]) -> _Layer:
    """One layer of every member (``layer``, a block per member) as stacked tensors."""
    lin = [b[0] for b in layer]
    biases: list[torch.Tensor] = [x.bias for x in lin if x.bias is not None]
    bias: torch.Tensor | None = None
    if first:
        weight = torch.cat([x.weight for x in lin])
        bias = torch.cat(biases) if biases else None
    else:
        weight = torch.stack([x.weight.T for x in lin]).contiguous()
        bias = torch.stack(biases)[:, None, :] if biases else None
    bns = [b[1] for b in layer if b[1] is not None]
    acts = [b[2] for b in layer if b[2] is not None]
    if not bns or not acts:
        return _Layer(weight, bias, None, 0.0)

    def cat(name: str) -> torch.Tensor:
        return torch.cat([getattr(bn, name) for bn in bns])

    var, gain, eps = cat("running_var"), cat("weight"), bns[0].eps
    norm = _Norm(cat("running_mean"), var, gain, cat("bias"), eps, norm_derivative(var, gain, eps))
    return _Layer(weight, bias, norm, float(acts[0].negative_slope))


def norm_derivative(var: torch.Tensor, weight: torch.Tensor | None, eps: float) -> torch.Tensor:
    """The derivative of an eval-mode BatchNorm with respect to its input, per channel."""
    inverse = torch.rsqrt(var + eps)
    return inverse if weight is None else weight * inverse


def leaky_backward(grad: torch.Tensor, output: torch.Tensor, slope: float) -> torch.Tensor:
    """The gradient through a LeakyReLU from its ``output`` (positive exactly where its input
    is, for a positive slope): autograd's own kernel for it."""
    result: torch.Tensor = torch.ops.aten.leaky_relu_backward(grad, output, slope, True)
    return result


class StackedMembers:
    """The stacked weights and references of an ensemble's members, rebuilt when they change."""

    def __init__(self) -> None:
        self._key: tuple[tuple[int, int], ...] | None = None
        self._members: list[AnomalyNet] = []  # held, so that their identities stay theirs
        self._slots: list[_Slot] = []
        self._layers: list[_Layer] = []
        self._references = torch.empty(0)
        self._reference_norms = torch.empty(0)

    def _ours(self, members: list[AnomalyNet]) -> bool:
        return len(members) == len(self._members) and all(
            a is b for a, b in zip(members, self._members, strict=True)
        )

    def _current(self, members: list[AnomalyNet]) -> None:
        """The stack of ``members`` as :meth:`embed` last checked it (the methods that follow
        an :meth:`embed` of the same rows: their weights cannot have changed in between, and
        the full check reads every member tensor, ~20 us for the lite ensemble's 90)."""
        if self._key is None or not self._ours(members):
            self._refresh(members)

    def _refresh(self, members: list[AnomalyNet]) -> None:
        if not self._ours(members):
            self._members, self._slots, self._key = list(members), _slots(members), None
        key = _key(self._slots)
        if key == self._key:
            return
        with torch.no_grad():
            per_layer = zip(*(blocks(m) for m in members), strict=True)
            self._layers = [_stack_layer(i == 0, list(g)) for i, g in enumerate(per_layer)]
            refs = torch.stack([m.references for m in members])
            self._references = refs.transpose(1, 2).contiguous()  # [K, latent, R]
            self._reference_norms = torch.stack(
                [(m.references * m.references).sum(dim=1) for m in members]
            )[:, None, :]  # [K, 1, R]
        self._key = key

    def embed(
        self, members: list[AnomalyNet], x: torch.Tensor, hidden: list[torch.Tensor] | None = None
    ) -> torch.Tensor:
        """Every member's latents of the rows ``x``: [K, n, latent] (eval-mode BatchNorm);
        ``hidden``, when given, gets every hidden layer's output ([n, K*width], after its
        LeakyReLU) for :meth:`input_gradient`."""
        if any(m.training for m in members):
            raise BundleError("the stacked ensemble scores in eval mode only")
        self._refresh(members)
        k, n = len(members), x.shape[0]
        h = x
        for i, layer in enumerate(self._layers):
            if i == 0:
                h = functional.linear(h, layer.weight, layer.bias)  # [n, K*out]
            else:
                batched = h.view(n, k, -1).transpose(0, 1)  # [K, n, in]
                if layer.bias is None:
                    h = torch.bmm(batched, layer.weight)
                else:
                    h = torch.baddbmm(layer.bias, batched, layer.weight)  # [K, n, out]
                if layer.norm is not None:
                    h = h.transpose(0, 1).reshape(n, -1)  # [n, K*out]
            if layer.norm is not None:
                bn = layer.norm
                h = functional.batch_norm(h, bn.mean, bn.var, bn.weight, bn.bias, eps=bn.eps)
                h = functional.leaky_relu(h, layer.slope)
                if hidden is not None:
                    hidden.append(h)
        if h.dim() == 2:  # a single-layer encoder
            h = h.view(n, k, -1).transpose(0, 1)
        return h

    def input_gradient(
        self, members: list[AnomalyNet], hidden: list[torch.Tensor], grad: torch.Tensor
    ) -> torch.Tensor:
        """The gradient with respect to the inputs [n, in] of a function of the latents whose
        gradient there is ``grad`` [K, n, latent], summed over the members: :meth:`embed`'s
        layers backwards, through the ``hidden`` outputs it kept for these rows."""
        self._current(members)
        k, n = grad.shape[0], grad.shape[1]
        g = grad
        for i in reversed(range(len(self._layers))):
            layer = self._layers[i]
            if layer.norm is not None:  # g: [n, K*width], the layer's output
                g = leaky_backward(g, hidden[i], layer.slope) * layer.norm.scale
            if i == 0:
                if g.dim() == 3:  # a single-layer encoder
                    g = g.transpose(0, 1).reshape(n, -1)
                g = g @ layer.weight  # [n, K*out] @ [K*out, in]: the members added
            else:
                if g.dim() == 2:
                    g = g.view(n, k, -1).transpose(0, 1)  # [K, n, out]
                g = torch.bmm(g, layer.weight.transpose(1, 2))  # [K, n, in]
                g = g.transpose(0, 1).reshape(n, -1)  # [n, K*in]: the layer before's output
        return g

    def distances(self, members: list[AnomalyNet], z: torch.Tensor) -> torch.Tensor:
        """Squared distances of the members' latents ``z`` [K, n, latent] (:meth:`embed`) to
        their references: [K, n, R], the expansion |z|^2 - 2 z.r + |r|^2 clamped at 0
        (models.networks.squared_distances)."""
        self._current(members)
        out = torch.bmm(z, self._references).mul_(2.0)  # exact: a power of two
        out = torch.sub((z * z).sum(dim=2, keepdim=True), out, out=out)
        return out.add_(self._reference_norms).clamp_min_(0.0)

    def references_at(self, members: list[AnomalyNet], index: torch.Tensor) -> torch.Tensor:
        """Each member's references at ``index`` [K, n]: [K, n, latent]."""
        self._current(members)
        refs = self._references.transpose(1, 2)  # [K, R, latent]
        return torch.gather(refs, 1, index[:, :, None].expand(-1, -1, refs.shape[2]))
