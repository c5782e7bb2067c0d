"""wandb initialisation and its fallback, defined once for gdeq (training runs, reports, sweeps).

Policy: ``"offline"`` unless the user asks for ``"online"``; an online failure falls back to offline,
an offline failure to no wandb at all; nothing ever fails because wandb is missing or unreachable.
``"disabled"`` (or None) skips wandb.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

__all__ = ["WANDB_MODES", "wandb_attempts", "log_to_wandb", "wandb_logger"]

WANDB_MODES = ("offline", "online", "disabled")


def wandb_attempts(mode: str | None) -> list[str]:
    """The modes to try in order: online -> [online, offline], offline -> [offline], disabled/None -> []."""
    if mode not in (*WANDB_MODES, None):
        raise ValueError(f"wandb: must be one of {list(WANDB_MODES)}, got {mode!r}")
    return {"online": ["online", "offline"], "offline": ["offline"]}.get(mode or "disabled", [])


def _settings(wandb):
    return wandb.Settings(silent=True, init_timeout=60)


def log_to_wandb(mode: str | None, log: Callable[[Any], None], *, project: str, dir: str | os.PathLike,
                 name: str | None = None, config: dict | None = None, job_type: str | None = None) -> dict:
    """Open a wandb run, call ``log(run)``, finish; retry offline after an online failure; never raise.

    Under ``wandb agent`` (``WANDB_SWEEP_ID`` set) the agent's run and mode are used. Returns
    ``{"mode", "dir", "id"}`` of the run written, plus ``"error_<mode>"`` for each failed attempt.
    """
    info: dict[str, Any] = dict(mode=mode or "disabled")
    attempts = wandb_attempts(mode)
    if not attempts:
        return info
    try:
        import wandb
    except ImportError:
        return dict(info, error="wandb not installed")
    under_agent = bool(os.environ.get("WANDB_SWEEP_ID"))
    for attempt in attempts:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                run = wandb.init(project=project, name=name, dir=str(dir), mode=None if under_agent else attempt,
                                 config=config, job_type=job_type, reinit="create_new", settings=_settings(wandb))
                log(run)
                info.update(mode=attempt, dir=str(Path(run.dir).resolve().parent), id=run.id)
                run.finish()
            return info
        except Exception as err:  # never let wandb stop the work
            info[f"error_{attempt}"] = f"{type(err).__name__}: {err}"
            try:
                wandb.finish()
            except Exception:
                pass
    return info


def wandb_logger(mode: str | None, *, save_dir: str | os.PathLike, name: str, project: str, group: str | None = None,
                 tags: Sequence[str] = ()):
    """A Lightning ``WandbLogger``, already initialised (so a failure shows here, not mid-run), or None.

    The run's hyperparameters reach it through Lightning (``save_hyperparameters``), not from here.
    """
    attempts = wandb_attempts(mode)
    if not attempts:
        return None
    try:
        import wandb
        from pytorch_lightning.loggers import WandbLogger
    except ImportError:
        warnings.warn("wandb: not installed; logging to CSV only")
        return None
    for attempt in attempts:
        try:
            logger = WandbLogger(name=name, project=project, group=group, tags=list(tags), save_dir=str(save_dir),
                                 offline=(attempt == "offline"), settings=_settings(wandb))
            _ = logger.experiment  # initialise now
            return logger
        except Exception as err:  # never let wandb stop a run
            warnings.warn(f"wandb: {attempt} initialisation failed ({err}); "
                          + ("retrying offline" if attempt == "online" else "logging to CSV only"))
            try:
                wandb.finish()
            except Exception:
                pass
    return None
