"""ROOT reader (uproot + awkward): NanoAOD, ATLAS open-data ``mini`` trees, and flat trees.

The kind of tree is detected from its branches:

``nanoaod``
    CMS NanoAOD ``Events``: ``MET_pt``, ``MET_phi``, ``Electron_pt/eta/phi``, ``Muon_pt/eta/phi``,
    ``Jet_pt/eta/phi`` (GeV).
``atlas``
    ATLAS 13 TeV open-data ``mini``: ``lep_pt/eta/phi/type`` (type 11 electron, 13 muon),
    ``jet_pt/eta/phi``, ``met_et``, ``met_phi``; momenta in MeV, converted to GeV.
``flat``
    Anything else, or any tree when ``columns=`` is given: scalar numeric branches become flat
    features (jagged and string branches are dropped and reported).

NanoAOD and ATLAS trees map into the ADC2021 (N, 19, 4) layout with the ADC2021 object cuts
(:data:`hepad._layout.ADC_CUTS`), pT ordering within each type and zero padding, all
vectorised with awkward arrays.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np

from .. import _layout as L
from ..errors import FormatError, InputError, MissingKeyError, closest
from ._range import clamp_range
from ..events import EventSet, fill_objects

log = logging.getLogger(__name__)

DEFAULT_TREES = ("Events", "mini", "events")
MEV = 1e-3  # MeV -> GeV

NANOAOD_BRANCHES = {
    "met": ("MET_pt", "MET_phi"),
    "electron": ("Electron_pt", "Electron_eta", "Electron_phi"),
    "muon": ("Muon_pt", "Muon_eta", "Muon_phi"),
    "jet": ("Jet_pt", "Jet_eta", "Jet_phi"),
}
ATLAS_BRANCHES = {
    "met": ("met_et", "met_phi"),
    "lepton": ("lep_pt", "lep_eta", "lep_phi", "lep_type"),
    "jet": ("jet_pt", "jet_eta", "jet_phi"),
}


def _uproot() -> Any:
    import uproot

    return uproot


def _check_header(path: Path) -> None:
    """Check the ROOT magic and that the file is as long as its header says (fEND)."""
    with open(path, "rb") as fh:
        head = fh.read(20)
    if head[:4] != b"root":
        raise FormatError(
            f"{path}: not a ROOT file (it does not start with 'root'). Check the file, or pass "
            "--format if it is HDF5, CSV or Parquet."
        )
    if len(head) < 16:
        raise FormatError(f"{path}: truncated ROOT file ({len(head)} bytes of header).")
    version = int.from_bytes(head[4:8], "big")
    end = int.from_bytes(head[12:20] if version >= 1_000_000 else head[12:16], "big")
    size = path.stat().st_size
    if size < end:
        raise FormatError(
            f"{path}: truncated ROOT file: its header says {end:,} bytes, the file has {size:,}. "
            "Re-download or regenerate it."
        )


def _open(path: Path) -> Any:
    _check_header(path)
    uproot = _uproot()
    try:
        return uproot.open(path)
    except Exception as exc:  # uproot raises ValueError, OSError, its own errors...
        raise FormatError(
            f"{path}: not a readable ROOT file ({exc.__class__.__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}). "
            "It may be truncated or corrupt."
        ) from None


_TREE_CLASSES = ("TTree", "ROOT::RNTuple")


def _trees(f: Any) -> list[str]:
    names = [k.rsplit(";", 1)[0] for k, c in f.classnames(recursive=True).items() if c in _TREE_CLASSES]
    return list(dict.fromkeys(names))


def _is_rntuple(tree: Any) -> bool:
    return type(tree).__name__.endswith("RNTuple") or "RNTuple" in type(tree).__module__


def _tree(f: Any, path: Path, key: str | None) -> tuple[Any, str]:
    names = _trees(f)
    if key is not None:
        if key not in names:
            raise MissingKeyError(
                f"{path}: no TTree {key!r}; the file holds {', '.join(names) or 'no trees'}."
                f"{closest(key, names)} Pass --key with one of them."
            )
        return f[key], key
    if not names:
        raise FormatError(
            f"{path}: the ROOT file holds no TTree or RNTuple (keys: {', '.join(f.keys(cycle=False)) or 'none'})."
        )
    if len(names) == 1:
        return f[names[0]], names[0]
    for candidate in DEFAULT_TREES:
        if candidate in names:
            return f[candidate], candidate
    raise MissingKeyError(
        f"{path}: several TTrees ({', '.join(names)}) and none of {', '.join(DEFAULT_TREES)}; "
        "choose one with key= / --key."
    )


def tree_kind(branches: Sequence[str]) -> str:
    """``"nanoaod"``, ``"atlas"`` or ``"flat"`` from a tree's branch names."""
    have = set(branches)
    if set(NANOAOD_BRANCHES["met"]) <= have and any(
        set(v) <= have for k, v in NANOAOD_BRANCHES.items() if k != "met"
    ):
        return "nanoaod"
    if set(ATLAS_BRANCHES["met"]) <= have and set(ATLAS_BRANCHES["lepton"]) <= have:
        return "atlas"
    return "flat"


def _is_scalar_numeric(branch: Any) -> bool:
    interp = branch.interpretation
    dtype = getattr(interp, "to_dtype", None)
    if dtype is None or type(interp).__name__ != "AsDtype":
        return False
    return dtype.shape == () and (np.issubdtype(dtype, np.number) or dtype == np.bool_)


class _Plan:
    def __init__(self, tree: Any, path: Path, key: str, columns: Sequence[str] | None) -> None:
        self.path, self.key = path, key
        self.dropped: tuple[str, ...] = ()
        if _is_rntuple(tree):
            self._init_rntuple(tree, path, key, columns)
            return
        names = list(tree.keys())
        if columns:
            missing = [c for c in columns if c not in names]
            if missing:
                raise MissingKeyError(
                    f"{path}: tree {key!r} has no branch {missing[0]!r}."
                    f"{closest(missing[0], names)}"
                )
            bad = [c for c in columns if not _is_scalar_numeric(tree[c])]
            if bad:
                raise FormatError(
                    f"{path}: branch {bad[0]!r} of tree {key!r} is {tree[bad[0]].typename}, not a "
                    "numeric scalar; columns= reads one number per event (choose other branches)."
                )
            self.kind, self.branches = "flat", list(columns)
            return
        self.kind = tree_kind(names)
        if self.kind == "nanoaod":
            self.branches = [b for group in NANOAOD_BRANCHES.values() for b in group if b in names]
        elif self.kind == "atlas":
            self.branches = [b for group in ATLAS_BRANCHES.values() for b in group if b in names]
        else:
            self.branches = [n for n in names if _is_scalar_numeric(tree[n])]
            self.dropped = tuple(n for n in names if n not in self.branches)
            if not self.branches:
                raise FormatError(
                    f"{path}: tree {key!r} has no numeric scalar branch to use as a feature and "
                    "is neither NanoAOD nor an ATLAS mini tree. Pass columns= with branches."
                )
            if self.dropped:
                log.warning(
                    "%s: tree %s: dropped %d non-numeric or jagged branch(es): %s",
                    path, key, len(self.dropped), ", ".join(self.dropped),
                )

    def _init_rntuple(self, tree: Any, path: Path, key: str, columns: Sequence[str] | None) -> None:
        # RNTuple (what uproot >= 5.6 writes by default): read as a flat tree of its scalar
        # numeric top-level fields; the object mapping needs NanoAOD/ATLAS TTree branches.
        names = [k for k in tree.keys() if "." not in k]
        n = int(tree.num_entries)
        sample = tree.arrays(entry_start=0, entry_stop=min(n, 1)) if n else None

        def scalar(name: str) -> bool:
            if sample is None:
                return True
            content = sample[name].type.content
            return isinstance(content, ak.types.NumpyType) and content.primitive not in ("datetime64", "timedelta64")

        if columns:
            missing = [c for c in columns if c not in names]
            if missing:
                raise MissingKeyError(f"{path}: RNTuple {key!r} has no field {missing[0]!r}.{closest(missing[0], names)}")
            bad = [c for c in columns if not scalar(c)]
            if bad:
                raise FormatError(f"{path}: field {bad[0]!r} of RNTuple {key!r} is not a numeric scalar.")
            self.kind, self.branches = "flat", list(columns)
            return
        self.kind = "flat"
        self.branches = [c for c in names if scalar(c)]
        self.dropped = tuple(c for c in names if c not in self.branches)
        if not self.branches:
            raise FormatError(f"{path}: RNTuple {key!r} has no numeric scalar field; pass columns=.")
        if self.dropped:
            log.warning("%s: RNTuple %s: dropped %d non-scalar field(s): %s", path, key,
                        len(self.dropped), ", ".join(self.dropped))

    def provenance(self) -> dict[str, Any]:
        prov: dict[str, Any] = {"source": str(self.path), "format": "root", "key": self.key,
                                "tree_kind": self.kind}
        if self.kind == "atlas":
            prov["units"] = "GeV (converted from MeV)"
        if self.dropped:
            prov["dropped_columns"] = list(self.dropped)
        return prov

    def convert(self, arrays: ak.Array) -> EventSet:
        prov = self.provenance()
        if self.kind == "flat":
            n = len(arrays)
            data = np.empty((n, len(self.branches)), dtype=np.float32)
            for j, b in enumerate(self.branches):
                data[:, j] = ak.to_numpy(arrays[b]).astype(np.float32)
            return EventSet(data, feature_names=tuple(self.branches), provenance=prov)
        if self.kind == "nanoaod":
            return EventSet(_map_nanoaod(arrays), provenance=prov)
        return EventSet(_map_atlas(arrays), provenance=prov)


def _select(pt: ak.Array, eta: ak.Array, phi: ak.Array, kind: str, width: int) -> tuple[np.ndarray, ...]:
    """Apply the ADC2021 cut of ``kind``, order by pT (descending), pad to ``width`` with zeros."""
    cut = L.ADC_CUTS[kind]
    keep = (pt > cut["pt_min"]) & (abs(eta) < cut["abs_eta_max"])
    pt, eta, phi = pt[keep], eta[keep], phi[keep]
    order = ak.argsort(pt, axis=1, ascending=False, stable=True)
    out = []
    for arr in (pt[order], eta[order], phi[order]):
        padded = ak.fill_none(ak.pad_none(arr, width, axis=1, clip=True), 0.0)
        out.append(ak.to_numpy(padded).astype(np.float32, copy=False))
    return tuple(out)


def _map_nanoaod(a: ak.Array) -> np.ndarray:
    n = len(a)
    fields = set(a.fields)
    objs: dict[str, tuple[np.ndarray, ...] | None] = {}
    for kind, width, name in (("electron", L.N_ELECTRONS, "electron"), ("muon", L.N_MUONS, "muon"),
                              ("jet", L.N_JETS, "jet")):
        pt_b, eta_b, phi_b = NANOAOD_BRANCHES[name]
        objs[kind] = (_select(a[pt_b], a[eta_b], a[phi_b], kind, width)
                      if {pt_b, eta_b, phi_b} <= fields else None)
    met = (ak.to_numpy(a["MET_pt"]).astype(np.float32), ak.to_numpy(a["MET_phi"]).astype(np.float32))
    return fill_objects(n, met=met, electrons=objs["electron"], muons=objs["muon"], jets=objs["jet"])


def _map_atlas(a: ak.Array) -> np.ndarray:
    n = len(a)
    pt, eta, phi, typ = (a["lep_pt"] * MEV, a["lep_eta"], a["lep_phi"], a["lep_type"])
    electrons = _select(pt[typ == 11], eta[typ == 11], phi[typ == 11], "electron", L.N_ELECTRONS)
    muons = _select(pt[typ == 13], eta[typ == 13], phi[typ == 13], "muon", L.N_MUONS)
    jets = None
    if {"jet_pt", "jet_eta", "jet_phi"} <= set(a.fields):
        jets = _select(a["jet_pt"] * MEV, a["jet_eta"], a["jet_phi"], "jet", L.N_JETS)
    met = (ak.to_numpy(a["met_et"] * MEV).astype(np.float32),
           ak.to_numpy(a["met_phi"]).astype(np.float32))
    return fill_objects(n, met=met, electrons=electrons, muons=muons, jets=jets)


def _arrays(tree: Any, plan: _Plan, start: int, stop: int) -> ak.Array:
    return tree.arrays(plan.branches, entry_start=start, entry_stop=stop, library="ak")


def read(
    path: str | os.PathLike[str],
    key: str | None = None,
    columns: Sequence[str] | None = None,
    entry_range: tuple[int, int | None] | None = None,
) -> EventSet:
    """Read one TTree (or ``entry_range`` of it) into an EventSet."""
    path = Path(path)
    with _open(path) as f:
        tree, k = _tree(f, path, key)
        plan = _Plan(tree, path, k, columns)
        n = int(tree.num_entries)
        if n == 0:
            raise InputError(f"{path}: tree {k!r} holds no events.")
        start, stop = clamp_range(entry_range, n)
        return plan.convert(_arrays(tree, plan, start, stop))


def iterate(
    path: str | os.PathLike[str],
    chunk_size: int = 100_000,
    key: str | None = None,
    columns: Sequence[str] | None = None,
    entry_range: tuple[int, int | None] | None = None,
) -> Iterator[EventSet]:
    """Yield EventSets of ``chunk_size`` entries, reading the tree by entry ranges."""
    path = Path(path)
    with _open(path) as f:
        tree, k = _tree(f, path, key)
        plan = _Plan(tree, path, k, columns)
        n = int(tree.num_entries)
        if n == 0:
            raise InputError(f"{path}: tree {k!r} holds no events.")
        start, stop = clamp_range(entry_range, n)
        if start == stop:
            yield plan.convert(_arrays(tree, plan, start, stop))
            return
        for lo in range(start, stop, chunk_size):
            yield plan.convert(_arrays(tree, plan, lo, min(stop, lo + chunk_size)))


def count(path: str | os.PathLike[str], key: str | None = None) -> int:
    """Entries of the chosen tree, from its metadata."""
    path = Path(path)
    with _open(path) as f:
        tree, _ = _tree(f, path, key)
        return int(tree.num_entries)


def list_keys(path: str | os.PathLike[str]) -> dict[str, tuple]:
    """TTrees in the file and their number of entries."""
    path = Path(path)
    with _open(path) as f:
        return {name: (int(f[name].num_entries),) for name in _trees(f)}
