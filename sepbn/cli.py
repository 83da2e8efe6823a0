"""The ``sepbn`` console script: one sub-command per module under ``sepbn.commands``.

Each command module defines ``configure(parser)`` and ``run(args) -> int`` and imports what it
needs at its top; the table below is the only place a command name meets its module. Only the
command being run is imported (``sepbn --help`` imports none), so ``sepbn synth`` never pays for
torch start-up it does not need.

Errors: :func:`main` is the one place that catches them (a failing rank of a multi-process
``sepbn train`` excepted: :mod:`sepbn.errors`). An expected error (:data:`sepbn.errors.EXPECTED`:
bad input, bad config, missing file, unreadable checkpoint, no face found) prints one line
``sepbn <cmd>: <file>: <problem>`` and exits non-zero; ``--debug`` re-raises it with its traceback.
Ctrl-C prints ``sepbn <cmd>: interrupted`` and exits 130. Other exceptions are bugs: traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .errors import EXPECTED, rank_tag, report

COMMANDS: dict[str, tuple[str, str]] = {
    "synth": ("sepbn.commands.synth", "generate SynthFaces in the official annotation formats"),
    "train": ("sepbn.commands.train", "train a model (single dataset or CNT) from a config file"),
    "eval": ("sepbn.commands.evaluate", "evaluate a checkpoint: NME, FR, AUC, CED, WFLW subsets"),
    "demo": ("sepbn.commands.demo", "the quickstart: SynthFaces, BN vs SepBN vs CNT+SepBN"),
    "predict": ("sepbn.commands.predict", "landmarks on image files, folders and videos"),
    "export": ("sepbn.commands.export", "export a checkpoint to ONNX or TorchScript"),
    "cache": ("sepbn.commands.cache", "build the decoded face cache for fast data loading"),
    "study": ("sepbn.commands.study", "a grid of variants x seeds, resumable and parallel, into one table"),
    "analyze": ("sepbn.commands.analyze", "what SepBN learned: attention entropy, mapping-set similarity, t-SNE"),
    "check": ("sepbn.commands.check", "check a config and every image of its datasets without training"),
}


def chosen_command(argv: list[str]) -> str | None:
    """The sub-command ``argv`` names: its first word that is not an option (``--debug``, the only
    option before the command, takes no value)."""
    return next((a for a in argv if not a.startswith("-")), None)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of ``sepbn``, with the options of ``command`` (None: the list of commands only)."""
    parser = argparse.ArgumentParser(prog="sepbn", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show the traceback of expected errors too")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        # also after the command name; SUPPRESS keeps a flag given before it
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        p.set_defaults(_module=module)
        if name != command:
            continue
        try:
            importlib.import_module(module).configure(p)
        except ModuleNotFoundError as e:
            if e.name != module:
                raise
            p.set_defaults(_missing=True)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(chosen_command(argv))
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    if getattr(args, "_missing", False):
        print(f"sepbn {args.command}: not available in this build", file=sys.stderr)
        return 2
    prog = f"sepbn {args.command}{rank_tag()}"
    try:
        return int(importlib.import_module(args._module).run(args) or 0)
    except KeyboardInterrupt:
        if args.debug:
            raise
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except EXPECTED as e:
        if args.debug:
            raise
        return report(prog, e)


if __name__ == "__main__":
    raise SystemExit(main())
