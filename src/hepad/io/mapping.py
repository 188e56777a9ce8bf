"""Which branches of a ROOT tree are electrons, muons, jets and MET: detection and mapping files.

A tree maps into the ADC2021 object layout when it holds at least one jagged object collection.
Collections are found by branch prefix, case-insensitively, with ``_`` or ``.`` between prefix
and component:

==========  ==========================================  ================================
object      prefixes tried, in order                     components
==========  ==========================================  ================================
electron    Electron, Electrons, Ele, El                 (pt, eta, phi[, mass]) or
muon        Muon, Muons, Mu                              (px, py, pz, E), jagged
jet         Jet, Jets, AK4Jet                            (Cartesian is converted with ``vector``)
MET         MET, PFMET, MissingET, Met                    (pt or et, phi) or (px, py), scalar
==========  ==========================================  ================================

The ATLAS open-data ``mini`` layout (``lep_*`` with ``lep_type`` 11/13, MeV) is a preset of the
same machinery. What detection cannot decide (another prefix, MeV units, a lepton collection split
by a type branch, tighter cuts) goes into a small YAML mapping file, validated here::

    tree: Events            # optional: which tree
    muon:
      prefix: mu            # mu_pt, mu_eta, mu_phi (or mu_px, mu_py, mu_pz, mu_E)
      units: MeV            # GeV (default), MeV or TeV
      pt_min: 10            # extra cuts, on top of the ADC2021 ones
    electron: none          # no electrons: the slots stay empty
    jet:
      branches: {pt: AntiKt4_pt, eta: AntiKt4_eta, phi: AntiKt4_phi}
    met:
      branches: {px: MET_x, py: MET_y}

Kinds left out of the file are still detected. Every choice comes with a reason
(:attr:`Collection.why`), shown by ``hepad inspect``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping as MappingABC
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, PrivateAttr, ValidationError, field_validator, model_validator

from ..errors import ConfigError, MissingKeyError, closest

OBJECT_KINDS = ("electron", "muon", "jet")
KINDS = ("met",) + OBJECT_KINDS

PREFIXES: dict[str, tuple[str, ...]] = {
    "electron": ("electron", "electrons", "ele", "el"),
    "muon": ("muon", "muons", "mu"),
    "jet": ("jet", "jets", "ak4jet"),
    "met": ("met", "pfmet", "missinget"),
}
#: component -> accepted spellings (compared lower-case)
COMPONENTS: dict[str, tuple[str, ...]] = {
    "pt": ("pt",),
    "eta": ("eta",),
    "phi": ("phi",),
    "mass": ("mass", "m"),
    "px": ("px",),
    "py": ("py",),
    "pz": ("pz",),
    "E": ("e", "energy"),
    "et": ("et", "met"),
}
POLAR = ("pt", "eta", "phi")
CARTESIAN = ("px", "py", "pz", "E")
UNITS = {"GeV": 1.0, "MeV": 1e-3, "TeV": 1e3}

Units = Literal["GeV", "MeV", "TeV"]


class _Select(BaseModel):
    model_config = ConfigDict(extra="forbid")
    branch: str
    values: list[int]


class CollectionSpec(BaseModel):
    """One object collection in a mapping file."""

    model_config = ConfigDict(extra="forbid")
    prefix: Optional[str] = None
    branches: Optional[dict[str, str]] = None
    units: Optional[Units] = None
    pt_min: Optional[float] = None
    abs_eta_max: Optional[float] = None
    select: Optional[_Select] = None

    @model_validator(mode="after")
    def _one_source(self) -> "CollectionSpec":
        if (self.prefix is None) == (self.branches is None):
            raise ValueError("give exactly one of 'prefix' or 'branches'")
        if self.branches is not None:
            keys = set(self.branches)
            if not (set(POLAR) <= keys <= set(POLAR) | {"mass"}) and keys != set(CARTESIAN):
                raise ValueError(
                    f"branches has {sorted(keys)}; give pt, eta, phi (and optionally mass) "
                    "or px, py, pz, E"
                )
        return self


class MetSpec(BaseModel):
    """MET in a mapping file: (pt, phi) or (px, py) scalar branches."""

    model_config = ConfigDict(extra="forbid")
    prefix: Optional[str] = None
    branches: Optional[dict[str, str]] = None
    units: Optional[Units] = None

    @model_validator(mode="after")
    def _one_source(self) -> "MetSpec":
        if (self.prefix is None) == (self.branches is None):
            raise ValueError("give exactly one of 'prefix' or 'branches'")
        if self.branches is not None and set(self.branches) not in ({"pt", "phi"}, {"px", "py"}):
            raise ValueError(f"branches has {sorted(self.branches)}; give pt, phi or px, py")
        return self


_Absent = Literal["none"]


class MappingFile(BaseModel):
    """A validated mapping file (see the module docstring)."""

    model_config = ConfigDict(extra="forbid")
    tree: Optional[str] = None
    electron: Union[CollectionSpec, _Absent, None] = None
    muon: Union[CollectionSpec, _Absent, None] = None
    jet: Union[CollectionSpec, _Absent, None] = None
    met: Union[MetSpec, _Absent, None] = None
    _source: Optional[str] = PrivateAttr(default=None)

    @property
    def source(self) -> str:
        """Where the mapping came from (the file path, or ``mapping`` for a dict)."""
        return self._source or "mapping"

    @field_validator("electron", "muon", "jet", "met", mode="before")
    @classmethod
    def _none_words(cls, v: Any) -> Any:
        if isinstance(v, str) and v.lower() in ("none", "absent", "no", "off"):
            return "none"
        if v is False:
            return "none"
        return v


def load_mapping(path: str | os.PathLike[str] | MappingABC | MappingFile) -> MappingFile:
    """Read and validate a YAML mapping file (or take a dict / an already validated one).

    Raises
    ------
    ConfigError
        Naming the file and the key for an unknown key, a wrong type or a missing branch set.
    """
    if isinstance(path, MappingFile):
        return path
    if isinstance(path, MappingABC):
        raw, where = dict(path), "mapping"
    else:
        import yaml

        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"{p}: mapping file not found.")
        try:
            raw = yaml.safe_load(p.read_text())
        except yaml.YAMLError as exc:
            raise ConfigError(f"{p}: not valid YAML ({str(exc).splitlines()[0]}).") from None
        where = str(p)
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise ConfigError(f"{p}: a mapping file is a YAML mapping (tree/electron/muon/jet/met).")
    try:
        spec = MappingFile.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(x) for x in err["loc"] if not str(x).startswith(("function-", "literal[")))
        key = str(err["loc"][0]) if err["loc"] else ""
        hint = closest(key, MappingFile.model_fields) if err["type"] == "extra_forbidden" else ""
        raise ConfigError(
            f"{where}: {loc or 'mapping'}: {err['msg']}.{hint} Keys: tree, electron, muon, jet, met; "
            "each collection takes prefix or branches, units, pt_min, abs_eta_max, select."
        ) from None
    spec._source = where
    return spec


@dataclass
class Collection:
    """One resolved collection: which branches, how to read them, and why."""

    kind: str
    branches: dict[str, str]
    units: str = "GeV"
    pt_min: float | None = None
    abs_eta_max: float | None = None
    select: tuple[str, tuple[int, ...]] | None = None
    why: str = ""

    @property
    def representation(self) -> str:
        if self.kind == "met":
            return "pxpy" if "px" in self.branches else "ptphi"
        return "cartesian" if "px" in self.branches else "ptetaphi"

    @property
    def needed(self) -> list[str]:
        out = list(self.branches.values())
        if self.select:
            out.append(self.select[0])
        return out

    def describe(self) -> dict[str, Any]:
        d: dict[str, Any] = {"branches": dict(self.branches), "representation": self.representation,
                             "units": self.units, "why": self.why}
        if self.pt_min is not None:
            d["pt_min"] = self.pt_min
        if self.abs_eta_max is not None:
            d["abs_eta_max"] = self.abs_eta_max
        if self.select:
            d["select"] = {"branch": self.select[0], "values": list(self.select[1])}
        return d


@dataclass
class ObjectPlan:
    """The collections of a tree (None: that kind is absent) and the tree's kind label."""

    collections: dict[str, Collection | None] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    tree_kind: str = "objects"

    @property
    def found(self) -> list[str]:
        return [k for k in KINDS if self.collections.get(k) is not None]

    @property
    def missing(self) -> list[str]:
        return [k for k in KINDS if self.collections.get(k) is None]

    @property
    def branches(self) -> list[str]:
        return list(dict.fromkeys(b for c in self.collections.values() if c for b in c.needed))

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k in KINDS:
            c = self.collections.get(k)
            out[k] = c.describe() if c else {"missing": self.notes.get(k, "not found")}
        return out


def _split(name: str) -> tuple[str, str] | None:
    for i, ch in enumerate(name):
        if ch in "_." and 0 < i < len(name) - 1:
            return name[:i].lower(), name[i + 1:]
    return None


def _index(names: list[str]) -> dict[str, dict[str, str]]:
    """lower-case prefix -> {lower-case component: branch name}."""
    idx: dict[str, dict[str, str]] = {}
    for n in names:
        parts = _split(n)
        if parts:
            idx.setdefault(parts[0], {}).setdefault(parts[1].lower(), n)
    return idx


def _components(comps: dict[str, str], wanted: tuple[str, ...]) -> dict[str, str] | None:
    out = {}
    for c in wanted:
        hit = next((comps[s] for s in COMPONENTS[c] if s in comps), None)
        if hit is None:
            return None
        out[c] = hit
    return out


def _from_prefix(kind: str, prefix: str, idx: dict, jagged: set[str], scalar: set[str]) -> tuple[dict[str, str] | None, str]:
    comps = idx.get(prefix.lower(), {})
    if kind == "met":
        for wanted, label in ((("pt", "phi"), "(pt, phi)"), (("et", "phi"), "(et, phi)"), (("px", "py"), "(px, py)")):
            got = _components(comps, wanted)
            if got and all(b in scalar or b in jagged for b in got.values()):
                if "et" in got:
                    got = {"pt": got["et"], "phi": got["phi"]}
                return got, label
        return None, ""
    for wanted, label in ((POLAR, "(pt, eta, phi)"), (CARTESIAN, "(px, py, pz, E)")):
        got = _components(comps, wanted)
        if got and all(b in jagged for b in got.values()):
            return got, label
    return None, ""


def _is_atlas(names: set[str], jagged: set[str]) -> bool:
    return {"lep_pt", "lep_eta", "lep_phi", "lep_type"} <= jagged


def plan_objects(
    names: list[str],
    jagged: set[str],
    scalar: set[str],
    mapping: MappingFile | None = None,
    *,
    where: str = "",
) -> ObjectPlan | None:
    """Resolve the collections of a tree from its branch names (and a mapping file).

    Parameters
    ----------
    names : list of str
        Every branch / field of the tree.
    jagged, scalar : set of str
        The numeric jagged (one list per event) and numeric scalar branches among them.
    mapping : MappingFile, optional
        What detection cannot decide; its entries win over detection.
    where : str
        ``"file: tree X"``, for error messages.

    Returns
    -------
    ObjectPlan or None
        None when no electron, muon or jet collection is found and no mapping is given: the
        tree is read as flat features.
    """
    idx = _index(names)
    plan = ObjectPlan()
    atlas = _is_atlas(set(names), jagged)
    known = set(names)
    for kind in KINDS:
        spec = getattr(mapping, kind) if mapping is not None else None
        if spec == "none":
            plan.collections[kind] = None
            plan.notes[kind] = f"absent by the mapping file {mapping.source}"
            continue
        if spec is not None:
            plan.collections[kind] = _from_spec(kind, spec, idx, jagged, scalar, known, where, mapping.source)
            continue
        plan.collections[kind] = _detect(kind, idx, jagged, scalar, atlas)
        if plan.collections[kind] is None:
            plan.notes[kind] = _why_missing(kind, idx, jagged)
    if atlas and all(getattr(mapping, k, None) is None for k in KINDS):
        plan.tree_kind = "atlas"
    elif all(
        (c is None) or (c.branches.get("pt", "").split("_")[0] in ("MET", "Electron", "Muon", "Jet")
                        and c.representation in ("ptetaphi", "ptphi") and c.units == "GeV")
        for c in plan.collections.values()
    ) and any(c is not None for c in plan.collections.values()):
        plan.tree_kind = "nanoaod"
    if mapping is None and not any(plan.collections.get(k) for k in OBJECT_KINDS):
        return None
    if not plan.found:
        raise ConfigError(f"{where}: the mapping file {mapping.source} leaves no collection to read.")
    return plan


def _detect(kind: str, idx: dict, jagged: set[str], scalar: set[str], atlas: bool) -> Collection | None:
    if atlas:
        if kind in ("electron", "muon"):
            code = 11 if kind == "electron" else 13
            return Collection(kind, {"pt": "lep_pt", "eta": "lep_eta", "phi": "lep_phi"}, units="MeV",
                              select=("lep_type", (code,)),
                              why=f"ATLAS open-data mini layout: lep_* with |lep_type| == {code}; MeV")
        if kind == "jet":
            got, label = _from_prefix("jet", "jet", idx, jagged, scalar)
            if got:
                return Collection(kind, got, units="MeV", why=f"ATLAS mini layout: jet_* {label}; MeV")
            return None
        got, label = _from_prefix("met", "met", idx, jagged, scalar)
        if got:
            return Collection(kind, got, units="MeV", why=f"ATLAS mini layout: met_* {label}; MeV")
        return None
    for prefix in PREFIXES[kind]:
        got, label = _from_prefix(kind, prefix, idx, jagged, scalar)
        if got:
            real = next(iter(got.values())).split("_")[0].split(".")[0]
            shape = "scalar" if kind == "met" else "jagged"
            return Collection(kind, got, why=f"prefix {real!r}: {shape} {label}; units GeV assumed "
                              "(set units in a mapping file if not)")
    return None


def _why_missing(kind: str, idx: dict, jagged: set[str]) -> str:
    partial = [p for p in PREFIXES[kind] if p in idx]
    if partial:
        have = ", ".join(sorted(idx[partial[0]].values())[:6])
        return (f"prefix {partial[0]!r} found ({have}) but not a complete "
                + ("(pt, phi) or (px, py) set" if kind == "met" else "jagged (pt, eta, phi) or (px, py, pz, E) set"))
    return f"no branch with prefix {'/'.join(PREFIXES[kind])}"


def _from_spec(kind: str, spec: CollectionSpec | MetSpec, idx: dict, jagged: set[str], scalar: set[str],
               known: set[str], where: str, source: str | None) -> Collection:
    units = spec.units or "GeV"
    if spec.branches is not None:
        branches = dict(spec.branches)
        for comp, b in branches.items():
            if b not in known:
                raise MissingKeyError(
                    f"{where}: the mapping file {source} names {kind}.branches.{comp} = {b!r}, "
                    f"which the tree does not have.{closest(b, known)}"
                )
        why = f"mapping file {source}: explicit branches"
    else:
        got, label = _from_prefix(kind, spec.prefix, idx, jagged, scalar)
        if got is None:
            have = sorted(idx.get(spec.prefix.lower(), {}).values())
            raise MissingKeyError(
                f"{where}: the mapping file {source} gives {kind}.prefix {spec.prefix!r}, but the "
                "tree has no complete " + ("(pt, phi) or (px, py)" if kind == "met" else "jagged (pt, eta, phi) or (px, py, pz, E)")
                + f" set under it (found: {', '.join(have) or 'nothing'})."
                + closest(spec.prefix.lower(), idx)
            )
        branches = got
        why = f"mapping file {source}: prefix {spec.prefix!r} {label}"
    why += f"; units {units}" + (" (mapping file)" if spec.units else " (default)")
    col = Collection(kind, branches, units=units, why=why)
    if kind != "met":
        col.pt_min, col.abs_eta_max = spec.pt_min, spec.abs_eta_max
        if spec.select is not None:
            if spec.select.branch not in known:
                raise MissingKeyError(
                    f"{where}: the mapping file {source} selects {kind} on {spec.select.branch!r}, "
                    f"which the tree does not have.{closest(spec.select.branch, known)}"
                )
            col.select = (spec.select.branch, tuple(spec.select.values))
    return col
