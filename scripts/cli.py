"""The `gdeq` command: one subcommand per module in scripts/, parsed by jsonargparse.

Every subcommand takes ``--config file.yaml`` (LightningCLI style) and documents each option in
``--help``. The modules only parse, call library functions and print.
"""

from __future__ import annotations

import sys

from jsonargparse import CLI

from gdeq.cli.compare import compare
from gdeq.cli.data import data
from gdeq.cli.demo import demo
from gdeq.cli.equilibrium import equilibrium
from gdeq.cli.sweep import sweep
from gdeq.cli.train import train
from gdeq.cli.validate import validate


def commands() -> dict:
    return {
        "data": data,
        "train": train,
        "equilibrium": equilibrium,
        "compare": compare,
        "validate": validate,
        "sweep": sweep,
        "demo": demo,
    }


def run(argv: list[str] | None = None):
    """Run a subcommand and return its result (for tests and scripts).

    Bad input (ValueError) prints one line and exits with code 2; a diverging run
    (``DivergenceError``) prints its message as one line and exits with code 1. No traceback.
    """
    from gdeq.gd_dynamics.callbacks import DivergenceError

    try:
        return CLI(commands(), args=argv, as_positional=False, fail_untyped=False)
    except ValueError as err:  # bad input: one clear line, no traceback
        _one_line("error", err)
        raise SystemExit(2) from None
    except DivergenceError as err:  # the run stopped being finite: the message says what to change
        _one_line("diverged", err)
        raise SystemExit(1) from None


def _one_line(kind: str, err: Exception) -> None:
    print(f"gdeq: {kind}: {' '.join(str(err).split())}", file=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    """The console entry point (returns nothing, so the exit status is 0 on success)."""
    run(argv)


if __name__ == "__main__":
    main()
