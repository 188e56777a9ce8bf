"""A small comparison on the generator's tiny dataset (realistic Pythia events), shared by the plot and report tests."""

from __future__ import annotations

import functools
from pathlib import Path

SIGNALS = ("ato4l", "lq-btau", "h0-tautau", "hplus-taunu")


@functools.lru_cache(maxsize=None)
def tiny_comparison(sm_train: Path, sm_val: Path, sm_test: Path, *signals: Path):
    """ae (2 epochs: a history whose best epoch is the last, i.e. unconverged), iforest and mahalanobis.

    The default 95th-percentile thresholds are kept on purpose: a 2 MHz rate, which the report
    must flag as not a trigger setting.
    """
    import hepad
    from hepad.evaluation import compare

    dets = {
        "ae": hepad.train("ae", sm_train, sm_val, epochs=2, random_state=0),
        "iforest": hepad.train("iforest", sm_train, sm_val),
        "mahalanobis": hepad.train("mahalanobis", sm_train, sm_val),
    }
    return compare(dets, sm_test, {p.stem: p for p in signals}, embed=("pca",), n_embed=400)


def comparison_of(tiny_dataset: dict[str, Path]):
    return tiny_comparison(tiny_dataset["sm_train"], tiny_dataset["sm_val"], tiny_dataset["sm_test"],
                           *(tiny_dataset[s] for s in SIGNALS))


@functools.lru_cache(maxsize=None)
def _saved(out: Path, *paths: Path) -> Path:
    tiny_comparison(*paths).save(out, report=True, dpi=40)
    return out


def report_of(tiny_dataset: dict[str, Path], tmp_root: Path) -> Path:
    """The comparison saved with its report once per test session (40 dpi PNGs: fast to write and embed)."""
    paths = (tiny_dataset["sm_train"], tiny_dataset["sm_val"], tiny_dataset["sm_test"],
             *(tiny_dataset[s] for s in SIGNALS))
    return _saved(tmp_root / "tiny-report", *paths)
