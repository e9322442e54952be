"""Entry point of the ``sac-rag`` command: sub-commands are the modules of ``sac_rag.cli.commands``."""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import os
import pkgutil
import sys

from sac_rag.cli import commands

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED, EXIT_PIPE = 0, 1, 2, 130, 141
EXIT_CODES = f"""exit codes:
  {EXIT_OK}    success
  {EXIT_ERROR}    an error (the message on stderr names the file, flag or input at fault);
       `verify` also exits {EXIT_ERROR} when it finds damage
  {EXIT_USAGE}    a usage error (unknown option, a value out of range)
  {EXIT_INTERRUPTED}  interrupted (Ctrl-C)
  {EXIT_PIPE}  the output pipe was closed early (e.g. `sac-rag stats --store DIR | head -1`)"""


def _version() -> str:
    try:
        return importlib.metadata.version("sac-rag")
    except importlib.metadata.PackageNotFoundError:  # running from a source tree that is not installed
        from sac_rag import __version__

        return __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sac-rag",
        description="RAG over SAC-compressed passage memories",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"sac-rag {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        if hasattr(module, "register"):
            module.register(sub)
    for command in sub.choices.values():
        command.epilog = EXIT_CODES
        command.formatter_class = argparse.RawDescriptionHelpFormatter
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code = int(args.func(args) or EXIT_OK)
        sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
        return code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing more reaches the closed pipe
        return EXIT_PIPE
    except (ValueError, TypeError, OSError, RuntimeError) as e:
        if os.environ.get("SAC_RAG_DEBUG"):
            raise
        print(f"sac-rag {args.command}: error: {e}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
