"""What every command line of the product shares."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any


def command_parser(prog: str, doc: str, description: str | None = None) -> argparse.ArgumentParser:
    """A command's parser: `description` (else the first paragraph of its module docstring) at
    the top, the whole docstring (examples, what it does, exit codes) after the options in --help."""
    return argparse.ArgumentParser(
        prog=prog,
        description=description or doc.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=doc,
    )


def guarded(body: Callable[[], int], errors: dict[Any, int], interrupted: str = "interrupted") -> int:
    """Run a command's work: an error it expects (a key of `errors`, a type or tuple of types,
    tried in order) prints as one `error: ...` line and returns its exit code; Ctrl-C prints
    `interrupted` (say what is kept) and returns 130. Anything else is a bug and propagates."""
    try:
        return body()
    except KeyboardInterrupt:
        print(interrupted, file=sys.stderr)
        return 130
    except Exception as e:
        for kinds, code in errors.items():
            if isinstance(e, kinds):
                print(f"error: {e}", file=sys.stderr)
                return code
        raise


def write_json(path: Path | None, data: Any) -> int:
    """A command's --json output: 0 when written (or not asked for), 2 with one error line naming
    the file when it cannot be."""
    if path is None:
        return 0
    try:
        path.write_text(json.dumps(data, indent=2) + "\n")
    except OSError as e:
        print(f"error: {path}: cannot write ({e.strerror or e})", file=sys.stderr)
        return 2
    return 0
