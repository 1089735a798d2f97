"""The ``dspark`` command line: one sub-command per module of this package.

Each sub-command module defines ``register(subparsers)``, which adds its parser and sets
``func=run``. Errors dspark_hf raises on purpose (and bad paths) print as one line, exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> module; each module registers one sub-command.
SUBCOMMANDS = {
    "generate": "dspark_hf.cli.generate",
    "train": "dspark_hf.cli.train",
    "finetune": "dspark_hf.cli.finetune",
    "export": "dspark_hf.cli.export",
    "hub": "dspark_hf.cli.hub",
    "profile": "dspark_hf.cli.profile",
    "calibrate": "dspark_hf.cli.calibrate",
    "bench": "dspark_hf.cli.bench",
    "demo": "dspark_hf.cli.demo",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dspark", description="DSpark speculative decoding for transformers.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module_name in SUBCOMMANDS.values():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            if err.name == module_name:
                continue  # sub-command not shipped in this build
            raise
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    from dspark_hf.errors import DSparkError

    args = build_parser().parse_args(argv)
    try:
        result = args.func(args)
    except (DSparkError, FileNotFoundError) as err:
        print(f"dspark {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"dspark {args.command}: interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
