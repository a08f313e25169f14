"""What every command line of the product shares."""

from __future__ import annotations

import argparse


def command_parser(prog: str, doc: str) -> argparse.ArgumentParser:
    """A command's parser: the first paragraph of its module docstring as the description, the
    whole docstring (examples, what it does, exit codes) after the options in --help."""
    return argparse.ArgumentParser(
        prog=prog,
        description=doc.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=doc,
    )
