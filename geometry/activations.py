"""Elementwise activations σ and their derivatives σ', defined once for every part of gdeq.

The GD models, the exact sampler, the thermometers and the equilibrium kernels all look an
activation up here by name, so an unknown name is refused in one place with one message (never
silently treated as another activation).
"""

from __future__ import annotations

import math
from typing import Callable, Union

import torch

__all__ = ["ACTIVATIONS", "ODD_ACTIVATIONS", "Activation", "activation", "activation_derivative",
           "activation_and_derivative", "activation_name", "check_activation"]

Activation = Union[str, Callable[[torch.Tensor], torch.Tensor]]

_TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)


def _erf_prime(h: torch.Tensor) -> torch.Tensor:
    return _TWO_OVER_SQRT_PI * torch.exp(-h * h)


def _tanh_prime(h: torch.Tensor) -> torch.Tensor:
    return 1.0 - torch.tanh(h) ** 2


def _relu_prime(h: torch.Tensor) -> torch.Tensor:
    return (h > 0).to(h.dtype)


def _identity(h: torch.Tensor) -> torch.Tensor:
    return h


def _one(h: torch.Tensor) -> torch.Tensor:
    return torch.ones_like(h)


def _gelu_prime(h: torch.Tensor) -> torch.Tensor:
    cdf = 0.5 * (1.0 + torch.erf(h / math.sqrt(2.0)))
    return cdf + h * torch.exp(-0.5 * h * h) / math.sqrt(2.0 * math.pi)


def _sigmoid_prime(h: torch.Tensor) -> torch.Tensor:
    s = torch.sigmoid(h)
    return s * (1.0 - s)


# name -> (σ, σ')
_TABLE: dict[str, tuple[Callable[[torch.Tensor], torch.Tensor], Callable[[torch.Tensor], torch.Tensor]]] = {
    "erf": (torch.erf, _erf_prime),
    "relu": (torch.relu, _relu_prime),
    "tanh": (torch.tanh, _tanh_prime),
    "identity": (_identity, _one),
    "gelu": (torch.nn.functional.gelu, _gelu_prime),
    "sigmoid": (torch.sigmoid, _sigmoid_prime),
    "softplus": (torch.nn.functional.softplus, torch.sigmoid),
}

ACTIVATIONS: tuple[str, ...] = tuple(_TABLE)
#: activations that are odd functions: their Gaussian mean vanishes identically
ODD_ACTIVATIONS: tuple[str, ...] = ("erf", "identity", "tanh")


def check_activation(name: Activation, allowed: tuple[str, ...] = ACTIVATIONS, *, callables: bool = False) -> None:
    """Raise one ValueError naming ``activation`` and the allowed names unless ``name`` is one of them."""
    if callables and callable(name):
        return
    if not isinstance(name, str) or name not in allowed:
        extra = " or a callable" if callables else ""
        raise ValueError(f"activation: must be one of {list(allowed)}{extra}, got {name!r}")


def activation(name: Activation) -> Callable[[torch.Tensor], torch.Tensor]:
    """σ for a name in :data:`ACTIVATIONS` (a callable is returned as it is)."""
    if callable(name):
        return name
    check_activation(name)
    return _TABLE[name][0]


def activation_derivative(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """σ' for a name in :data:`ACTIVATIONS`."""
    check_activation(name)
    return _TABLE[name][1]


def activation_and_derivative(name: str) -> Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """One function h -> (σ(h), σ'(h)) (what gradient-based samplers need per step)."""
    check_activation(name)
    sigma, prime = _TABLE[name]
    if name == "tanh":  # share the tanh evaluation
        def both(h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            t = torch.tanh(h)
            return t, 1.0 - t * t
        return both
    return lambda h: (sigma(h), prime(h))


def activation_name(name: Activation) -> str:
    """A printable name (a callable's ``__name__``)."""
    return name if isinstance(name, str) else getattr(name, "__name__", "callable")
