"""Benchmark every registered detector on the benchmark dataset, against PyOD and the seeds.

Trains each detector (registry keys and presets) on ``sm_train.h5`` (validating on
``sm_val.h5``), scores ``sm_test.h5`` and every signal file, and prints per signal the ROC AUC,
plus the TPR at FPR 1e-3 (flagged '~' when the test background is too small to resolve it) and
fit/score times. Signals other than the four built-in ones (e.g. user-card signals
``zprime-ll.h5``, ``wprime-lnu.h5``) are "held out": the default detector is chosen on them.
Also prints the training throughput of the default autoencoder and PyOD references
(IForest, ECOD, COPOD, AutoEncoder) trained on the same (standard-scaled) events.

    python benchmarks/detectors.py                      # /work/data/small
    python benchmarks/detectors.py --data-dir DIR --threads 2
    python benchmarks/detectors.py --sweep              # + the candidate default AEs
    python benchmarks/detectors.py --quick              # tiny data (or toy events), 3 epochs
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

import hepad
from hepad.detectors.base import DEFAULT_DETECTOR, available_detectors, get_detector_class, make_detector
from hepad.metrics import roc_auc, tpr_at_fpr

BUILTIN_SIGNALS = ("ato4l", "lq-btau", "h0-tautau", "hplus-taunu")
BACKGROUND = ("sm_train", "sm_val", "sm_test")

#: Candidate default autoencoders (--sweep): compact dense AEs, decided on held-out signals.
SWEEP: dict[str, dict] = {}
for _arch, _hidden, _latent in (("57-32-16", [32], 16), ("57-32-8", [32], 8), ("57-64-32-8", [64, 32], 8)):
    for _prep, _pp in (("", {}), (",log_pt", {"log_pt": True}), (",log_pt,mask", {"log_pt": True, "mask_padding": True})):
        for _batch in (1024, 256):
            SWEEP[f"ae[{_arch}{_prep},b{_batch}]"] = dict(
                hidden_layers=_hidden, latent_dim=_latent, preprocessing=_pp, batch_size=_batch)
SWEEP["vae[recon,log_pt,b256]"] = dict(preprocessing={"log_pt": True}, batch_size=256)
SWEEP["vae[mu2,log_pt,b256]"] = dict(preprocessing={"log_pt": True}, batch_size=256, score="mu2")
SWEEP["deep-svdd[log_pt,b256]"] = dict(preprocessing={"log_pt": True}, batch_size=256)


def load(data_dir: Path | None, quick: bool) -> tuple[dict[str, hepad.EventSet], str]:
    """Background splits and signals as EventSets, and a description.

    EventSets (not bare arrays) so detectors know the feature names: log(1+pT) and padding
    masks need to know which columns are pT.
    """
    if data_dir is not None and (data_dir / "sm_train.h5").is_file():
        out = {}
        for path in sorted(data_dir.glob("*.h5")):
            out[path.stem] = hepad.read_events(path)
        missing = [n for n in BACKGROUND if n not in out]
        if missing:
            sys.exit(f"{data_dir}: missing {', '.join(m + '.h5' for m in missing)}")
        return out, str(data_dir)
    if not quick:
        sys.exit(f"No benchmark dataset in {data_dir}: build it with `hepad dataset build --size small --dir {data_dir}` "
                 "or run with --quick (toy events).")
    from hepad._toy import toy_events

    out = {"sm_train": toy_events(3000, "background", 1),
           "sm_val": toy_events(1000, "background", 2),
           "sm_test": toy_events(2000, "background", 3),
           "toy-signal": toy_events(500, "signal", 4)}
    return out, "toy events (hepad._toy)"


def evaluate(scores_bkg: np.ndarray, scores_sig: np.ndarray) -> tuple[float, float, bool]:
    y = np.r_[np.zeros(len(scores_bkg)), np.ones(len(scores_sig))]
    s = np.r_[scores_bkg, scores_sig].astype(np.float64)
    auc = roc_auc(y, s)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        wp = tpr_at_fpr(y, s, 1e-3)
    return auc, wp.tpr, wp.resolved


def run_detector(label: str, make, data: dict[str, hepad.EventSet], signals: list[str]) -> dict:
    det = make()
    t0 = time.perf_counter()
    det.fit(data["sm_train"], X_val=data["sm_val"])
    fit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    s_bkg = det.score_samples(data["sm_test"])
    score_s = time.perf_counter() - t0
    row = {"label": label, "fit_s": fit_s, "score_us": 1e6 * score_s / len(data["sm_test"]), "auc": {}, "tpr3": {}}
    resolved = True
    for sig in signals:
        auc, tpr, res = evaluate(s_bkg, det.score_samples(data[sig]))
        row["auc"][sig], row["tpr3"][sig] = auc, tpr
        resolved &= res
    row["resolved"] = resolved
    hist = getattr(det, "history_", None)
    if hist and hist.get("epoch"):
        row["epochs"] = len(hist["epoch"])
    return row


def measure_throughput(X: hepad.EventSet, threads: int, n_min: int = 20_000) -> dict[int, float]:
    """Training events/s of the default detector: 3 fixed epochs (best epoch counts).

    The training events are repeated up to ``n_min`` so that per-epoch overheads do not
    dominate on tiny datasets.
    """
    if len(X) < n_min:
        X = hepad.EventSet.concat([X] * -(-n_min // len(X)))
    out = {}
    for nt in sorted({1, 2, threads}):
        det = make_detector(DEFAULT_DETECTOR)
        params = {"epochs": 3, "patience": None, "lr_patience": None, "validation_fraction": 0.0, "n_threads": nt}
        det.set_params(**{k: v for k, v in params.items() if k in det._param_names()})
        det.fit(X)
        out[nt] = len(X) / min(det.history_["epoch_time_s"])
    return out


class _PyOD:
    """A PyOD model on standard-scaled features, shaped like a hepad detector for the table."""

    def __init__(self, model) -> None:
        self.model = model

    def fit(self, X, X_val=None):
        X = X.features
        self.mean_, self.std_ = X.mean(0), X.std(0) + 1e-6
        self.model.fit((X - self.mean_) / self.std_)
        return self

    def score_samples(self, X):
        X = X.features
        return self.model.decision_function((X - self.mean_) / self.std_)


def pyod_references(epochs: int) -> dict:
    out = {}
    try:
        from pyod.models.auto_encoder import AutoEncoder
        from pyod.models.copod import COPOD
        from pyod.models.ecod import ECOD
        from pyod.models.iforest import IForest
    except ImportError as exc:  # pragma: no cover - pyod is a dev dependency
        print(f"(PyOD not available: {exc})")
        return out
    out["pyod:IForest"] = lambda: _PyOD(IForest(random_state=0, n_jobs=1))
    out["pyod:ECOD"] = lambda: _PyOD(ECOD())
    out["pyod:COPOD"] = lambda: _PyOD(COPOD())
    out["pyod:AutoEncoder"] = lambda: _PyOD(AutoEncoder(epoch_num=epochs, batch_size=256, verbose=0,
                                                       hidden_neuron_list=[32, 16], random_state=0))
    return out


def fmt_table(rows: list[dict], signals: list[str], held_out: list[str]) -> str:
    short = {s: s[:11] for s in signals}
    head = f"{'detector':<26}{'fit s':>8}{'µs/evt':>8}" + "".join(f"{short[s]:>12}" for s in signals)
    head += f"{'mean AUC':>10}" + (f"{'held-out':>10}" if held_out else "") + f"{'TPR@1e-3':>10}"
    lines = [head, "-" * len(head)]
    for r in rows:
        mean_auc = np.mean([r["auc"][s] for s in signals])
        line = f"{r['label']:<26}{r['fit_s']:>8.1f}{r['score_us']:>8.2f}"
        line += "".join(f"{r['auc'][s]:>12.3f}" for s in signals)
        line += f"{mean_auc:>10.3f}"
        if held_out:
            line += f"{np.mean([r['auc'][s] for s in held_out]):>10.3f}"
        tpr = np.mean([r["tpr3"][s] for s in signals])
        line += f"{tpr:>9.3f}{'' if r['resolved'] else '~'}"
        lines.append(line)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, default=None, help="dataset folder (default: the small dataset cache, see hepad dataset build)")
    ap.add_argument("--quick", action="store_true", help="smoke run: tiny data (or toy events), 3 epochs")
    ap.add_argument("--detectors", default=None, help="comma-separated subset (default: all registered)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads of every detector (default 1, the deep detectors' default)")
    ap.add_argument("--epochs", type=int, default=None, help="override the epochs of deep detectors")
    ap.add_argument("--sweep", action="store_true", help="also train the candidate default AEs")
    ap.add_argument("--no-pyod", action="store_true")
    ap.add_argument("--extra-signals", type=Path, nargs="*", default=[],
                    help="more held-out signal files (HDF5) scored against the same test background")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("hepad.metrics").setLevel(logging.ERROR)  # the '~' flag says it once
    torch.set_num_threads(args.threads)

    from hepad.generate import default_dataset_dir

    data_dir = args.data_dir or default_dataset_dir("tiny" if args.quick else "small")
    if args.quick and not (data_dir / "sm_train.h5").is_file():
        data_dir = data_dir.parent / "tiny"
    data, source = load(data_dir, args.quick)
    for path in args.extra_signals:
        data[path.stem] = hepad.read_events(path)
    epochs = 3 if args.quick and args.epochs is None else args.epochs
    signals = [s for s in data if s not in BACKGROUND]
    held_out = [s for s in signals if s not in BUILTIN_SIGNALS and s != "toy-signal"]
    print(f"data: {source}; train {len(data['sm_train'])}, val {len(data['sm_val'])}, test {len(data['sm_test'])} "
          f"background; signals: " + ", ".join(f"{s} ({len(data[s])})" for s in signals))
    print(f"held-out signals: {', '.join(held_out) or 'none present'}; torch threads {args.threads}; "
          f"machine shared with other jobs, so times are indicative.\n")

    names = list(available_detectors()) if args.detectors is None else args.detectors.split(",")
    todo: dict[str, object] = {}
    for name in names:
        cls = get_detector_class(name)
        if getattr(cls, "supervised", False):
            continue  # needs signal labels; not an anomaly detector
        params = {}
        if epochs is not None and "epochs" in cls._param_names():
            params["epochs"] = epochs
        if "n_threads" in cls._param_names():
            params["n_threads"] = args.threads
        todo[name] = (lambda name=name, params=params: make_detector(name, **params))
    if args.sweep:
        for label, params in SWEEP.items():
            base = label.split("[")[0]
            p = dict(params, n_threads=args.threads, **({"epochs": epochs} if epochs else {}))
            todo[label] = (lambda base=base, p=p: make_detector(base, **p))
    if not args.no_pyod:
        todo.update(pyod_references(epochs or 20))

    # Warm torch up (lazy initialisation, kernel selection) so the first detector is not charged for it.
    make_detector("ae", epochs=1, validation_fraction=0.0).fit(data["sm_train"][:512])

    rows = []
    for label, make in todo.items():
        try:
            row = run_detector(label, make, data, signals)
        except Exception as exc:  # noqa: BLE001 - report and go on with the others
            print(f"{label}: FAILED: {type(exc).__name__}: {exc}")
            continue
        rows.append(row)
        print(f"  {label}: fit {row['fit_s']:.1f} s", flush=True)
    print()
    print(fmt_table(rows, signals, held_out))
    print("(AUC per signal on sm_test; '~': TPR at FPR 1e-3 not resolved by the test background size)")

    throughput = measure_throughput(data["sm_train"], args.threads)
    default = next((r for r in rows if r["label"] == DEFAULT_DETECTOR), None)
    if default is not None:
        print(f"\ndefault detector {DEFAULT_DETECTOR!r}: ", end="")
        if "ato4l" in default["auc"]:
            print(f"AUC(A->4l) = {default['auc']['ato4l']:.3f} (target >= 0.9)", end="; ")
        print(f"{default.get('epochs', '-')} epochs trained (early stopping on), fit {default['fit_s']:.1f} s")
    batch = make_detector(DEFAULT_DETECTOR).get_params().get("batch_size")
    print(f"training throughput of the default detector (3 epochs, no validation, batch {batch}): "
          + ", ".join(f"{evt:,.0f} events/s on {nt} thread{'s' if nt > 1 else ''}" for nt, evt in throughput.items()))
    if default is not None:
        for r in rows:
            if r["label"].startswith("pyod:AutoEncoder") or r["label"] in ("ae-keras-seed", "ae-torch-seed", "ae-adc-trivial"):
                ratio = r["fit_s"] / default["fit_s"]
                print(f"  {r['label']}: fit time {r['fit_s']:.1f} s = {ratio:.1f}x the default's; "
                      f"mean AUC {np.mean(list(r['auc'].values())):.3f} vs {np.mean(list(default['auc'].values())):.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
