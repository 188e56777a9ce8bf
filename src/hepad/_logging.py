"""Logging set-up shared by the command-line entry points (the CLI and ``python -m hepad.demo``)."""

from __future__ import annotations

import logging
import os


def setup_logging(verbose: bool = False) -> None:
    """WARNING by default, INFO with ``verbose``; Dask's cluster chatter only when verbose."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        force=True,
    )
    logging.getLogger("matplotlib").setLevel(logging.ERROR)
    if not verbose:
        # distributed sets its logger levels when first imported, from dask's config (the
        # environment included), so set both: a user asked for events, not scheduler messages.
        os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")
        for name in ("distributed", "dask", "bokeh", "tornado"):
            logging.getLogger(name).setLevel(logging.WARNING)
