"""The members of an ensemble evaluated as one batched network (mcdsvdd-ens at stream rate).

The K member encoders share the input, so their first Linear layers are one matrix product
with the weights concatenated ([in, K*512]); every later Linear layer is one batched product
(``torch.baddbmm``) of K stacked [in, out] weights. Each BatchNorm is one ``batch_norm`` call on
the K members' channels side by side ([n, K*C], the members' running statistics and affine
parameters concatenated): the same per-channel kernel as K separate calls. The nearest-reference
search is one batched product of the latents with the K stacked references and one ``min``.

Every operation is the one the members run alone, in the same order on the same operands, so
the scores are bitwise those of the members one by one wherever the matrix kernels give the
same result for a batched as for a single product (checked on the shipped bundles by
tests/unit/test_stacked_ensemble.py). The stacked tensors are built once per set of weights:
the cache is keyed on the members' tensors (storage and version), so moving or changing the
members rebuilds it.
"""

from __future__ import annotations

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


@dataclass(frozen=True)
class _Layer:
    weight: torch.Tensor  # first layer: [K*out, in] (one linear); later: [K, in, out] (baddbmm)
    bias: torch.Tensor | None  # first: [K*out]; later: [K, 1, out]
    norm: _Norm | None  # BatchNorm + LeakyReLU after the layer (all but the last)
    slope: float


def _key(members: list[AnomalyNet]) -> tuple[tuple[int, int], ...]:
    tensors = [t for m in members for t in (*m.parameters(), *m.buffers())]
    return tuple((t.data_ptr(), t._version) for t in tensors)


def _layers(members: list[AnomalyNet]) -> list[list[nn.Module]]:
    """Per member: its encoder's modules grouped as [Linear, BatchNorm, LeakyReLU] ... [Linear]."""
    out = []
    for m in members:
        modules = list(m.encoder.net)
        out.append([modules[i : i + 3] for i in range(0, len(modules), 3)])
    return [list(group) for group in zip(*out, strict=True)]  # type: ignore[arg-type]


def _stack_layer(first: bool, groups: list[list[nn.Module]]) -> _Layer:
    linears = [g[0] for g in groups]
    if not all(isinstance(lin, nn.Linear) for lin in linears):
        raise BundleError("an ensemble member's encoder is not Linear-BatchNorm-LeakyReLU layers")
    lin = [lin for lin in linears if isinstance(lin, nn.Linear)]
    biases = [x.bias for x in lin if x.bias is not None]
    bias: torch.Tensor | None = None
    if first:
        weight = torch.cat([x.weight for x in lin])
        bias = torch.cat(biases) if biases else None
    else:
        weight = torch.stack([x.weight.T for x in lin]).contiguous()
        bias = torch.stack(biases)[:, None, :] if biases else None
    norm, slope = None, 0.0
    if len(groups[0]) == 3:
        bns = [g[1] for g in groups]
        acts = [g[2] for g in groups]
        if not all(isinstance(b, nn.BatchNorm1d) for b in bns) or not all(
            isinstance(a, nn.LeakyReLU) for a in acts
        ):
            raise BundleError("an ensemble member's encoder is not Linear-BatchNorm-LeakyReLU")
        bn = [b for b in bns if isinstance(b, nn.BatchNorm1d)]

        def cat(name: str) -> torch.Tensor:
            return torch.cat([getattr(b, name) for b in bn])

        norm = _Norm(cat("running_mean"), cat("running_var"), cat("weight"), cat("bias"), bn[0].eps)
        slope = float(acts[0].negative_slope)  # type: ignore[union-attr]
    return _Layer(weight, bias, norm, slope)


class StackedMembers:
    """The stacked weights and references of an ensemble's members, rebuilt when they change."""

    def __init__(self) -> None:
        self._key: tuple[tuple[int, int], ...] | None = None
        self._layers: list[_Layer] = []
        self._references = torch.empty(0)
        self._reference_norms = torch.empty(0)

    def _refresh(self, members: list[AnomalyNet]) -> None:
        key = _key(members)
        if key == self._key:
            return
        with torch.no_grad():
            groups = _layers(members)
            self._layers = [_stack_layer(i == 0, g) for i, g in enumerate(groups)]
            refs = torch.stack([m.references for m in members])
            self._references = refs.transpose(1, 2).contiguous()  # [K, latent, R]
            self._reference_norms = torch.stack(
                [(m.references * m.references).sum(dim=1) for m in members]
            )[:, None, :]  # [K, 1, R]
        self._key = key

    def embed(self, members: list[AnomalyNet], x: torch.Tensor) -> torch.Tensor:
        """Every member's latents of the rows ``x``: [K, n, latent] (eval-mode BatchNorm)."""
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
        if h.dim() == 2:  # a single-layer encoder
            h = h.view(n, k, -1).transpose(0, 1)
        return h

    def distances(self, members: list[AnomalyNet], x: torch.Tensor) -> torch.Tensor:
        """Squared distances of every member's latents to its references: [K, n, R], the
        expansion |z|^2 - 2 z.r + |r|^2 clamped at 0 (models.networks.squared_distances)."""
        z = self.embed(members, x)
        out = torch.bmm(z, self._references).mul_(2.0)  # exact: a power of two
        out = torch.sub((z * z).sum(dim=2, keepdim=True), out, out=out)
        return out.add_(self._reference_norms).clamp_min_(0.0)
