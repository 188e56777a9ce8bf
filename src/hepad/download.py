"""Download the ADC2021 challenge files from Zenodo, verified, resumable and atomic.

The records of the challenge ("LHC physics dataset for unsupervised New Physics detection at
40 MHz", Govorkova et al., Sci. Data 9, 118 (2022)):

=============  ===============  ===========================================================
name           Zenodo record    what
=============  ===============  ===========================================================
background     5046389          SM background cocktail, ``background_for_training.h5``
ato4l          5046446          A -> 4 leptons
lq-btau        5055454          leptoquark -> b tau (low mass)
h0-tautau      5061633          h0 -> tau tau
hplus-taunu    5061688          h+ -> tau nu
=============  ===============  ===========================================================

The record ids come from the challenge's published links (zenodo.org/records/5046389 etc.);
the file names, sizes and MD5 checksums are **not** written here: no source we could check
lists them, so they are read from Zenodo's API (``/api/records/<id>``) at download time, and
every file is verified against that MD5 before it is kept. Any other record (e.g. a black box)
can be fetched by id with ``records=`` / ``--record``.

Each file is streamed to ``.<name>.part`` beside its target and renamed only when complete and
verified; an interrupted transfer resumes from the partial file with an HTTP ``Range`` request.
A file that fails its checksum is deleted. :func:`prepare_adc2021` then turns the downloads
into a dataset with the names of a built one (``sm_train``, ``sm_val``, ``sm_test``, ``ato4l``,
``lq-btau``, ``h0-tautau``, ``hplus-taunu``), so ``evaluate`` and the demo use it unchanged.

The base URL is ``https://zenodo.org``, or ``$HEPAD_ZENODO_URL`` / ``base_url=`` (tests point it
at a local server).
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import socket
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ConfigError, HepadError, InputError, closest

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://zenodo.org"
BASE_URL_ENV = "HEPAD_ZENODO_URL"
CHUNK = 1 << 20
TIMEOUT_S = 60.0


class DownloadError(HepadError):
    """A download failed: offline, an HTTP error, an interrupted transfer or a bad checksum."""


class ChecksumError(DownloadError):
    """The downloaded bytes do not match the record's checksum (the file was deleted)."""


@dataclass(frozen=True)
class Record:
    """One Zenodo record of the challenge and the file hepad takes from it."""

    name: str
    record: int
    kind: str  # "background" or "signal"
    #: file names to prefer, in order, when the record holds several .h5 files
    prefer: tuple[str, ...]
    description: str


ADC2021_RECORDS: dict[str, Record] = {
    r.name: r
    for r in (
        Record("background", 5046389, "background", ("background_for_training.h5",),
               "SM background cocktail (W, QCD, Z, ttbar)"),
        Record("ato4l", 5046446, "signal",
               ("Ato4l_lepFilter_13TeV_filtered.h5", "Ato4l_lepFilter_13TeV.h5"), "A -> 4 leptons"),
        Record("lq-btau", 5055454, "signal",
               ("leptoquark_LOWMASS_lepFilter_13TeV_filtered.h5", "leptoquark_LOWMASS_lepFilter_13TeV.h5"),
               "leptoquark -> b tau"),
        Record("h0-tautau", 5061633, "signal",
               ("hToTauTau_13TeV_PU20_filtered.h5", "hToTauTau_13TeV_PU20.h5"), "h0 -> tau tau"),
        Record("hplus-taunu", 5061688, "signal",
               ("hChToTauNu_13TeV_PU20_filtered.h5", "hChToTauNu_13TeV_PU20.h5"), "h+ -> tau nu"),
    )
}
SIGNALS = tuple(n for n, r in ADC2021_RECORDS.items() if r.kind == "signal")

#: How the background file is split into the dataset's SM files: contiguous ranges of its
#: events, in file order (the file is already shuffled), as fractions of the whole.
SM_SPLIT = (("sm_train", 0.0, 0.5), ("sm_val", 0.5, 0.6), ("sm_test", 0.6, 1.0))

ProgressCallback = Callable[[str, int, int | None], None]


@dataclass(frozen=True)
class RemoteFile:
    record: int
    key: str
    size: int | None
    checksum: str | None  # "md5:<hex>"
    url: str


def base_url(override: str | None = None) -> str:
    return (override or os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL).rstrip("/")


def _offline(url: str, exc: BaseException) -> DownloadError:
    reason = getattr(exc, "reason", exc)
    return DownloadError(
        f"cannot reach {url} ({reason}); check the network connection (or ${BASE_URL_ENV}) and rerun: "
        "finished files are kept and partial ones resume."
    )


def _open(url: str, headers: dict[str, str] | None = None) -> Any:
    req = urllib.request.Request(url, headers={"User-Agent": "hepad", **(headers or {})})
    try:
        return urllib.request.urlopen(req, timeout=TIMEOUT_S)
    except urllib.error.HTTPError as exc:
        if exc.code == 416:
            return exc  # range not satisfiable: the caller restarts the file
        raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}.") from None
    except (urllib.error.URLError, socket.timeout, ConnectionError, OSError) as exc:
        raise _offline(url, exc) from None


def record_files(record: int, *, base: str | None = None) -> list[RemoteFile]:
    """The files of a Zenodo record, from its API: name, size, checksum and download URL."""
    root = base_url(base)
    url = f"{root}/api/records/{int(record)}"
    with _open(url, {"Accept": "application/json"}) as resp:
        try:
            meta = json.loads(resp.read().decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            raise DownloadError(f"{url}: the answer is not JSON; is {root} a Zenodo server?") from None
    files = meta.get("files", [])
    if isinstance(files, dict):  # /files endpoint shape: {"entries": [...]} or {"entries": {key: ...}}
        files = files.get("entries", [])
        files = list(files.values()) if isinstance(files, dict) else files
    out = []
    for f in files:
        key = f.get("key") or f.get("filename")
        if not key:
            continue
        links = f.get("links") or {}
        link = links.get("content") or links.get("self") or links.get("download")
        if not link or (link.rstrip("/").endswith(f"/files/{key}") and "content" not in links):
            link = f"{root}/records/{int(record)}/files/{key}?download=1"
        out.append(RemoteFile(int(record), key, f.get("size") or f.get("filesize"), f.get("checksum"), link))
    if not out:
        raise DownloadError(f"{url}: the record lists no files.")
    return out


def _choose(rec: Record, files: list[RemoteFile]) -> RemoteFile:
    by_key = {f.key: f for f in files}
    for name in rec.prefer:
        if name in by_key:
            return by_key[name]
    h5 = [f for f in files if f.key.endswith(".h5")]
    if len(h5) == 1:
        return h5[0]
    raise DownloadError(
        f"Zenodo record {rec.record} ({rec.name}) holds {', '.join(by_key)}; none is "
        f"{' or '.join(rec.prefer)}. Fetch the one you want with --record {rec.record}."
    )


def _md5_of(path: Path, upto: int | None = None) -> Any:
    h = hashlib.md5()
    with open(path, "rb") as fh:
        left = upto
        while True:
            block = fh.read(CHUNK if left is None else min(CHUNK, left))
            if not block:
                break
            h.update(block)
            if left is not None:
                left -= len(block)
    return h


def download_file(
    remote: RemoteFile,
    target: str | os.PathLike[str],
    *,
    progress: ProgressCallback | None = None,
    force: bool = False,
) -> Path:
    """Fetch one file to ``target``: resumable, verified against its checksum, atomic.

    An existing ``target`` whose size and checksum match is kept (nothing is transferred)
    unless ``force``. The bytes go to ``.<name>.part`` beside it; a rerun after an
    interruption continues from there with an HTTP Range request.

    Raises
    ------
    ChecksumError
        The complete file does not match ``remote.checksum``; the partial file is deleted.
    DownloadError
        Offline, an HTTP error, or the transfer was cut (the partial file is kept for a rerun).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    algo, _, want = (remote.checksum or "").partition(":")
    if not want and len(algo) == 32 and all(c in "0123456789abcdef" for c in algo.lower()):
        algo, want = "md5", algo.lower()  # older Zenodo answers: the bare MD5
    if remote.checksum and algo != "md5":
        raise DownloadError(f"{remote.url}: checksum {remote.checksum!r} is not an MD5; cannot verify it.")
    if target.exists() and not force:
        if (remote.size is None or target.stat().st_size == remote.size) and (
            not want or _md5_of(target).hexdigest() == want
        ):
            log.info("%s: present and verified, not downloaded again", target)
            if progress:
                progress(target.name, remote.size, remote.size)
            return target
        raise InputError(
            f"{target}: exists but does not match Zenodo record {remote.record} "
            f"(size or checksum); pass --force (force=True in Python) to replace it."
        )
    part = target.with_name(f".{target.name}.part")
    done = part.stat().st_size if part.exists() else 0
    if remote.size is not None and done > remote.size:
        part.unlink()
        done = 0
    h = _md5_of(part, done) if done else hashlib.md5()
    headers = {"Range": f"bytes={done}-"} if done else {}
    resp = _open(remote.url, headers)
    status = getattr(resp, "status", None) or getattr(resp, "code", None)
    if done and status != 206:
        # The server refuses the range (416) or ignores it (200, the whole file): start again.
        done, h = 0, hashlib.md5()
        if status == 416:
            resp.close()
            resp = _open(remote.url)
    total = remote.size
    if total is None:
        length = resp.headers.get("Content-Length")
        total = done + int(length) if length is not None else None
    try:
        with resp, open(part, "ab" if done else "wb") as out:
            while True:
                block = resp.read(CHUNK)
                if not block:
                    break
                out.write(block)
                h.update(block)
                done += len(block)
                if progress:
                    progress(target.name, done, total)
    except (OSError, http.client.HTTPException) as exc:  # a cut connection, IncompleteRead, a timeout
        raise DownloadError(
            f"{remote.url}: transfer interrupted after {done:,} of "
            f"{'?' if total is None else f'{total:,}'} bytes ({exc.__class__.__name__}); "
            "rerun the same command to resume."
        ) from None
    if total is not None and done < total:
        raise DownloadError(
            f"{remote.url}: transfer ended after {done:,} of {total:,} bytes; rerun the same command to resume."
        )
    if want and h.hexdigest() != want:
        part.unlink(missing_ok=True)
        raise ChecksumError(
            f"{target.name}: MD5 {h.hexdigest()} does not match Zenodo record {remote.record}'s "
            f"{want}; the download was deleted. Rerun to fetch it again."
        )
    if not want:
        log.warning("%s: Zenodo gives no checksum; kept after the size check only.", target.name)
    # Not hepad._atomic.atomic_path: that removes its temporary file on failure, and a partial
    # download must survive to be resumed. os.replace is the same atomic rename.
    os.replace(part, target)
    return target


def download_adc2021(
    directory: str | os.PathLike[str],
    *,
    signals: Sequence[str] | None = None,
    records: Iterable[int] = (),
    background: bool = True,
    base: str | None = None,
    progress: ProgressCallback | None = None,
    force: bool = False,
) -> dict[str, Path]:
    """Download the ADC2021 files into ``directory/zenodo/``.

    Parameters
    ----------
    directory : path
        Dataset folder; the raw files go to its ``zenodo/`` subfolder.
    signals : sequence of str, optional
        Signal names (``ato4l``, ``lq-btau``, ``h0-tautau``, ``hplus-taunu``); default all four.
    records : iterable of int
        Other Zenodo records (e.g. black boxes): every ``.h5`` file of each is fetched.
    background : bool
        Fetch the background record too (default True).
    base : str, optional
        Server base URL (default ``$HEPAD_ZENODO_URL`` or https://zenodo.org).
    progress : callable, optional
        ``progress(file_name, bytes_done, bytes_total_or_None)``.
    force : bool
        Replace existing files that do not match the record.

    Returns
    -------
    dict
        Name (``background``, ``ato4l``, ..., or ``record-<id>/<file>``) -> path.
    """
    chosen = list(SIGNALS if signals is None else signals)
    for s in chosen:
        if s not in SIGNALS:
            raise ConfigError(f"unknown ADC2021 signal {s!r}.{closest(s, SIGNALS)} Choose from {', '.join(SIGNALS)}.")
    raw = Path(directory) / "zenodo"
    names = (["background"] if background else []) + chosen
    out: dict[str, Path] = {}
    for name in names:
        rec = ADC2021_RECORDS[name]
        remote = _choose(rec, record_files(rec.record, base=base))
        out[name] = download_file(remote, raw / remote.key, progress=progress, force=force)
    for rid in records:
        for remote in record_files(int(rid), base=base):
            if remote.key.endswith(".h5"):
                out[f"record-{rid}/{remote.key}"] = download_file(
                    remote, raw / f"record-{rid}" / remote.key, progress=progress, force=force)
    return out


def prepare_adc2021(
    downloads: dict[str, Path],
    directory: str | os.PathLike[str],
    *,
    force: bool = False,
    chunk_size: int = 200_000,
) -> dict[str, Path]:
    """Write the dataset files (``sm_train.h5`` ... ``hplus-taunu.h5``) from the downloads.

    The background is split into contiguous ranges (:data:`SM_SPLIT`: first 50 % train, next
    10 % validation, last 40 % test); every signal file becomes ``<name>.h5``. Files are
    streamed through hepad's HDF5 writer (float32, labels 0/1, ``process`` and provenance naming
    the Zenodo record), so they read like a built dataset. Existing outputs are kept when their
    provenance names the same source file, else replaced only with ``force``.
    """
    from .io import count_events, iter_events, write_events

    directory = Path(directory)
    out: dict[str, Path] = {}
    jobs: list[tuple[str, Path, tuple[int, int] | None, int, str]] = []
    if "background" in downloads:
        src = downloads["background"]
        n = count_events(src, format="hdf5")
        for stem, lo, hi in SM_SPLIT:
            jobs.append((stem, src, (int(n * lo), int(n * hi)), 0, "background"))
    for name in SIGNALS:
        if name in downloads:
            jobs.append((name, downloads[name], None, 1, name))
    for stem, src, rng, label, record_name in jobs:
        target = directory / f"{stem}.h5"
        out[stem] = target
        stamp = {"source_file": src.name, "zenodo_record": ADC2021_RECORDS[record_name].record,
                 "entry_range": list(rng) if rng else None}
        if target.exists():
            if _stamp(target) == stamp:
                continue
            if not force:
                raise InputError(f"{target}: exists and was not made from {src.name}; pass --force (force=True in Python) to replace it.")

        def chunks(src=src, rng=rng, label=label, stem=stem, stamp=stamp):
            import numpy as np

            for chunk in iter_events(src, format="hdf5", chunk_size=chunk_size, entry_range=rng):
                chunk.labels = np.full(len(chunk), label, dtype=np.int8)
                chunk.process = np.full(len(chunk), "sm-mix-adc2021" if label == 0 else stem)
                chunk.provenance = {**chunk.provenance, "process": "sm-mix" if label == 0 else stem,
                                    "dataset": "adc2021", **stamp}
                yield chunk

        write_events(chunks(), target)
    meta = {"size": "adc2021", "source": "zenodo",
            "records": {n: r.record for n, r in ADC2021_RECORDS.items() if n in downloads},
            "sm_split": {s: [lo, hi] for s, lo, hi in SM_SPLIT},
            "files": {f"{k}.h5": {"from": downloads["background" if k.startswith("sm_") else k].name}
                      for k in out}}
    from ._atomic import atomic_path

    with atomic_path(directory / "dataset.json", suffix=".json.tmp") as tmp:
        tmp.write_text(json.dumps(meta, indent=2))
    return out


def _stamp(path: Path) -> dict[str, Any] | None:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            prov = json.loads(f.attrs["hepad_provenance"])
    except Exception:
        return None
    return {k: prov.get(k) for k in ("source_file", "zenodo_record", "entry_range")}


def adc2021_paths(directory: str | os.PathLike[str]) -> dict[str, Path]:
    """The prepared files of a downloaded ADC2021 dataset (stem -> path), as ``build_dataset``
    returns them; raises when the folder holds no prepared download."""
    directory = Path(directory)
    meta = directory / "dataset.json"
    try:
        info = json.loads(meta.read_text())
    except (OSError, ValueError):
        info = {}
    if info.get("size") != "adc2021":
        raise InputError(
            f"{directory}: no downloaded ADC2021 dataset here; run: hepad dataset download adc2021 --dir {directory}"
        )
    paths = {Path(f).stem: directory / f for f in info.get("files", {})}
    missing = [p.name for p in paths.values() if not p.is_file()]
    if missing:
        raise InputError(f"{directory}: {', '.join(missing)} missing; rerun hepad dataset download adc2021.")
    return paths
