"""A thin, quiet wrapper around ``pythia8mc.Pythia``: card checking, seeding, batched events.

Pythia and fastjet write banners and messages straight to the C-level stdout. We route that file
descriptor into a temporary file while they run, and forward Pythia's errors and warnings to
``logging`` instead, so library users see problems without the noise.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DependencyError, GenerationError

log = logging.getLogger(__name__)

#: (card, message) pairs already logged by this process: chunks reuse a process, say it once.
_SAID: set[tuple[str, str]] = set()

#: Settings every hepad run uses; card lines come after them (and may override), seed lines last.
#: Not ``Print:quiet``: it also hides initialisation errors, which we want to log and report.
BASE_SETTINGS = (
    "Beams:eCM = 13000.",
    "Init:showProcesses = off",
    "Init:showMultipartonInteractions = off",
    "Init:showChangedSettings = off",
    "Init:showChangedParticleData = off",
    "Init:showChangedResonanceData = off",
    "Next:numberCount = 0",
    "Next:numberShowEvent = 0",
    "Next:numberShowInfo = 0",
    "Next:numberShowProcess = 0",
    "Next:numberShowLHA = 0",
)

#: Pythia's seed range (0 would mean "seed from the clock").
SEED_MAX = 900_000_000

try:  # pragma: no cover - platform dependent
    _LIBC = ctypes.CDLL(None)
except OSError:  # pragma: no cover
    _LIBC = None


def _flush_c_stdout() -> None:
    if _LIBC is not None:
        with contextlib.suppress(Exception):
            _LIBC.fflush(None)


@dataclass
class CapturedOutput:
    """Lines the C++ code printed while captured."""

    lines: list[str]

    @property
    def problems(self) -> list[str]:
        return [ln.strip() for ln in self.lines if "PYTHIA Error" in ln or "PYTHIA Abort" in ln]


@contextlib.contextmanager
def quiet_stdout(context: str = "pythia", log_problems: bool = True) -> Iterator[CapturedOutput]:
    """Capture the process-level stdout (fd 1); log Pythia errors (WARNING) and warnings (DEBUG)."""
    captured = CapturedOutput(lines=[])
    with contextlib.suppress(Exception):
        sys.stdout.flush()
    _flush_c_stdout()
    try:
        saved = os.dup(1)
    except OSError:  # no fd 1 (rare embedded setups): run uncaptured
        yield captured
        return
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), 1)
        try:
            yield captured
        finally:
            _flush_c_stdout()
            os.dup2(saved, 1)
            os.close(saved)
            tmp.seek(0)
            captured.lines[:] = tmp.read().decode("utf-8", "replace").splitlines()
    if not log_problems:  # the caller turns them into an exception
        return
    for line in captured.lines:
        if "PYTHIA Error" in line or "PYTHIA Abort" in line:
            log.warning("%s: %s", context, line.strip())
        elif "PYTHIA Warning" in line:
            log.debug("%s: %s", context, line.strip())


def import_pythia():
    try:
        import pythia8mc
    except ImportError as exc:  # pragma: no cover - pinned dependency
        raise DependencyError(
            f"Event generation needs Pythia 8 ({exc}). Install it with: pip install pythia8mc==8.317.2"
        ) from None
    return pythia8mc


def read_card(path: str | os.PathLike[str]) -> list[tuple[int, str]]:
    """(line number, setting) pairs of a Pythia card; comments (``!``, ``#``) and blanks dropped."""
    p = Path(path)
    if not p.is_file():
        raise GenerationError(f"{p}: no such card file. Pass a Pythia settings file (.cmnd).")
    out = []
    for lineno, raw in enumerate(p.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.split("!", 1)[0].split("#", 1)[0].strip()
        if line:
            out.append((lineno, line))
    if not out:
        raise GenerationError(f"{p}: the card holds no settings (only comments or blank lines).")
    return out


def _new_pythia():
    pythia8mc = import_pythia()
    with quiet_stdout("pythia construct"):
        return pythia8mc.Pythia("", False)


_BOOL_WORDS = {"on", "off", "yes", "no", "true", "false", "1", "0", "ok"}
#: Particle-data properties that hold one number (Pythia's ParticleData::readString).
_PARTICLE_FLOATS = {"m0", "mwidth", "mmin", "mmax", "tau0", "htau", "varwidth"}
_PARTICLE_INTS = {"spintype", "chargetype", "coltype", "onmode", "offmode"}
_PARTICLE_BOOLS = {"isresonance", "maydecay", "tauCalc".lower(), "isvisible", "doexternaldecay",
                   "dodecay", "isvisible", "doforcewidth"}
_PARTICLE_INT_LISTS = {"onifany", "onifall", "onifmatch", "offifany", "offifall", "offifmatch",
                       "onpositiveifany", "onpositiveifall", "onpositiveifmatch", "onnegativeifany",
                       "onnegativeifall", "onnegativeifmatch", "products"}


def _number_problem(kind: str, value: str) -> str | None:
    """Why ``value`` is not a valid ``kind`` ("float", "int", "bool", "ints"), or None."""
    words = value.replace(",", " ").split() if kind in ("ints", "floats") else [value]
    if not words or not value.strip():
        return "an empty value"
    for w in words:
        try:
            if kind == "bool":
                if w.lower() not in _BOOL_WORDS:
                    return "on or off"
            elif kind in ("int", "ints"):
                if w.lower() in ("on", "off") and kind == "int":
                    continue
                if float(w) != int(float(w)):
                    return "a whole number"
            else:
                float(w)
        except ValueError:
            return {"float": "a number", "floats": "numbers", "int": "a whole number",
                    "ints": "whole numbers (PDG ids)"}[kind]
    if kind == "float" and "," in value:
        return "a number (decimal point, not comma)"
    return None


def value_problem(pythia, line: str) -> str | None:
    """A description of what is wrong with the value of a ``key = value`` card line, or None.

    Pythia accepts many malformed values silently (``35:m0 = abc`` sets the mass to 0,
    ``Higgs:useBSM = maybe`` reads as off), so hepad checks each value against the type of the
    setting before Pythia sees it.
    """
    if "=" in line:
        key, value = (x.strip() for x in line.split("=", 1))
    else:
        parts = line.split(None, 1)
        if len(parts) < 2:
            return None
        key, value = parts[0], parts[1].strip()
    head = key.split(":")
    kind = None
    if len(head) >= 2 and head[0].lstrip("-").isdigit():
        prop = head[-1].lower()
        if len(head) == 3 and head[1].isdigit():  # e.g. 35:0:bRatio, 42:0:products
            kind = "ints" if prop == "products" else ("float" if prop == "bratio" else
                                                    ("int" if prop in ("onmode", "memode") else None))
        elif prop in _PARTICLE_FLOATS:
            kind = "float"
        elif prop in _PARTICLE_INTS:
            kind = "int"
        elif prop in _PARTICLE_BOOLS:
            kind = "bool"
        elif prop in _PARTICLE_INT_LISTS:
            kind = "ints"
    else:
        st = pythia.settings
        if st.isParm(key):
            kind = "float"
        elif st.isMode(key):
            kind = "int"
        elif st.isFlag(key):
            kind = "bool"
        elif st.isPVec(key):
            kind = "floats"
        elif st.isMVec(key):
            kind = "ints"
    if kind is None:
        return None
    why = _number_problem(kind, value)
    return None if why is None else f"{key} needs {why}, got {value!r}"


def check_card_lines(card_lines: Sequence[tuple[int, str]], origin: str) -> None:
    """Raise :class:`GenerationError` naming ``origin`` and the line that is wrong: a value of the
    wrong type (checked here), or a line Pythia rejects."""
    pythia = _new_pythia()
    for lineno, line in card_lines:
        problem = value_problem(pythia, line)
        if problem is not None:
            raise GenerationError(f"{origin}, line {lineno}: {problem}. Fix the value in that line.")
        with quiet_stdout(origin, log_problems=False) as out:
            ok = pythia.readString(line)
        if not ok:
            detail = "; ".join(out.problems) or "not a known setting or value"
            raise GenerationError(
                f"{origin}, line {lineno}: Pythia rejected {line!r} ({detail}). "
                "Fix or remove that line; the settings are listed at https://pythia.org/latest-manual/."
            )


def pythia_version() -> str:
    pythia8mc = import_pythia()
    version = getattr(pythia8mc, "__version__", None)
    if version:
        return str(version)
    with quiet_stdout():
        return f"{_new_pythia().parm('Pythia:versionNumber'):.3f}"


class PythiaRun:
    """One initialised Pythia instance producing awkward batches, with a charge cache."""

    def __init__(self, card_lines: Sequence[tuple[int, str]], origin: str, seed: int,
                 extra: Sequence[str] = ()) -> None:
        if not 1 <= seed <= SEED_MAX:
            raise GenerationError(f"Pythia seed must lie in 1..{SEED_MAX}, got {seed}.")
        self.origin = origin
        self.pythia = _new_pythia()
        lines = [(0, s) for s in BASE_SETTINGS] + list(card_lines) + [(0, s) for s in extra]
        lines += [(0, "Random:setSeed = on"), (0, f"Random:seed = {seed}")]
        for lineno, line in lines:
            with quiet_stdout(origin, log_problems=False) as out:
                ok = self.pythia.readString(line)
            if not ok:
                where = f"{origin}, line {lineno}" if lineno else origin
                raise GenerationError(
                    f"{where}: Pythia rejected {line!r} ({'; '.join(out.problems) or 'unknown setting'})."
                )
        with quiet_stdout(origin, log_problems=False) as out:
            ok = self.pythia.init()
        if ok:
            for line in out.problems:  # non-fatal: worth a look, not a stop
                log.warning("%s: %s", origin, line)
        else:
            raise GenerationError(
                f"{origin}: Pythia failed to initialise ({'; '.join(out.problems) or 'no message'}). "
                "Check the process settings of the card."
            )
        self._charge: dict[int, float] = {}
        self._info: dict[int, tuple[float, bool]] = {}
        #: Pythia error/abort message -> how often it came during generation.
        self.problems: dict[str, int] = {}

    def next_batch(self, n: int):
        """``n`` events as an awkward array (failed events are skipped by Pythia)."""
        with quiet_stdout(self.origin, log_problems=False) as out:
            batch = self.pythia.nextBatch(int(n))
        for line in out.problems:
            # Rare per-event errors repeat; say each once, count them all (provenance).
            if line not in self.problems and (self.origin, line) not in _SAID:
                _SAID.add((self.origin, line))
                log.warning("%s: %s (further occurrences are counted in the provenance)", self.origin, line)
            self.problems[line] = self.problems.get(line, 0) + 1
        return batch

    def particle_info(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(charge, visible) of each particle id from Pythia's particle data (``isVisible()``:
        False for neutrinos, neutralinos, gravitinos, dark matter 51-53, hidden-valley states...)."""
        uniq, inverse = np.unique(ids, return_inverse=True)
        pdata = self.pythia.particleData
        q = np.empty(len(uniq), dtype=np.float32)
        vis = np.empty(len(uniq), dtype=bool)
        for i, pid in enumerate(uniq.tolist()):
            info = self._info.get(pid)
            if info is None:
                info = self._info[pid] = (float(pdata.charge(pid)), bool(pdata.isVisible(pid)))
            q[i], vis[i] = info
        return q[inverse], vis[inverse]

    def charges(self, ids: np.ndarray) -> np.ndarray:
        """Electric charge of each particle id, from a cache filled on first sight of an id."""
        uniq, inverse = np.unique(ids, return_inverse=True)
        pdata = self.pythia.particleData
        vals = np.empty(len(uniq), dtype=np.float32)
        for i, pid in enumerate(uniq.tolist()):
            q = self._charge.get(pid)
            if q is None:
                q = self._charge[pid] = float(pdata.charge(pid))
            vals[i] = q
        return vals[inverse]

    def cross_section(self) -> tuple[float, float]:
        """Pythia's (sigmaGen, sigmaErr) estimate so far, in pb."""
        info = self.pythia.infoPython()
        return float(info.sigmaGen()) * 1e9, float(info.sigmaErr()) * 1e9
