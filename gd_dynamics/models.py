"""Networks with R independent replicas batched in one module (a leading replica axis on every weight).

Standard parameterisation of docs/conventions.md §1, initialised from the priors (``init="prior"``):

    h^1 = W^1 x / √N0 (+ b^1),  h^l = W^l σ(h^{l-1}) / √N_{l-1} (+ b^l),  f = V σ(h^L) / √N_L,
    W^l_{ij} ~ N(0, 1/λ_{l-1}),  V ~ N(0, 1/λ_L),  biases (optional) ~ N(0, 1/λ of their layer).

The one-hidden-layer case is exactly f(x) = Σ_i v_i σ(w_i·x/√N0)/√N1. ``init="pytorch"`` is
``torch.nn.Linear``'s convention instead (no 1/√fan_in in the forward pass, weights and biases
U(−1/√fan_in, 1/√fan_in)): what arXiv 2303.05161 trains, kept for its reproduction.

Replica ``r`` is initialised from its own ``torch.Generator`` seeded with ``seeds[r]``, so a batch
of replicas equals separate one-replica runs with the same seeds. Inputs are shared (P, N0) or per
replica (R, B, N0) (each replica's own minibatch); forward passes are batched matmuls (``einsum``
over the replica axis), not loops.
"""

from __future__ import annotations

import math
from typing import Literal, Sequence

import torch
from torch import nn

from gdeq import geometry

from .config import ACTIVATIONS, ARCHITECTURES, INITS, POOLINGS

__all__ = ["ACTIVATIONS", "ARCHITECTURES", "INITS", "ReplicaFC", "ReplicaCNN", "build_model", "infer_image_shape"]


def _sigma(name: str):
    """σ by name from the shared table (geometry.activation), limited to the training ``ACTIVATIONS``."""
    geometry.check_activation(name, ACTIVATIONS)
    return geometry.activation(name)


def _draw(shape: tuple[int, ...], generators: Sequence[torch.Generator], std: float, init: str, fan_in: int,
          dtype: torch.dtype) -> torch.Tensor:
    """One (R, *shape) tensor, replica r drawn from ``generators[r]`` (prior Gaussian or PyTorch uniform)."""
    out = []
    for g in generators:
        if init == "prior":
            out.append(torch.randn(shape, generator=g, dtype=dtype) * std)
        else:  # nn.Linear / nn.Conv2d default: kaiming_uniform(a=√5) == U(±1/√fan_in), same for the bias
            bound = 1.0 / math.sqrt(fan_in)
            out.append((torch.rand(shape, generator=g, dtype=dtype) * 2 - 1) * bound)
    return torch.stack(out)


class _ReplicaNet(nn.Module):
    """Common parts: layer names, prior precisions, the weight-decay map Langevin needs."""

    #: name of each parameter -> prior precision λ of that parameter (docs/conventions.md §6 weight decay Tλ)
    prior_precision: dict[str, float]
    #: name of each parameter -> layer index (1 = first hidden layer, L+1 = readout)
    layer_of: dict[str, int]

    replicas: int
    widths: tuple[int, ...]

    def hidden_features(self, x: torch.Tensor, preact_offset: torch.Tensor | None = None) -> list[torch.Tensor]:
        raise NotImplementedError

    def readout(self, phi: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor, preact_offset: torch.Tensor | None = None) -> torch.Tensor:
        """Outputs (R, P) for one output, (R, P, D) for D outputs."""
        return self.readout(self.hidden_features(x, preact_offset)[-1])


class ReplicaFC(_ReplicaNet):
    """Fully connected net with ``len(widths)`` hidden layers, R replicas batched.

    Args:
        input_dim: N0.
        widths: hidden widths (N1, ..., NL).
        n_outputs: D (1 gives a scalar output of shape (R, P)).
        activation: one of ``ACTIVATIONS``.
        replicas / seeds: R, and one seed per replica (default ``seed + r``).
        prior_precisions: λ per layer, (λ0, λ1, ..., λL); λ_{l-1} is the precision of W^l and λ_L of
            the readout (docs/conventions.md §1 has λ0 for W and λ1 for v in one hidden layer).
        bias: add biases to the hidden layers and the readout.
        init: ``"prior"`` (standard parameterisation) or ``"pytorch"`` (nn.Linear's convention).
        input_scale_dim: the N0 in 1/√N0 when the inputs were rotated onto a lower-dimensional basis
            (docs/conventions.md §6 exact reduction keeps the original scale); default ``input_dim``.
    """

    def __init__(
        self,
        input_dim: int,
        widths: Sequence[int],
        n_outputs: int = 1,
        activation: str = "erf",
        *,
        replicas: int = 1,
        seeds: Sequence[int] | None = None,
        prior_precisions: Sequence[float] | None = None,
        bias: bool = False,
        init: Literal["prior", "pytorch"] = "prior",
        input_scale_dim: int | None = None,
        dtype: torch.dtype = torch.float64,
    ) -> None:
        super().__init__()
        widths = tuple(int(w) for w in widths)
        if init not in INITS:
            raise ValueError(f"init: must be one of {list(INITS)}, got {init!r}")
        if not widths or min(widths) < 1:
            raise ValueError(f"width: every hidden width must be a positive integer, got {list(widths)}")
        lambdas = tuple(float(l) for l in (prior_precisions or (1.0,) * (len(widths) + 1)))
        if len(lambdas) != len(widths) + 1 or min(lambdas) <= 0:
            raise ValueError(f"prior_precisions: need {len(widths) + 1} positive values (λ0..λL), got {lambdas}")
        seeds = list(seeds) if seeds is not None else list(range(replicas))
        if len(seeds) != replicas:
            raise ValueError(f"seeds: need one seed per replica ({replicas}), got {len(seeds)}")
        self.replicas, self.widths, self.activation, self.init = replicas, widths, activation, init
        self.n_outputs, self.input_dim, self.use_bias = n_outputs, input_dim, bias
        self.sigma = _sigma(activation)
        self.lambdas = lambdas
        gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
        dims = (input_dim,) + widths + (n_outputs,)
        scale_dims = (input_scale_dim or input_dim,) + widths
        self.weights, self.biases = nn.ParameterList(), nn.ParameterList()
        self.prior_precision, self.layer_of, self._scales = {}, {}, []
        for l in range(len(widths) + 1):
            fan_in, fan_out = dims[l], dims[l + 1]
            std = 1.0 / math.sqrt(lambdas[l])
            # initialise weights then bias per layer, per replica stream: fixed order = reproducible
            w = _draw((fan_out, fan_in), gens, std, init, fan_in, dtype)
            self.weights.append(nn.Parameter(w))
            self.prior_precision[f"weights.{l}"], self.layer_of[f"weights.{l}"] = lambdas[l], l + 1
            if bias:
                b = _draw((fan_out,), gens, std, init, fan_in, dtype)
                self.biases.append(nn.Parameter(b))
                self.prior_precision[f"biases.{l}"], self.layer_of[f"biases.{l}"] = lambdas[l], l + 1
            self._scales.append(1.0 / math.sqrt(scale_dims[l]) if init == "prior" else 1.0)

    def _linear(self, l: int, a: torch.Tensor) -> torch.Tensor:
        # a: (P, n_in) shared inputs or (R, P, n_in) per-replica inputs/activations
        W = self.weights[l]
        h = (torch.einsum("pi,roi->rpo", a, W) if a.ndim == 2 else torch.einsum("rpi,roi->rpo", a, W))
        h = h * self._scales[l]
        if self.use_bias:
            h = h + self.biases[l][:, None, :]
        return h

    def preactivations(self, x: torch.Tensor) -> torch.Tensor:
        """First-layer pre-activations h = W x/√N0 (+ b), shape (R, P, N1)."""
        return self._linear(0, x)

    def hidden_features(self, x: torch.Tensor, preact_offset: torch.Tensor | None = None) -> list[torch.Tensor]:
        """Post-activation features of every hidden layer, each (R, P, N_l).

        ``preact_offset`` (R, P, N1) is added to the first-layer pre-activations: the prior term of
        the input components outside the sampled span (docs/conventions.md §6 exact reduction, test inputs).
        """
        h = self._linear(0, x)
        if preact_offset is not None:
            h = h + preact_offset
        feats = [self.sigma(h)]
        for l in range(1, len(self.widths)):
            feats.append(self.sigma(self._linear(l, feats[-1])))
        return feats

    def readout(self, phi: torch.Tensor) -> torch.Tensor:
        out = self._linear(len(self.widths), phi)
        return out[..., 0] if self.n_outputs == 1 else out


class ReplicaCNN(_ReplicaNet):
    """One-hidden-layer CNN: a convolution (C channels, k×k, stride s (default 1), zero padding p
    (default 0)), σ, then a dense readout (``pooling="none"``) or global average pooling over positions
    and a readout per channel (``pooling="avg"``).

    Standard parameterisation: h = conv(x)/√(C_in k²), f = V·vec(σ(h))/√N1 with N1 = C·H'·W'
    (H' = (H + 2p − k)//s + 1); with average pooling f = V·mean_positions(σ(h))/√C.
    With ``stride = kernel_size`` dividing H and W, no padding and no pooling this is exactly the
    model of ``equilibrium.conv`` / deepbays' CONV_1HL (non-overlapping patches; docs/architectures.md).
    Replicas are batched as a grouped convolution (groups = R).
    """

    def __init__(
        self,
        image_shape: tuple[int, int, int],
        channels: int,
        n_outputs: int = 1,
        activation: str = "erf",
        *,
        kernel_size: int = 5,
        stride: int = 1,
        padding: int = 0,
        pooling: str = "none",
        replicas: int = 1,
        seeds: Sequence[int] | None = None,
        prior_precisions: Sequence[float] | None = None,
        bias: bool = False,
        init: Literal["prior", "pytorch"] = "prior",
        dtype: torch.dtype = torch.float64,
    ) -> None:
        super().__init__()
        if init not in INITS:
            raise ValueError(f"init: must be one of {list(INITS)}, got {init!r}")
        if channels < 1:
            raise ValueError(f"width: the CNN's channel count must be a positive integer, got {channels}")
        c_in, H, W = image_shape
        if kernel_size < 1 or kernel_size > min(H, W):
            raise ValueError(f"kernel_size: must be in 1..{min(H, W)}, got {kernel_size}")
        if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
            raise ValueError(f"stride: must be a positive integer, got {stride!r}")
        if isinstance(padding, bool) or not isinstance(padding, int) or padding < 0:
            raise ValueError(f"padding: must be a non-negative integer, got {padding!r}")
        if pooling not in POOLINGS:
            raise ValueError(f"pooling: must be one of {list(POOLINGS)}, got {pooling!r}")
        self.stride, self.padding, self.pooling = stride, padding, pooling
        lam0, lam1 = tuple(float(l) for l in (prior_precisions or (1.0, 1.0)))
        seeds = list(seeds) if seeds is not None else list(range(replicas))
        if len(seeds) != replicas:
            raise ValueError(f"seeds: need one seed per replica ({replicas}), got {len(seeds)}")
        self.replicas, self.image_shape, self.k, self.channels = replicas, image_shape, kernel_size, channels
        self.activation, self.init, self.n_outputs, self.use_bias = activation, init, n_outputs, bias
        self.sigma = _sigma(activation)
        self.lambdas = (lam0, lam1)
        hp, wp = (H + 2 * padding - kernel_size) // stride + 1, (W + 2 * padding - kernel_size) // stride + 1
        n1 = channels * hp * wp if pooling == "none" else channels
        self.widths = (n1,)
        gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
        fan_conv = c_in * kernel_size**2
        self.conv = nn.Parameter(_draw((channels, c_in, kernel_size, kernel_size), gens, lam0**-0.5, init, fan_conv, dtype))
        self.conv_bias = nn.Parameter(_draw((channels,), gens, lam0**-0.5, init, fan_conv, dtype)) if bias else None
        self.readout_w = nn.Parameter(_draw((n_outputs, n1), gens, lam1**-0.5, init, n1, dtype))
        self.readout_b = nn.Parameter(_draw((n_outputs,), gens, lam1**-0.5, init, n1, dtype)) if bias else None
        self._s0 = 1 / math.sqrt(fan_conv) if init == "prior" else 1.0
        self._s1 = 1 / math.sqrt(n1) if init == "prior" else 1.0
        self.prior_precision = {"conv": lam0, "readout_w": lam1}
        self.layer_of = {"conv": 1, "readout_w": 2}
        if bias:
            self.prior_precision.update(conv_bias=lam0, readout_b=lam1)
            self.layer_of.update(conv_bias=1, readout_b=2)

    def hidden_features(self, x: torch.Tensor, preact_offset: torch.Tensor | None = None) -> list[torch.Tensor]:
        """x: shared (P, N0) or per replica (R, B, N0); returns [(R, P, C·H'·W')]."""
        R, (c_in, H, W) = self.replicas, self.image_shape
        per_replica = x.ndim == 3
        n = x.shape[-2]
        # load_task flattens colour images channels-last (H, W, C)
        img = x.reshape(-1, 1, H, W) if c_in == 1 else x.reshape(-1, H, W, c_in).permute(0, 3, 1, 2)
        if per_replica:  # (R*B, c_in, H, W) -> (B, R*c_in, H, W): replica r's images in channels r*c_in..
            img = img.reshape(R, n, c_in, H, W).transpose(0, 1).reshape(n, R * c_in, H, W)
        else:
            img = img.repeat(1, R, 1, 1)  # (P, R*c_in, H, W): replica r reads channels r*c_in..
        weight = self.conv.reshape(R * self.channels, c_in, self.k, self.k)
        bias = self.conv_bias.reshape(-1) if self.conv_bias is not None else None
        h = torch.nn.functional.conv2d(img, weight, bias=None, stride=self.stride, padding=self.padding,
                                       groups=R) * self._s0
        if bias is not None:
            h = h + bias[None, :, None, None]
        P = h.shape[0]
        if self.pooling == "avg":  # σ first, then the mean over positions: (R, P, C)
            phi = self.sigma(h).reshape(P, R, self.channels, -1).mean(-1).transpose(0, 1)
            if preact_offset is not None:
                raise ValueError("preact_offset: not defined for a pooled CNN")
            return [phi]
        h = h.reshape(P, R, -1).transpose(0, 1)  # (R, P, C*H'*W')
        if preact_offset is not None:
            h = h + preact_offset
        return [self.sigma(h)]

    def readout(self, phi: torch.Tensor) -> torch.Tensor:
        out = torch.einsum("rpi,roi->rpo", phi, self.readout_w) * self._s1
        if self.readout_b is not None:
            out = out + self.readout_b[:, None, :]
        return out[..., 0] if self.n_outputs == 1 else out


def build_model(
    architecture: str,
    input_dim: int,
    width: int | Sequence[int],
    n_outputs: int,
    activation: str,
    *,
    replicas: int,
    seeds: Sequence[int],
    prior_precisions: Sequence[float] | None = None,
    bias: bool = False,
    init: str = "prior",
    image_shape: tuple[int, int, int] | None = None,
    kernel_size: int = 5,
    stride: int = 1,
    padding: int = 0,
    pooling: str = "none",
    input_scale_dim: int | None = None,
    dtype: torch.dtype = torch.float64,
) -> _ReplicaNet:
    """Build an R-replica ``"fc"`` (``width`` an int or one int per hidden layer) or ``"cnn"`` net."""
    if architecture == "fc":
        widths = (width,) if isinstance(width, int) else tuple(width)
        return ReplicaFC(input_dim, widths, n_outputs, activation, replicas=replicas, seeds=seeds,
                         prior_precisions=prior_precisions, bias=bias, init=init,
                         input_scale_dim=input_scale_dim, dtype=dtype)
    if architecture == "cnn":
        if image_shape is None:
            image_shape = infer_image_shape(input_dim)
        return ReplicaCNN(image_shape, int(width), n_outputs, activation, kernel_size=kernel_size, stride=stride,
                          padding=padding, pooling=pooling, replicas=replicas, seeds=seeds, prior_precisions=prior_precisions, bias=bias,
                          init=init, dtype=dtype)
    raise ValueError(f"architecture: must be one of {list(ARCHITECTURES)}, got {architecture!r}")


def infer_image_shape(input_dim: int) -> tuple[int, int, int]:
    """(C, H, W) of a flattened MNIST-like (784) or CIFAR-like (1024 grey, 3072 colour) input.

    The one home of the CNN's image shape (the CLI and the bridge pass ``image_shape=None``)."""
    known = {784: (1, 28, 28), 1024: (1, 32, 32), 3072: (3, 32, 32)}
    if input_dim not in known:
        raise ValueError(f"image_shape: cannot infer an image shape for input_dim={input_dim}; pass image_shape=(C, H, W)")
    return known[input_dim]
