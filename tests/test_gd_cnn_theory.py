"""gd_dynamics' ReplicaCNN with stride = kernel size is the model of equilibrium.conv (CONV_1HL).

Reference: the exact prior output covariance of the network, E[f(x)f(x')] = Σ_i K_ii(x, x')/(λ1 Np)
at ANY number of channels (the readout weights are independent), against the Monte Carlo
covariance over many independently initialised replicas (init="prior"), within 5 standard errors.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gdeq.equilibrium import conv
from gdeq.gd_dynamics.models import ReplicaCNN


@pytest.mark.parametrize("activation", ["erf", "relu"])
def test_prior_covariance_of_the_strided_cnn_is_the_theory_kernel(activation):
    from gdeq.gd_dynamics.data import load_task

    t = load_task("mnist", (3, 5), n_train=6, n_test=2, seed=0)
    lam0, lam1, m, R = 1.5, 0.7, 14, 4000
    net = ReplicaCNN((1, 28, 28), 8, 1, activation, kernel_size=m, stride=m, replicas=R, seeds=range(R),
                     prior_precisions=(lam0, lam1))
    with torch.no_grad():
        f = net(torch.as_tensor(t.x_train)).numpy()  # (R, P)
    prods = f[:, :, None] * f[:, None, :]
    mc, se = prods.mean(0), prods.std(0) / np.sqrt(R)
    pb = conv.conv_problem(t.x_train, t.y_train, channels=8, patch_size=m, image_shape=(1, 28, 28),
                           activation=activation, prior_w=lam0, prior_v=lam1)
    K = pb.patch_diagonal.sum(0).numpy() / (lam1 * pb.n_patches)
    assert np.all(np.abs(mc - K) <= 5 * se + 1e-12)
    assert net.widths == (8 * 4,)  # N1 = channels × patches


def test_stride_is_validated():
    with pytest.raises(ValueError, match="stride"):
        ReplicaCNN((1, 28, 28), 4, 1, "erf", kernel_size=7, stride=0)
