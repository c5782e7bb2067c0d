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
    """Run a subcommand and return its result (for tests and scripts); bad input exits with code 2."""
    try:
        return CLI(commands(), args=argv, as_positional=False, fail_untyped=False)
    except ValueError as err:  # bad input: one clear line, no traceback
        print(f"gdeq: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


def main(argv: list[str] | None = None) -> None:
    """The console entry point (returns nothing, so the exit status is 0 on success)."""
    run(argv)


if __name__ == "__main__":
    main()
