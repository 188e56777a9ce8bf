"""The process catalogue: names -> Pythia cards shipped as package data."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ..errors import GenerationError, closest


@dataclass(frozen=True)
class Process:
    """One catalogue entry."""

    name: str
    card: str  # path relative to the cards package folder
    kind: str  # "sm", "bsm" (built-in signal), "extra" (held-out user-card signal)
    description: str
    fake_model: bool = False  # apply the jet -> lepton fake model (QCD)

    @property
    def card_path(self) -> Path:
        return Path(str(resources.files("hepad.generate").joinpath("cards", self.card)))


CATALOGUE: dict[str, Process] = {
    p.name: p
    for p in (
        Process("w", "w.cmnd", "sm", "W -> l nu (l = e, mu, tau)"),
        Process("z", "z.cmnd", "sm", "Z/gamma* -> l l (l = e, mu, tau), m(ll) > 40 GeV"),
        Process("ttbar", "ttbar.cmnd", "sm", "top-quark pairs, all decays"),
        Process("qcd", "qcd.cmnd", "sm", "QCD multijets, pT-hat > 25 GeV, with the jet -> lepton fake model",
                fake_model=True),
        Process("ato4l", "ato4l.cmnd", "bsm", "neutral scalar A, m = 50 GeV, A -> Z*Z* -> 4 l"),
        Process("lq-btau", "lq-btau.cmnd", "bsm", "scalar leptoquark pairs, m = 80 GeV, LQ -> b tau"),
        Process("h0-tautau", "h0-tautau.cmnd", "bsm", "neutral scalar h0, m = 60 GeV, h0 -> tau tau"),
        Process("hplus-taunu", "hplus-taunu.cmnd", "bsm",
                "charged scalar h+-, m = 60 GeV, h+- -> tau nu (tau -> e/mu forced)"),
        Process("zprime-ll", "zprime-ll.cmnd", "extra", "Z' -> ee/mumu, m = 500 GeV"),
        Process("wprime-lnu", "wprime-lnu.cmnd", "extra", "W' -> e nu / mu nu, m = 1 TeV"),
    )
}

#: ADC2021 background composition after the lepton filter (fractions of accepted events).
SM_MIX = {"w": 0.592, "qcd": 0.338, "z": 0.067, "ttbar": 0.003}

#: Catalogue names plus the composite ones.
PROCESS_NAMES = tuple(CATALOGUE) + ("sm-mix",)


def get_process(name: str) -> Process:
    """The catalogue entry ``name``; an unknown name lists the valid ones."""
    if name not in CATALOGUE:
        raise GenerationError(
            f"unknown process {name!r}.{closest(name, PROCESS_NAMES)} Choose one of "
            f"{', '.join(PROCESS_NAMES)}, or pass --card FILE.cmnd with your own Pythia settings."
        )
    return CATALOGUE[name]


def split_counts(n: int, fractions: dict[str, float]) -> dict[str, int]:
    """Integer counts summing to ``n`` in the given proportions (largest remainder)."""
    total = sum(fractions.values())
    exact = {k: n * v / total for k, v in fractions.items()}
    counts = {k: int(v) for k, v in exact.items()}
    rest = n - sum(counts.values())
    for k in sorted(exact, key=lambda k: exact[k] - counts[k], reverse=True)[:rest]:
        counts[k] += 1
    return counts
