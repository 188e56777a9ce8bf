"""Event generation with Pythia 8, fastjet and a parameterised detector response.

Quick tour::

    from hepad.generate import generate, build_dataset
    generate("w", 1000, "w.h5", seed=1)                # W -> l nu, 1000 events passing the filter
    generate(None, 500, "mine.h5", card="my.cmnd")     # a user model through the same simulation
    paths = build_dataset("small")                     # the default benchmark, cached

See ``docs/generation.md`` for the catalogue, the simulation, the QCD fake model and seeding.
"""

from __future__ import annotations

from ._catalogue import CATALOGUE, PROCESS_NAMES, SM_MIX, Process, get_process
from ._dataset import DATASET_FILES, DATASET_SIZES, build_dataset, default_dataset_dir
from ._engine import DEFAULT_CHUNK_SIZE, derive_seed, generate
from ._simulation import DETECTOR, FakeModel, SimulationConfig, lepton_efficiency

__all__ = [
    "CATALOGUE",
    "PROCESS_NAMES",
    "SM_MIX",
    "Process",
    "get_process",
    "generate",
    "derive_seed",
    "DEFAULT_CHUNK_SIZE",
    "build_dataset",
    "default_dataset_dir",
    "DATASET_FILES",
    "DATASET_SIZES",
    "SimulationConfig",
    "DETECTOR",
    "lepton_efficiency",
    "FakeModel",
]
