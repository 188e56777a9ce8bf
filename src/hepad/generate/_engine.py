"""Chunked, seeded, resumable generation: plan chunks, run them (inline or on Dask), merge."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._outputs import output_lock
from .._version import __version__
from ..errors import ConfigError, GenerationError
from ..events import EventSet
from . import _pythia
from ._catalogue import CATALOGUE, SM_MIX, get_process, split_counts
from ._simulation import SIMULATION_VERSION, FakeModel, detector_table, PileupSource, SimulationConfig, simulate_batch

log = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int], None]

DEFAULT_CHUNK_SIZE = 500
#: Mean number of pileup interactions overlaid by default (ADC2021 is PU20).
DEFAULT_PILEUP = 20.0
#: A chunk gives up when this many events in a row gave nothing.
ZERO_ACCEPT_LIMIT = 5000
MINBIAS_CARD = ((0, "SoftQCD:nonDiffractive = on"),)


def derive_seed(*parts: Any) -> int:
    """A Pythia seed in 1..900000000 from a base seed and labels (stable across runs/machines)."""
    digest = hashlib.sha256(":".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") % _pythia.SEED_MAX + 1


@dataclass(frozen=True)
class ChunkSpec:
    """Everything a worker needs to make one chunk; plain data, cheap to ship to Dask."""

    component: str
    origin: str
    card_lines: tuple[tuple[int, str], ...]
    index: int
    n_events: int
    seed: int
    simulation: dict
    fake_model: dict | None = None
    pileup: float = DEFAULT_PILEUP
    path: str | None = None

    @property
    def key(self) -> str:
        d = asdict(self)
        d.pop("path")
        d.pop("origin")
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:24]


@dataclass
class ChunkResult:
    objects: np.ndarray
    weights: np.ndarray
    charges: np.ndarray
    faked: np.ndarray
    stats: dict = field(default_factory=dict)


def _pileup_source(spec: ChunkSpec, sim: SimulationConfig) -> PileupSource:
    run = _pythia.PythiaRun(MINBIAS_CARD, "pileup (SoftQCD:nonDiffractive)", derive_seed(spec.seed, "pileup"))
    return PileupSource(run, int(sim.pileup_max_reuse))


def run_chunk(spec: ChunkSpec) -> ChunkResult:
    """Generate one chunk: Pythia batches -> simulation -> filter, until ``n_events`` accepted."""
    t0 = time.perf_counter()
    sim = SimulationConfig.from_dict(spec.simulation)
    fake = FakeModel(**spec.fake_model) if spec.fake_model else None
    run = _pythia.PythiaRun(spec.card_lines, spec.origin, spec.seed)
    source = _pileup_source(spec, sim) if spec.pileup > 0 else None
    pileup = (source, spec.pileup) if source is not None else None
    rng = np.random.default_rng([spec.seed, 20210])
    parts: list = []
    n_acc = n_gen = 0
    batch_n = min(200, max(20, 2 * spec.n_events))
    while n_acc < spec.n_events:
        batch = run.next_batch(batch_n)
        if len(batch) == 0:
            raise GenerationError(f"{spec.origin}: Pythia returned no events (see the logged Pythia errors).")
        # Only the events that pass are kept: their jets are all we need.
        res = simulate_batch(batch, run.particle_info, sim, rng, fake_model=fake, pileup=pileup,
                             jets_of_rejected=False)
        idx = np.flatnonzero(res.passed)
        need = spec.n_events - n_acc
        if len(idx) >= need:
            idx = idx[:need]
            n_gen += int(idx[-1]) + 1  # events after the last kept one were never "used"
        else:
            n_gen += len(batch)
        parts.append((res.objects[idx], res.weights[idx], res.charges[idx], res.faked[idx]))
        n_acc += len(idx)
        if n_acc == 0 and n_gen >= ZERO_ACCEPT_LIMIT:
            raise GenerationError(
                f"{spec.origin}: none of {n_gen} generated events passed the lepton filter (an e or mu "
                f"with pT > {sim.lepton_filter_pt:g} GeV); this process cannot make a sample at a usable "
                "rate. Change the process (decays to e/mu) in the card."
            )
        rate = (n_acc + 0.5) / (n_gen + 1.0)
        batch_n = int(np.clip(1.1 * (spec.n_events - n_acc) / rate, 20, 500))
    sigma, sigma_err = run.cross_section()
    objects, weights, charges, faked = (np.concatenate(a) for a in zip(*parts))
    stats = {
        "component": spec.component,
        "index": spec.index,
        "seed": spec.seed,
        "n_accepted": int(n_acc),
        "n_generated": int(n_gen),
        "n_faked": int(faked.sum()),
        "sigma_gen_pb": sigma,
        "sigma_err_pb": sigma_err,
        "pythia_errors": _merge_counts(run.problems, source.run.problems if source else {}),
        "pileup_minbias_generated": source.n_generated if source else 0,
        "pileup_overlaid": source.n_overlaid if source else 0,
        "wall_s": round(time.perf_counter() - t0, 3),
    }
    return ChunkResult(objects=objects, weights=weights, charges=charges, faked=faked, stats=stats)


def _merge_counts(*dicts: dict) -> dict:
    out: dict = {}
    for d in dicts:
        for k, v in d.items():
            out[k] = out.get(k, 0) + v
    return out


def _chunk_done(spec: ChunkSpec) -> dict | None:
    """The stats of a complete chunk file for this exact spec, or None."""
    import h5py

    if spec.path is None or not os.path.exists(spec.path):
        return None
    try:
        with h5py.File(spec.path, "r") as f:
            prov = json.loads(f.attrs["hepad_provenance"])
            if prov.get("chunk_key") == spec.key and f["Particles"].shape[0] == spec.n_events:
                return prov["chunk_stats"]
    except Exception:  # unreadable or foreign file: regenerate it
        return None
    return None


def execute_chunk(spec: ChunkSpec) -> dict:
    """Run a chunk unless its file is already complete; write it atomically. Returns its stats."""
    from ..io.hdf5 import write_hdf5

    done = _chunk_done(spec)
    if done is not None:
        log.info("chunk %s-%d: already complete, reused", spec.component, spec.index)
        return {**done, "reused": True}
    res = run_chunk(spec)
    events = EventSet(
        data=res.objects,
        weights=res.weights,
        process=np.full(len(res.weights), spec.component),
        provenance={"chunk_key": spec.key, "chunk_stats": res.stats},
    )
    write_hdf5(events, spec.path, compression=None)
    return res.stats


# --------------------------------------------------------------------------- planning
@dataclass
class Component:
    name: str
    origin: str
    card_lines: tuple[tuple[int, str], ...]
    n_events: int
    fake_model: dict | None


def resolve_components(process: str | None, n_events: int, card: str | os.PathLike | None,
                       fake_model: FakeModel | None = None) -> tuple[str, list[Component]]:
    """The process label and the components (one, or the four of ``sm-mix``) to generate."""
    fm = asdict(fake_model or FakeModel())
    if card is not None:
        if process in CATALOGUE or process == "sm-mix":
            raise GenerationError(
                f"got both the catalogue process {process!r} and --card {card}; pass one of them "
                "(or a new label such as 'my-signal' with --card)."
            )
        label = process or "custom"
        lines = tuple(_pythia.read_card(card))
        return label, [Component(label, str(card), lines, n_events, None)]
    if process is None:
        raise GenerationError("no process given: name one from the catalogue or pass a card (--card FILE.cmnd; card= in Python).")
    if process == "sm-mix":
        counts = split_counts(n_events, SM_MIX)
        comps = []
        for name, n in counts.items():
            if n > 0:
                p = CATALOGUE[name]
                comps.append(Component(name, f"{p.card_path} ({name})", tuple(_pythia.read_card(p.card_path)),
                                       n, fm if p.fake_model else None))
        return process, comps
    p = get_process(process)
    return process, [Component(p.name, f"{p.card_path} ({p.name})", tuple(_pythia.read_card(p.card_path)),
                               n_events, fm if p.fake_model else None)]


def plan_chunks(components: Sequence[Component], seed: int, chunk_size: int, simulation: dict,
                pileup: float, parts_dir: Path) -> list[ChunkSpec]:
    specs = []
    for comp in components:
        for index, start in enumerate(range(0, comp.n_events, chunk_size)):
            n = min(chunk_size, comp.n_events - start)
            specs.append(ChunkSpec(
                component=comp.name, origin=comp.origin, card_lines=comp.card_lines, index=index,
                n_events=n, seed=derive_seed(seed, comp.name, chunk_size, index), simulation=simulation,
                fake_model=comp.fake_model, pileup=float(pileup),
                path=str(parts_dir / f"{comp.name}-{index:05d}.h5"),
            ))
    return specs


def _run_inline(specs, report):
    for spec in specs:
        report(spec, execute_chunk(spec))


def _run_dask(specs, workers, scheduler, report):
    try:
        from distributed import Client, LocalCluster, as_completed
    except ImportError as exc:  # pragma: no cover - pinned dependency
        from ..errors import DependencyError

        raise DependencyError(f"Parallel generation needs Dask ({exc}): pip install 'dask[distributed]==2026.8.0'") from None
    cluster = None
    if scheduler:
        client = Client(scheduler)
    else:
        cluster = LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0",
            silence_logs=logging.ERROR,
        )
        client = Client(cluster)
    try:
        # Dask runs independent tasks roughly in submission order; a higher priority for earlier
        # files makes them complete (and become usable) one after another.
        futures = {
            client.submit(execute_chunk, s, pure=False, priority=len(specs) - i): s
            for i, s in enumerate(specs)
        }
        for fut in as_completed(futures):
            report(futures[fut], fut.result())
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


@dataclass
class Job:
    """One output file: its components and planned chunks."""

    label: str
    components: list
    output: Path
    seed: int
    chunk_size: int
    sim: SimulationConfig
    pileup: float
    card: str | None
    specs: list
    stats: list = field(default_factory=list)
    t0: float = field(default_factory=time.perf_counter)


def prepare_job(process, n_events, output, seed=0, pileup=DEFAULT_PILEUP, card=None, *,
                chunk_size=DEFAULT_CHUNK_SIZE, simulation=None, fake_model=None) -> Job:
    """Check the arguments and the card(s), and plan the chunks of one output file."""
    if int(n_events) < 1:
        raise ConfigError(f"n_events must be >= 1, got {n_events}.")
    if int(chunk_size) < 1:
        raise ConfigError(f"chunk_size must be >= 1, got {chunk_size}.")
    if int(seed) < 0:
        raise ConfigError(f"seed must be >= 0, got {seed}.")
    if pileup < 0:
        raise ConfigError(f"pileup (mean number of interactions) must be >= 0, got {pileup}.")
    sim = simulation if isinstance(simulation, SimulationConfig) else SimulationConfig.from_dict(simulation)
    output = Path(output)
    if output.suffix.lower() not in (".h5", ".hdf5"):
        raise ConfigError(f"{output}: generated events are written as HDF5; use a .h5 file name.")
    label, components = resolve_components(process, int(n_events), card, fake_model)
    for comp in components:
        _pythia.check_card_lines(comp.card_lines, comp.origin)
    parts_dir = output.parent / f".{output.name}.parts"
    specs = plan_chunks(components, int(seed), int(chunk_size), sim.to_dict(), float(pileup), parts_dir)
    return Job(label, components, output, int(seed), int(chunk_size), sim, float(pileup),
               None if card is None else str(card), specs)


def run_jobs(jobs: Sequence[Job], workers: int | None = None, scheduler: str | None = None,
             progress: ProgressCallback | None = None) -> list[Path]:
    """Run the chunks of all jobs (inline or on one Dask cluster); merge each file when complete."""
    from ..io.hdf5 import write_hdf5

    total = sum(s.n_events for j in jobs for s in j.specs)
    done = {"n": 0}
    owner = {id(s): j for j in jobs for s in j.specs}
    remaining = {id(j): len(j.specs) for j in jobs}

    def report(spec: ChunkSpec, st: dict) -> None:
        job = owner[id(spec)]
        job.stats.append(st)
        done["n"] += spec.n_events
        log.info("%s chunk %d: %d of %d generated events accepted", spec.component, spec.index,
                 st["n_accepted"], st["n_generated"])
        remaining[id(job)] -= 1
        if remaining[id(job)] == 0:
            write_hdf5(_merge(job), job.output)
            shutil.rmtree(job.output.parent / f".{job.output.name}.parts", ignore_errors=True)
        if progress is not None:
            progress(done["n"], total)

    # One run per output at a time: a second run into the same file would mix its chunks with
    # ours (and delete them at its merge). The lock is released by the kernel if we die.
    with contextlib.ExitStack() as locks:
        for job in jobs:
            job.output.parent.mkdir(parents=True, exist_ok=True)
            locks.enter_context(output_lock(job.output))
        _run_locked(jobs, workers, scheduler, progress, report, total)
    return [j.output for j in jobs]


def _run_locked(jobs, workers, scheduler, progress, report, total) -> None:
    if progress is not None:
        progress(0, total)
    pending = []
    for job in jobs:
        (job.output.parent / f".{job.output.name}.parts").mkdir(parents=True, exist_ok=True)
        # Within a file, big chunks first keeps its tail short.
        for spec in sorted(job.specs, key=lambda s: -s.n_events):
            st = _chunk_done(spec)
            if st is None:
                pending.append(spec)
            else:
                report(spec, {**st, "reused": True})
    try:
        if scheduler == "inline" or workers in (0, 1) or (scheduler is None and len(pending) <= 1):
            _run_inline(pending, report)
        elif pending:
            n_workers = workers or min(os.cpu_count() or 1, len(pending))
            _run_dask(pending, n_workers, scheduler, report)
    except BaseException:
        # A failed run leaves no empty parts folder behind (finished chunks stay, for resuming).
        for job in jobs:
            with contextlib.suppress(OSError):
                (job.output.parent / f".{job.output.name}.parts").rmdir()
        raise


def _combine_sigma(stats: list[dict]) -> dict:
    n = np.array([s["n_generated"] for s in stats], dtype=float)
    sig = np.array([s["sigma_gen_pb"] for s in stats])
    err = np.array([s["sigma_err_pb"] for s in stats])
    w = n / n.sum()
    sigma = float((w * sig).sum())
    n_acc = int(sum(s["n_accepted"] for s in stats))
    n_gen = int(n.sum())
    errors: dict[str, int] = {}
    for s in stats:
        for msg, count in s.get("pythia_errors", {}).items():
            errors[msg] = errors.get(msg, 0) + count
    return {
        "n_accepted": n_acc,
        "n_generated": n_gen,
        "pythia_errors": errors,
        "n_faked": int(sum(s["n_faked"] for s in stats)),
        "filter_efficiency": n_acc / n_gen if n_gen else 0.0,
        "sigma_gen_pb": sigma,
        "sigma_err_pb": float(np.sqrt(((w * err) ** 2).sum())),
        "sigma_accepted_pb": sigma * n_acc / n_gen if n_gen else 0.0,
        "n_chunks": len(stats),
        "chunk_seeds": [s["seed"] for s in sorted(stats, key=lambda s: s["index"])],
    }


def generate(
    process: str | None,
    n_events: int,
    output: str | os.PathLike[str],
    seed: int = 0,
    workers: int | None = None,
    scheduler: str | None = None,
    pileup: float = DEFAULT_PILEUP,
    card: str | os.PathLike[str] | None = None,
    progress: ProgressCallback | None = None,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    simulation: SimulationConfig | dict | None = None,
    fake_model: FakeModel | None = None,
) -> Path:
    """Generate ``n_events`` accepted events of a process and write them to an HDF5 file.

    Parameters
    ----------
    process : str or None
        A catalogue name (see :data:`hepad.generate.PROCESS_NAMES`), ``"sm-mix"``, or, with
        ``card``, ``None``/``"custom"``/a new label for the user's process.
    n_events : int
        Number of events written (events passing the lepton filter).
    output : path
        The HDF5 file to write (ADC2021 layout, ``process`` and ``weights`` datasets, provenance).
    seed : int
        Base seed; chunk ``i`` of component ``c`` uses ``derive_seed(seed, c, chunk_size, i)``.
    workers : int, optional
        Dask worker processes. ``None``: one per core (at most one per chunk); ``0`` or ``1``:
        run in this process, with the same chunk seeds (identical output).
    scheduler : str, optional
        Address of an existing Dask scheduler (workers must see ``output``'s folder), or
        ``"inline"`` to run in this process.
    pileup : float
        Mean number of minimum-bias events overlaid per event (default 20, as ADC2021; 0: none).
        Fresh minimum-bias events are generated, each overlaid at most
        ``simulation.pileup_max_reuse`` times.
    card : path, optional
        A Pythia settings file with the process lines of a user model.
    progress : callable, optional
        Called as ``progress(events_done, events_total)`` when chunks finish.
    chunk_size : int
        Accepted events per chunk (output is deterministic for a given seed and chunk size).
    simulation : SimulationConfig or dict, optional
        Detector simulation settings (defaults: ADC2021-like, see ``docs/generation.md``).
    fake_model : FakeModel, optional
        The jet -> lepton fake model for QCD.

    Returns
    -------
    Path
        ``output``. Finished chunks live in ``.<output>.parts/`` until the merge, so an
        interrupted run resumes where it stopped.
    """
    job = prepare_job(process, n_events, output, seed, pileup, card, chunk_size=chunk_size,
                      simulation=simulation, fake_model=fake_model)
    return run_jobs([job], workers=workers, scheduler=scheduler, progress=progress)[0]


def _read_chunk(spec: ChunkSpec) -> EventSet:
    """A chunk file, checked to be this run's chunk (its key covers seed, process, card, size)."""
    from ..io.hdf5 import read_hdf5

    events = read_hdf5(spec.path)
    key = events.provenance.get("chunk_key")
    if key != spec.key or len(events) != spec.n_events:
        raise GenerationError(
            f"{spec.path}: this chunk belongs to another generation run (chunk key {key!r}, "
            f"{len(events)} events; expected {spec.key!r}, {spec.n_events}); delete "
            f"{Path(spec.path).parent} and run again."
        )
    return events


def _merge(job: Job) -> EventSet:
    from ..io.hdf5 import read_hdf5

    specs, stats, label, components = job.specs, job.stats, job.label, job.components
    seed, chunk_size, sim, pileup, card = job.seed, job.chunk_size, job.sim, job.pileup, job.card
    wall = time.perf_counter() - job.t0

    sets = [_read_chunk(s) for s in specs]
    merged = EventSet.concat(sets)
    if len(components) > 1:
        # Shuffle the mixture so any prefix of the file has the mix proportions.
        perm = np.random.default_rng(derive_seed(seed, "mix", chunk_size)).permutation(len(merged))
        merged = merged[perm]
    by_comp: dict[str, list] = {}
    for st in stats:
        by_comp.setdefault(st["component"], []).append(st)
    comp_prov = {}
    for comp in components:
        info = _combine_sigma(by_comp[comp.name])
        info["card_lines"] = [line for _, line in comp.card_lines]
        info["card"] = comp.origin
        if comp.fake_model:
            fm = comp.fake_model
            info["sigma_accepted_pb"] = (
                info["sigma_gen_pb"] * fm["probability"] * fm["n_jets_cap"] * info["filter_efficiency"]
            )
            info["fake_model"] = {
                **fm,
                "description": (
                    "Jet -> lepton fakes: in events without a real lepton above the filter pT, one "
                    "eligible jet is promoted to an e/mu (pT x response). Events are kept with "
                    "probability min(1, n_eligible/n_jets_cap) and weighted max(1, n_eligible/n_jets_cap); "
                    "the sample is conditional on one fake. sigma_accepted_pb includes the fake "
                    "probability: sigma_gen * probability * n_jets_cap * filter_efficiency."
                ),
            }
        comp_prov[comp.name] = info
    provenance = {
        "generator": "hepad.generate",
        "process": label,
        "components": comp_prov,
        "mix_fractions": SM_MIX if label == "sm-mix" else None,
        "card": str(card) if card is not None else None,
        "pythia_version": _pythia.pythia_version(),
        "pythia_base_settings": list(_pythia.BASE_SETTINGS),
        "hepad_version": __version__,
        "seed": int(seed),
        "chunk_size": int(chunk_size),
        "seed_rule": "sha256(f'{seed}:{component}:{chunk_size}:{index}') % 900000000 + 1",
        "n_events": len(merged),
        "events_generated": int(sum(c["n_generated"] for c in comp_prov.values())),
        "simulation": sim.to_dict(),
        "simulation_version": SIMULATION_VERSION,
        "detector": detector_table(),
        "pileup": {"mu": float(pileup), "process": "SoftQCD:nonDiffractive", "max_reuse": int(sim.pileup_max_reuse),
                   "minbias_generated": int(sum(st.get("pileup_minbias_generated", 0) for st in stats)),
                   "overlaid": int(sum(st.get("pileup_overlaid", 0) for st in stats)),
                   "charged_hadron_subtraction": True, "rho_area_correction": True}
        if pileup > 0 else None,
        "pythia_messages": _merge_counts(*(c["pythia_errors"] for c in comp_prov.values())),
        "wall_s": round(wall, 2),
    }
    merged.provenance = provenance
    kind = "sm" if label == "sm-mix" else (CATALOGUE[label].kind if label in CATALOGUE else None)
    # Truth labels for catalogue processes (0 = SM background, 1 = signal); a user card's role is
    # the user's call, so it carries none.
    merged.labels = None if kind is None else np.full(len(merged), 0 if kind == "sm" else 1, dtype=np.int8)
    return merged
