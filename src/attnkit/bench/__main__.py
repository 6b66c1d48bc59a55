"""``python -m attnkit.bench``: the same command as ``attnkit bench``.

Example:
    ``python -m attnkit.bench --quick --out /tmp/bench-quick``
"""

import argparse
import sys

from .command import add_arguments, run


def main(argv: list[str] | None = None) -> int:
    from ..cli import HelpFormatter

    parser = argparse.ArgumentParser(
        prog="python -m attnkit.bench", description="Benchmark attnkit attention against its peers.",
        formatter_class=HelpFormatter,
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
