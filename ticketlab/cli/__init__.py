"""The `ticketlab` command: parser.py reads its arguments (options.py: the options verbs share, values.py: what each
may be), verbs.py does what each verb says. The parser loads without torch (names from ticketlab.catalog, settings
from ticketlab.config), so that `--help` answers at once; the verbs, and with them torch, are imported once the
arguments are read."""

from __future__ import annotations

import logging
import os
import sys
from typing import Sequence

from ..errors import TicketlabError
from .parser import build_parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command `ticketlab ARGV`; returns its exit status."""
    args = vars(build_parser().parse_args(argv))
    from ..train.launch import end_launch
    from .verbs import VERBS

    secondary = int(os.environ.get("RANK", 0)) > 0  # a launch's other processes (torchrun, accelerate launch)
    logging.basicConfig(format="ticketlab: %(message)s", level=logging.ERROR if secondary else logging.INFO)
    if secondary:  # the main process prints the tables
        sys.stdout = open(os.devnull, "w")
    verb = args.pop("verb")
    try:
        return VERBS[verb](args) or 0
    except TicketlabError as error:
        print(f"ticketlab: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ticketlab: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    finally:
        end_launch()
