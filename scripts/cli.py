"""The `gdeq` command: one subcommand per module in scripts/, parsed by jsonargparse.

Every subcommand takes ``--config file.yaml`` (LightningCLI style) and documents each option in
``--help``. The modules only parse, call library functions and print.
"""

from __future__ import annotations

import sys

from jsonargparse import CLI

from scripts.data import data


def commands() -> dict:
    return {"data": data}


def main(argv: list[str] | None = None) -> None:
    try:
        CLI(commands(), args=argv, as_positional=False, fail_untyped=False)
    except ValueError as err:  # bad input: one clear line, no traceback
        print(f"gdeq: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
