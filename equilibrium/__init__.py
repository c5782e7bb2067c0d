"""equilibrium: kernels, effective action and posterior observables of one-hidden-layer networks."""
