"""ROOT reader (uproot + awkward): TTrees and RNTuples, object collections or flat features.

The kind of tree is detected from its branches (:mod:`hepad.io.mapping` does the detection):

``nanoaod``
    CMS NanoAOD names: ``MET_pt``/``MET_phi``, ``Electron_*``, ``Muon_*``, ``Jet_*``
    (``_pt``, ``_eta``, ``_phi``; GeV), any subset of them.
``atlas``
    ATLAS 13 TeV open-data ``mini``: ``lep_pt/eta/phi/type`` (type 11 electron, 13 muon),
    ``jet_pt/eta/phi``, ``met_et``, ``met_phi``; momenta in MeV, converted to GeV.
``objects``
    Any other tree with jagged collections found by prefix (``Muon_Px``/``Muon_Py``/
    ``Muon_Pz``/``Muon_E``, ``mu_pt``/``mu_eta``/``mu_phi``, ``MET_px``/``MET_py``, ...), or
    named by a mapping file; Cartesian four-vectors are converted with ``vector``.
``flat``
    No electron/muon/jet collection, or ``columns=`` given: scalar numeric branches become flat
    features (jagged and string branches are dropped and reported).

Object trees map into the ADC2021 (N, 19, 4) layout with the ADC2021 object cuts
(:data:`hepad._layout.ADC_CUTS`), pT ordering within each type and zero padding, all
vectorised with awkward arrays; a collection the tree lacks leaves its slots empty (one logged
line, and ``provenance["missing_collections"]``).
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
from .mapping import UNITS, Collection, MappingFile, ObjectPlan, load_mapping, plan_objects

log = logging.getLogger(__name__)

DEFAULT_TREES = ("Events", "mini", "events")
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


def tree_kind(branches: Sequence[str], jagged: Sequence[str] | None = None) -> str:
    """``"nanoaod"``, ``"atlas"``, ``"objects"`` or ``"flat"`` from a tree's branch names.

    ``jagged`` names the jagged numeric branches (default: every branch counts as jagged,
    enough to label a tree by its names).
    """
    names = list(branches)
    jag = set(names if jagged is None else jagged)
    plan = plan_objects(names, jag, set(names) - jag if jagged is not None else set(names))
    return "flat" if plan is None else plan.tree_kind


def _is_scalar_numeric(branch: Any) -> bool:
    interp = branch.interpretation
    dtype = getattr(interp, "to_dtype", None)
    if dtype is None or type(interp).__name__ != "AsDtype":
        return False
    return dtype.shape == () and (np.issubdtype(dtype, np.number) or dtype == np.bool_)


def _is_jagged_numeric(branch: Any) -> bool:
    interp = branch.interpretation
    if type(interp).__name__ != "AsJagged":
        return False
    content = getattr(interp, "content", None)
    dtype = getattr(content, "to_dtype", None)
    return dtype is not None and dtype.shape == () and (np.issubdtype(dtype, np.number) or dtype == np.bool_)


def _ttree_kinds(tree: Any) -> tuple[list[str], set[str], set[str]]:
    names = list(tree.keys())
    scalar, jagged = set(), set()
    for n in names:
        try:
            b = tree[n]
            if _is_scalar_numeric(b):
                scalar.add(n)
            elif _is_jagged_numeric(b):
                jagged.add(n)
        except Exception:  # an unreadable streamer: neither, so it is dropped and reported
            continue
    return names, scalar, jagged


def _rntuple_kinds(tree: Any) -> tuple[list[str], set[str], set[str]]:
    names = [k for k in tree.keys() if "." not in k]
    n = int(tree.num_entries)
    sample = tree.arrays(entry_start=0, entry_stop=min(n, 1))
    scalar, jagged = set(), set()
    for name in list(names):
        t = sample[name].type.content
        if isinstance(t, ak.types.OptionType):
            t = t.content
        if isinstance(t, ak.types.NumpyType):
            if t.primitive not in ("datetime64", "timedelta64"):
                scalar.add(name)
        elif isinstance(t, (ak.types.ListType, ak.types.RegularType)):
            inner = t.content.content if isinstance(t.content, ak.types.OptionType) else t.content
            if isinstance(inner, ak.types.NumpyType) and inner.primitive not in ("datetime64", "timedelta64"):
                jagged.add(name)
            elif isinstance(inner, ak.types.RecordType) and not inner.is_tuple:
                # A collection of records (Muon with Muon.pt, Muon.eta, ...): its numeric
                # members are jagged branches named "Muon.pt", which the detection splits at ".".
                for sub, st in zip(inner.fields, inner.contents):
                    st = st.content if isinstance(st, ak.types.OptionType) else st
                    if isinstance(st, ak.types.NumpyType) and st.primitive not in ("datetime64", "timedelta64"):
                        jagged.add(f"{name}.{sub}")
                        names.append(f"{name}.{sub}")
    return names, scalar, jagged


class _Plan:
    def __init__(self, tree: Any, path: Path, key: str, columns: Sequence[str] | None,
                 mapping: MappingFile | None = None) -> None:
        self.path, self.key = path, key
        self.dropped: tuple[str, ...] = ()
        self.objects: ObjectPlan | None = None
        rntuple = _is_rntuple(tree)
        what, part = ("RNTuple", "field") if rntuple else ("tree", "branch")
        names, scalar, jagged = _rntuple_kinds(tree) if rntuple else _ttree_kinds(tree)
        if columns:
            if mapping is not None:
                raise InputError(f"{path}: pass either columns= (a flat read) or a mapping file, not both.")
            missing = [c for c in columns if c not in names]
            if missing:
                raise MissingKeyError(
                    f"{path}: {what} {key!r} has no {part} {missing[0]!r}.{closest(missing[0], names)}"
                )
            bad = [c for c in columns if c not in scalar]
            if bad:
                typename = "" if rntuple else f" is {tree[bad[0]].typename}, i.e."
                raise FormatError(
                    f"{path}: {part} {bad[0]!r} of {what} {key!r}{typename} not a numeric scalar; "
                    "columns= reads one number per event (choose other branches)."
                )
            self.kind, self.branches = "flat", list(columns)
            return
        self.objects = plan_objects(names, jagged, scalar, mapping, where=f"{path}: {what} {key!r}")
        if self.objects is not None:
            self.kind = self.objects.tree_kind
            self.branches = self.objects.branches
            if self.objects.missing:
                log.warning(
                    "%s: %s %s: no %s collection; those slots stay empty (%s).", path, what, key,
                    "/".join(self.objects.missing),
                    "; ".join(f"{k}: {self.objects.notes.get(k, '')}" for k in self.objects.missing),
                )
            return
        self.kind = "flat"
        self.branches = [n for n in names if n in scalar]
        self.dropped = tuple(n for n in names if n not in scalar)
        if not self.branches:
            raise FormatError(
                f"{path}: {what} {key!r} has no numeric scalar {part} to use as a feature and no "
                "electron/muon/jet collection. Pass columns=, or a mapping file naming its collections."
            )
        if self.dropped:
            log.warning(
                "%s: %s %s: dropped %d non-numeric or jagged %s(es): %s",
                path, what, key, len(self.dropped), part, ", ".join(self.dropped),
            )

    def provenance(self) -> dict[str, Any]:
        prov: dict[str, Any] = {"source": str(self.path), "format": "root", "key": self.key,
                                "tree_kind": self.kind}
        if self.objects is not None:
            prov["collections"] = self.objects.describe()
            if self.objects.missing:
                prov["missing_collections"] = list(self.objects.missing)
            units = {c.units for c in self.objects.collections.values() if c}
            if units - {"GeV"}:
                prov["units"] = f"GeV (converted from {', '.join(sorted(units - {'GeV'}))})"
        if self.dropped:
            prov["dropped_columns"] = list(self.dropped)
        return prov

    def convert(self, arrays: ak.Array) -> EventSet:
        prov = self.provenance()
        if self.objects is None:
            n = len(arrays)
            data = np.empty((n, len(self.branches)), dtype=np.float32)
            for j, b in enumerate(self.branches):
                data[:, j] = ak.to_numpy(arrays[b]).astype(np.float32)
            return EventSet(data, feature_names=tuple(self.branches), provenance=prov)
        return EventSet(map_objects(arrays, self.objects), provenance=prov)


def _select(pt: ak.Array, eta: ak.Array, phi: ak.Array, kind: str, width: int,
            pt_min: float | None = None, abs_eta_max: float | None = None) -> tuple[np.ndarray, ...]:
    """Apply the ADC2021 cut of ``kind`` (tightened by ``pt_min`` / ``abs_eta_max``), order by pT
    (descending), pad to ``width`` with zeros."""
    cut = L.ADC_CUTS[kind]
    lo = max(cut["pt_min"], pt_min) if pt_min is not None else cut["pt_min"]
    hi = min(cut["abs_eta_max"], abs_eta_max) if abs_eta_max is not None else cut["abs_eta_max"]
    keep = (pt > lo) & (abs(eta) < hi)
    pt, eta, phi = pt[keep], eta[keep], phi[keep]
    order = ak.argsort(pt, axis=1, ascending=False, stable=True)
    out = []
    for arr in (pt[order], eta[order], phi[order]):
        padded = ak.fill_none(ak.pad_none(arr, width, axis=1, clip=True), 0.0)
        out.append(ak.to_numpy(padded).astype(np.float32, copy=False))
    return tuple(out)


def _field(a: ak.Array, name: str) -> ak.Array:
    """A branch of the read arrays; ``Muon.pt`` of an RNTuple record collection is a["Muon"]["pt"]."""
    if name in a.fields:
        return a[name]
    head, _, rest = name.partition(".")
    return _field(a[head], rest) if rest and head in a.fields else a[name]


def _as_lists(arr: ak.Array) -> ak.Array:
    """One list per event: a scalar branch (one object per event) becomes singletons."""
    return arr if arr.ndim > 1 else ak.unflatten(arr, np.ones(len(arr), dtype=np.int64))


def _polar(a: ak.Array, col: Collection) -> tuple[ak.Array, ak.Array, ak.Array]:
    """(pT [GeV], eta, phi) of a collection; Cartesian four-vectors are converted with vector."""
    scale = UNITS[col.units]
    b = col.branches
    if col.representation == "cartesian":
        import vector

        v = vector.zip({c: _as_lists(_field(a, b[c])) * scale for c in ("px", "py", "pz", "E")})
        pt, eta, phi = v.pt, v.eta, v.phi
        # eta of a momentum along the beam is infinite: such an object fails the |eta| cut.
        eta = ak.nan_to_num(eta, nan=np.inf, posinf=np.inf, neginf=-np.inf)
    else:
        pt, eta, phi = (_as_lists(_field(a, b["pt"])) * scale, _as_lists(_field(a, b["eta"])),
                        _as_lists(_field(a, b["phi"])))
    if col.select is not None:
        branch, values = col.select
        t = abs(_as_lists(_field(a, branch)))
        mask = t == values[0]
        for v in values[1:]:
            mask = mask | (t == v)
        pt, eta, phi = pt[mask], eta[mask], phi[mask]
    return pt, eta, phi


def _met(a: ak.Array, col: Collection) -> tuple[np.ndarray, np.ndarray]:
    scale = UNITS[col.units]

    def scalar(name: str) -> np.ndarray:
        arr = _field(a, name)
        if arr.ndim > 1:  # e.g. Delphes: MET as a one-element list per event
            arr = ak.fill_none(ak.firsts(arr), 0.0)
        return ak.to_numpy(arr).astype(np.float64)

    if col.representation == "pxpy":
        import vector

        v = vector.array({"px": scalar(col.branches["px"]) * scale, "py": scalar(col.branches["py"]) * scale})
        return np.asarray(v.pt, dtype=np.float32), np.asarray(v.phi, dtype=np.float32)
    return ((scalar(col.branches["pt"]) * scale).astype(np.float32),
            scalar(col.branches["phi"]).astype(np.float32))


def map_objects(a: ak.Array, plan: ObjectPlan) -> np.ndarray:
    """Map the arrays of a tree into the (N, 19, 4) layout following ``plan``.

    ADC2021 cuts (tightened by a mapping file's ``pt_min`` / ``abs_eta_max``), pT ordering
    within each type, zero padding; absent collections leave their slots empty.
    """
    n = len(a)
    objs: dict[str, tuple[np.ndarray, ...] | None] = {}
    for kind, width in (("electron", L.N_ELECTRONS), ("muon", L.N_MUONS), ("jet", L.N_JETS)):
        col = plan.collections.get(kind)
        objs[kind] = None if col is None else _select(*_polar(a, col), kind, width, col.pt_min, col.abs_eta_max)
    met_col = plan.collections.get("met")
    met = _met(a, met_col) if met_col is not None else None
    return fill_objects(n, met=met, electrons=objs["electron"], muons=objs["muon"], jets=objs["jet"])


def _arrays(tree: Any, plan: _Plan, start: int, stop: int) -> ak.Array:
    return tree.arrays(plan.branches, entry_start=start, entry_stop=stop, library="ak")


def describe_mapping(
    path: str | os.PathLike[str], key: str | None = None, mapping: Any = None
) -> dict[str, Any]:
    """What :func:`read` would map: tree, kind, and per collection the branches and why.

    For ``hepad inspect --mapping``; reads branch metadata only (an RNTuple: one entry).
    """
    path = Path(path)
    spec, key = _mapping(mapping, key)
    with _open(path) as f:
        tree, k = _tree(f, path, key)
        plan = _Plan(tree, path, k, None, spec)
        out: dict[str, Any] = {"file": str(path), "key": k, "tree_kind": plan.kind,
                               "container": "RNTuple" if _is_rntuple(tree) else "TTree",
                               "mapping_file": spec.source if spec is not None else None}
        if plan.objects is not None:
            out["collections"] = plan.objects.describe()
        else:
            out["collections"] = None
            out["why_flat"] = ("no jagged electron/muon/jet collection found; numeric scalar branches "
                               "become features")
        return out


def _mapping(mapping: Any, key: str | None) -> tuple[MappingFile | None, str | None]:
    spec = None if mapping is None else load_mapping(mapping)
    if spec is not None and spec.tree is not None and key is None:
        key = spec.tree
    return spec, key


def read(
    path: str | os.PathLike[str],
    key: str | None = None,
    columns: Sequence[str] | None = None,
    entry_range: tuple[int, int | None] | None = None,
    mapping: Any = None,
) -> EventSet:
    """Read one TTree or RNTuple (or ``entry_range`` of it) into an EventSet.

    ``mapping`` is a mapping file (path, dict or :class:`~hepad.io.mapping.MappingFile`) for
    what collection detection cannot decide.
    """
    path = Path(path)
    spec, key = _mapping(mapping, key)
    with _open(path) as f:
        tree, k = _tree(f, path, key)
        plan = _Plan(tree, path, k, columns, spec)
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
    mapping: Any = None,
) -> Iterator[EventSet]:
    """Yield EventSets of ``chunk_size`` entries, reading the tree by entry ranges."""
    path = Path(path)
    spec, key = _mapping(mapping, key)
    with _open(path) as f:
        tree, k = _tree(f, path, key)
        plan = _Plan(tree, path, k, columns, spec)
        n = int(tree.num_entries)
        if n == 0:
            raise InputError(f"{path}: tree {k!r} holds no events.")
        start, stop = clamp_range(entry_range, n)
        if start == stop:
            yield plan.convert(_arrays(tree, plan, start, stop))
            return
        for lo in range(start, stop, chunk_size):
            yield plan.convert(_arrays(tree, plan, lo, min(stop, lo + chunk_size)))


def count(path: str | os.PathLike[str], key: str | None = None, mapping: Any = None) -> int:
    """Entries of the chosen tree, from its metadata."""
    path = Path(path)
    _, key = _mapping(mapping, key)
    with _open(path) as f:
        tree, _ = _tree(f, path, key)
        return int(tree.num_entries)


def list_keys(path: str | os.PathLike[str]) -> dict[str, tuple]:
    """TTrees in the file and their number of entries."""
    path = Path(path)
    with _open(path) as f:
        return {name: (int(f[name].num_entries),) for name in _trees(f)}
