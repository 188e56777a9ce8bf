"""Loading the background and named signal samples an evaluation runs on."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, InputError
from ..events import EventSet

__all__ = ["BACKGROUND_NAME", "as_events", "load_samples", "split_signal_spec"]

#: The name under which the background's scores and plots are kept.
BACKGROUND_NAME = "SM background"


def as_events(obj: Any, what: str, max_events: int | None = None, **read_opts: Any) -> EventSet:
    """An EventSet from an EventSet, an array, a path or glob, or a list of them (concatenated).

    ``read_opts`` (``format``, ``key``, ``columns``, ``drop_invalid``) go to
    :func:`hepad.read_events` for every file.
    """
    if isinstance(obj, EventSet):
        return obj if max_events is None else obj[:max_events]
    if isinstance(obj, (str, os.PathLike)):
        from ..io import read_events
        from ..scoring import expand_files

        files = expand_files([obj])
        rng = None if max_events is None else (0, int(max_events))
        sets = [read_events(f, entry_range=rng, **read_opts) for f in files]
        return sets[0] if len(sets) == 1 else EventSet.concat(
            sets, provenance={"source": ", ".join(str(f) for f in files), "files": len(files)}
        )
    if isinstance(obj, (list, tuple)) and obj and all(isinstance(o, (str, os.PathLike, EventSet)) for o in obj):
        sets = [as_events(o, what, max_events, **read_opts) for o in obj]
        return sets[0] if len(sets) == 1 else EventSet.concat(
            sets, provenance={"source": ", ".join(s.source for s in sets), "files": len(sets)}
        )
    if isinstance(obj, np.ndarray):
        return EventSet(obj, provenance={"source": f"<{what} array>"})
    raise InputError(f"{what}: expected an EventSet, an array, a file path or a list of them; got {type(obj).__name__}.")


def split_signal_spec(spec: Any) -> tuple[str, Any]:
    """``(name, sample)`` of a signal given as ``NAME=FILE``, a bare file (named by its stem) or an EventSet."""
    if isinstance(spec, EventSet):
        return str(spec.provenance.get("process") or Path(spec.source).stem), spec
    text = os.fspath(spec)
    if "=" in text and not Path(text).exists():
        name, path = text.split("=", 1)
        if not name:
            raise ConfigError(f"--signal {text!r}: the name before '=' is empty; use NAME=FILE.")
        return name, path
    return Path(text).stem, text


def load_samples(
    background: Any, signals: Any, *, max_events: int | None = None
) -> tuple[EventSet, dict[str, EventSet]]:
    """Background and named signal samples from EventSets, arrays, paths or globs.

    ``signals`` is a mapping name -> sample, or a sequence of paths (the name is the file stem)
    or of ``NAME=PATH`` strings. ``max_events`` reads at most that many events per file.
    """
    bkg = as_events(background, "background", max_events)
    out: dict[str, EventSet] = {}
    if isinstance(signals, Mapping):
        items = list(signals.items())
    elif isinstance(signals, (str, os.PathLike, EventSet)):
        items = [split_signal_spec(signals)]
    else:
        items = [split_signal_spec(s) for s in signals]
    for name, sample in items:
        if name in out:
            raise ConfigError(f"Signal name {name!r} is given twice; name them with NAME=FILE.")
        if name == BACKGROUND_NAME:
            raise ConfigError(f"{BACKGROUND_NAME!r} is reserved for the background; rename that signal.")
        out[name] = as_events(sample, f"signal {name}", max_events)
    if not out:
        raise ConfigError("Give at least one signal sample (--signal NAME=FILE; signals= in Python).")
    return bkg, out


def describe(events: EventSet) -> dict[str, Any]:
    """Provenance of a sample for the report: size, layout and its scalar provenance fields."""
    prov = {k: v for k, v in events.provenance.items() if isinstance(v, (str, int, float, bool)) or v is None}
    return {"n_events": len(events), "layout": events.layout, **prov}
