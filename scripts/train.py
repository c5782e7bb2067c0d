"""`gdeq train`: train R replicas (GD, SGD, Adam or Langevin) and save the Trajectory."""

from __future__ import annotations

import json

from gdeq.cli.common import DataOptions, wandb_mode


def train(
    data: DataOptions = DataOptions(),  # noqa: B008 - frozen: a safe default
    width: int | list[int] = 20,
    activation: str = "erf",
    architecture: str = "fc",
    kernel_size: int = 5,
    stride: int = 1,
    padding: int = 0,
    pooling: str = "none",
    optimizer: str = "gd",
    lr: float | None = None,
    steps: int = 2000,
    replicas: int = 8,
    temperature: float | None = None,
    batch_size: int | None = None,
    log_points: int = 60,
    output_dir: str = "runs",
    run_name: str | None = None,
    wandb: str = "offline",
    wandb_project: str = "gdeq",
    device: str = "cpu",
    progress: bool = True,
) -> dict:
    """Train R replica networks from the prior and save the run (trajectory.npz/.json, CSV, wandb).

    Args:
        data: the task (--data.dataset, --data.classes, --data.n_train, --data.n_test, --data.seed,
            --data.data_dir); data.seed also seeds the replicas (independent streams per replica).
        width: hidden width N1, or one width per hidden layer for a deep FC net (--width '[50, 50]'),
            or the CNN's channel count.
        activation: erf, relu, tanh or identity.
        architecture: fc or cnn (one convolutional layer; image shape inferred from the data).
        kernel_size: CNN filter size k (k × k).
        stride: CNN stride; the equilibrium theory covers stride = kernel_size (non-overlapping patches)
            with kernel_size dividing the image sides, no padding and no pooling.
        padding: CNN zero padding on each side.
        pooling: CNN readout: none (a weight per channel and position) or avg (global average pooling).
        optimizer: gd (full batch), sgd (needs --batch_size), adam, or langevin (needs --temperature).
        lr: learning rate for the summed loss ½Σ(y − f)² (default: 1/λ_max of the tangent kernel at init — of the
            one-hidden-layer FC net for fc and for CNNs the theory does not cover, of the architecture otherwise; a
            tenth of it for Langevin).
        steps: optimisation steps.
        replicas: independent networks trained together (batched).
        temperature: Langevin temperature T > 0 (GD + weight decay Tλ + noise √(2 lr T)).
        batch_size: SGD minibatch size.
        log_points: number of log-spaced measurement steps (step 0 included).
        output_dir: parent directory of the run directory.
        run_name: run directory name (default: generated from the settings).
        wandb: offline (default), online (falls back to offline) or disabled.
        wandb_project: wandb project name.
        device: cpu, cuda or auto.
        progress: show a progress bar.
    """
    from gdeq.bridge.experiments import default_learning_rate, tangent_learning_rate
    from gdeq.gd_dynamics import train as train_run

    mode = wandb_mode(wandb)
    seed = data.seed
    task = data.load()
    if lr is None:
        cnn = architecture == "cnn"
        covered = cnn and stride == kernel_size and padding == 0 and pooling == "none"
        if (architecture == "fc" and not isinstance(width, list)) or (cnn and not covered):
            lr = default_learning_rate(task.x_train, activation=activation, seed=seed)
        else:  # deep FC or the CNN of the theory: 1/λ_max of the architecture's own tangent kernel
            from gdeq.gd_dynamics.models import infer_image_shape

            arch = dict(architecture="cnn", patch_size=kernel_size, image_shape=infer_image_shape(task.input_dim)) \
                if cnn else {}
            lr = tangent_learning_rate(task.x_train, activation=activation, width=width, **arch)
        if optimizer == "langevin":
            lr *= 0.1
    traj = train_run(task, width=width, activation=activation, architecture=architecture, optimizer=optimizer, lr=lr,
                     kernel_size=kernel_size, stride=stride, padding=padding, pooling=pooling,  # fc: refused if set
                     steps=steps, replicas=replicas, temperature=temperature, batch_size=batch_size, seed=seed,
                     log_points=log_points, output_dir=output_dir, run_name=run_name,
                     wandb=None if mode == "disabled" else mode, wandb_project=wandb_project, device=device,
                     progress_bar=progress, probe_size=max(data.n_train, data.n_test))  # geometry on the full sets
    summary = dict(run_dir=traj.run_dir, lr=lr, steps=int(traj.step[-1]),
                   final_train_error=float(traj.train_error[-1].mean()), final_test_error=float(traj.test_error[-1].mean()),
                   final_centroid_distance=float(traj.centroid_distance[-1].mean()))
    print(json.dumps(summary, indent=2))
    return summary
