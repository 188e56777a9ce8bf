"""Training loops as plain functions: no estimator, no command line in here.

The one entry point is :func:`fit_network`. It trains any ``nn.Module`` on batches produced by a
callable, so an in-memory array, a streaming HDF5 reader or a Dask partition iterator plug in
the same way::

    from hepad.training import fit_network, tensor_batches

    batches = tensor_batches(torch.from_numpy(Z), batch_size=1024, seed=0)
    history = fit_network(
        net,
        loss_fn=lambda net, xb: ((net(xb) - xb) ** 2).mean(dim=1),   # per-event losses
        train_batches=batches,
        epochs=50, lr=1e-3, patience=5, checkpoint_dir="ckpt/", resume=True,
    )

What it does each epoch: Adam steps over ``train_batches(epoch)``, the mean loss on
``val_batches(epoch)`` (or on the training batches without validation), learning-rate
reduction on a plateau (``ReduceLROnPlateau``), early stopping with patience (the best weights
are restored at the end), a progress callback, and, with ``checkpoint_dir``, an atomic
checkpoint (``checkpoint.safetensors``: model, optimizer, scheduler, early-stopping state, RNG
states, epoch, history) and ``history.json``. ``resume=True`` continues from the last checkpoint and
gives the same weights as an uninterrupted run (same device and thread count).

Reproducibility: the global torch RNG (used by dropout and VAE sampling, which have no
generator argument) is seeded with ``seed`` inside :func:`torch.random.fork_rng`, so the
caller's global RNG state is left untouched. Batch order must come from ``train_batches(epoch)``
alone (as :func:`tensor_batches` does with a local ``torch.Generator`` per epoch), so a resumed
run sees the same batches as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ._atomic import atomic_path
from .errors import ConfigError, HepadError

log = logging.getLogger(__name__)

__all__ = [
    "TrainingError",
    "CHECKPOINT_NAME",
    "HISTORY_NAME",
    "resolve_device",
    "tensor_batches",
    "ArraySource",
    "fit_network",
    "load_checkpoint",
]

CHECKPOINT_NAME = "checkpoint.safetensors"
HISTORY_NAME = "history.json"
_CHECKPOINT_FORMAT = "hepad-checkpoint/2"
#: the pickle checkpoint of hepad <= 0.x; never read (a pickle can run code), only recognised
_LEGACY_CHECKPOINT = "checkpoint.pt"

Batch = Any  # a Tensor, or a tuple/list of Tensors handed to loss_fn as is
LossFn = Callable[[nn.Module, Batch], torch.Tensor]
ProgressFn = Callable[[int, int, dict[str, Any]], None]


#: ``epochs="auto"`` (the deep detectors' default): at most this many epochs ...
AUTO_MAX_EPOCHS = 100
#: ... and at most this many training events passed in all, but never fewer than AUTO_MIN_EPOCHS.
AUTO_EPOCH_EVENTS = 20_000_000
AUTO_MIN_EPOCHS = 3


def auto_epochs(n_train: int) -> int:
    """The number of epochs ``epochs="auto"`` trains on ``n_train`` events (early stopping may stop sooner).

    100 up to 200,000 events; above, as many as pass 20 M events in all (20 at 1 M), never
    fewer than 3: as many optimiser steps as 100 epochs over 200,000 events, in fewer passes
    over a larger sample (100 passes over a million events would take a flow 40 minutes on
    one core).
    """
    n = max(1, int(n_train))
    return max(AUTO_MIN_EPOCHS, min(AUTO_MAX_EPOCHS, -(-AUTO_EPOCH_EVENTS // n)))


class TrainingError(HepadError):
    """Training could not go on (the loss became NaN, no batches, a bad checkpoint)."""


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` gives the first CUDA GPU when present, else the CPU."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={device!r} but no CUDA GPU is visible to torch; use device='auto' or 'cpu'.")
    try:
        return torch.device(device)
    except RuntimeError:
        raise ConfigError(f"Unknown device {device!r}; use 'auto', 'cpu' or 'cuda'.") from None


def tensor_batches(
    *tensors: torch.Tensor,
    batch_size: int = 1024,
    shuffle: bool = True,
    seed: int = 0,
    drop_last: bool = False,
) -> Callable[[int], Iterator[Batch]]:
    """A ``batches(epoch)`` callable over in-memory tensors (the same first dimension).

    Each epoch shuffles with its own ``torch.Generator`` seeded from ``(seed, epoch)``, so the
    order depends on the epoch number only (what exact resume needs). Yields a Tensor when
    given one tensor, else a tuple.
    """
    if not tensors:
        raise ConfigError("tensor_batches needs at least one tensor.")
    n = tensors[0].shape[0]
    if any(t.shape[0] != n for t in tensors):
        raise ConfigError("tensor_batches: every tensor needs the same number of rows.")
    if batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size}.")

    def batches(epoch: int) -> Iterator[Batch]:
        if shuffle:
            g = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(epoch))
            order = torch.randperm(n, generator=g)
        else:
            order = None
        stop = n - (n % batch_size) if drop_last and n > batch_size else n
        for start in range(0, stop, batch_size):
            if order is None:
                parts = tuple(t[start : start + batch_size] for t in tensors)
            else:
                idx = order[start : start + batch_size]
                parts = tuple(t[idx] for t in tensors)
            yield parts[0] if len(parts) == 1 else parts

    return batches


class ArraySource:
    """In-memory events as a batch source for the deep detectors' one training path.

    The streaming counterpart is :class:`hepad.data.FileSource`; both give ``feature_names``,
    ``n_events``, ``sample()``, ``batches(prepare, ...)``, ``chunks()`` and ``signature()``.
    """

    def __init__(self, X: Any, feature_names: list[str] | None = None) -> None:
        import numpy as np

        self.X = np.ascontiguousarray(X, dtype=np.float32)
        self.n_events = int(self.X.shape[0])
        self.feature_names = list(feature_names) if feature_names is not None else [f"f{i}" for i in range(self.X.shape[1])]

    def sample(self) -> Any:
        """The events the preprocessing is fitted on: all of them."""
        return self.X

    def batches(self, prepare: Callable[[Any], tuple[torch.Tensor, ...]], *, batch_size: int, shuffle: bool,
                seed: int = 0) -> Callable[[int], Iterator[Batch]]:
        """``batches(epoch)`` over ``prepare(X)``; a last batch of one event is dropped (BatchNorm)."""
        n, bs = self.n_events, int(batch_size)
        drop_last = shuffle and n % bs == 1 and n > bs
        return tensor_batches(*prepare(self.X), batch_size=bs, shuffle=shuffle, seed=seed, drop_last=drop_last)

    def chunks(self) -> Iterator[Any]:
        """The events in one piece (scoring chunks itself)."""
        yield self.X

    def signature(self) -> dict[str, Any]:
        return {}


def _to_device(batch: Batch, device: torch.device) -> Batch:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (tuple, list)):
        return type(batch)(_to_device(b, device) for b in batch)
    raise TrainingError(f"A batch must be a Tensor or a tuple of Tensors, got {type(batch).__name__}.")


def _batch_len(batch: Batch) -> int:
    first = batch if isinstance(batch, torch.Tensor) else batch[0]
    return int(first.shape[0])


def _state_copy(net: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in net.state_dict().items()}


# ---------------------------------------------------------------------- checkpoints
# A checkpoint is one safetensors file: every tensor of the training state (weights, optimizer
# moments, RNG states) as a named tensor, and the rest of the state (epochs, history, learning
# rates, early stopping) as JSON in the safetensors header metadata (key "hepad"), with tensors
# replaced by {"__tensor__": name}. Reading it parses JSON and raw numbers only: no pickle, no
# torch.load, so a hostile checkpoint cannot run code. One file keeps the atomic rename atomic.
_TAGS = ("__tensor__", "__tuple__", "__intkeys__")


def _encode_state(obj: Any, tensors: dict[str, torch.Tensor], path: str) -> Any:
    if isinstance(obj, torch.Tensor):
        name = f"t{len(tensors)}:{path}"
        tensors[name] = obj.detach().to("cpu").contiguous().clone()
        return {"__tensor__": name}
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj):
            if any(k in _TAGS for k in obj):
                raise TrainingError(f"cannot checkpoint a state with a reserved key at {path}.")
            return {k: _encode_state(v, tensors, f"{path}.{k}") for k, v in obj.items()}
        if all(isinstance(k, int) and not isinstance(k, bool) for k in obj):
            return {"__intkeys__": [[k, _encode_state(v, tensors, f"{path}.{k}")] for k, v in obj.items()]}
        raise TrainingError(f"cannot checkpoint a dict with mixed key types at {path}.")
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode_state(v, tensors, f"{path}.{i}") for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_encode_state(v, tensors, f"{path}.{i}") for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TrainingError(f"cannot checkpoint a {type(obj).__name__} at {path}; only tensors and JSON values.")


def _decode_state(obj: Any, tensors: dict[str, torch.Tensor], used: set[str], where: str) -> Any:
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            name = obj["__tensor__"]
            if len(obj) != 1 or not isinstance(name, str) or name not in tensors or name in used:
                raise TrainingError(f"{where}: a tensor reference {name!r} is missing or repeated; delete it to start afresh.")
            used.add(name)
            return tensors[name]
        if "__tuple__" in obj:
            if len(obj) != 1 or not isinstance(obj["__tuple__"], list):
                raise TrainingError(f"{where}: malformed tuple entry; delete it to start afresh.")
            return tuple(_decode_state(v, tensors, used, where) for v in obj["__tuple__"])
        if "__intkeys__" in obj:
            items = obj["__intkeys__"]
            if len(obj) != 1 or not isinstance(items, list) or not all(
                isinstance(i, list) and len(i) == 2 and isinstance(i[0], int) and not isinstance(i[0], bool) for i in items
            ):
                raise TrainingError(f"{where}: malformed integer-keyed entry; delete it to start afresh.")
            return {k: _decode_state(v, tensors, used, where) for k, v in items}
        return {k: _decode_state(v, tensors, used, where) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_decode_state(v, tensors, used, where) for v in obj]
    return obj


def _write_checkpoint_file(path: Path, state: dict[str, Any]) -> None:
    from safetensors.torch import save_file

    tensors: dict[str, torch.Tensor] = {}
    doc = _encode_state(state, tensors, "state")
    # Non-finite floats (best loss before the first epoch, the scheduler's "best") are legal
    # here: this JSON is read only by load_checkpoint, with Python's json.
    meta = {"format": _CHECKPOINT_FORMAT, "hepad": json.dumps(doc)}
    with atomic_path(path, suffix=".safetensors.tmp") as tmp:
        save_file(tensors, str(tmp), metadata=meta)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`fit_network` (safetensors + JSON; no pickle, no code runs).

    Raises
    ------
    TrainingError
        The file is not a hepad checkpoint, is damaged, or is a pickle checkpoint of an older
        hepad (``checkpoint.pt``, never unpickled).
    """
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if path.name.endswith(".pt") or path.name.endswith(".pth"):
        raise TrainingError(
            f"{path}: a pickle checkpoint; hepad does not unpickle files (they can run code). "
            "Delete it and train again (new checkpoints are checkpoint.safetensors)."
        )
    try:
        tensors: dict[str, torch.Tensor] = {}
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            if meta.get("format") != _CHECKPOINT_FORMAT:
                raise TrainingError(
                    f"{path}: not a hepad checkpoint (format {_CHECKPOINT_FORMAT} expected). Delete it to start afresh."
                )
            for name in f.keys():
                tensors[name] = f.get_tensor(name)
        doc = json.loads(meta.get("hepad", ""))
    except TrainingError:
        raise
    except (SafetensorError, OSError, ValueError, RuntimeError, TypeError) as exc:
        raise TrainingError(
            f"{path}: not a readable hepad checkpoint ({type(exc).__name__}: {exc}). Delete it to start afresh."
        ) from None
    used: set[str] = set()
    ckpt = _decode_state(doc, tensors, used, str(path))
    if not isinstance(ckpt, dict) or set(tensors) - used:
        raise TrainingError(f"{path}: not a hepad checkpoint (unexpected structure). Delete it to start afresh.")
    ckpt["format"] = _CHECKPOINT_FORMAT
    return ckpt


def _like(ref: Any, got: Any, where: str) -> str | None:
    """Why ``got`` does not have the structure and types of ``ref`` (None when it does)."""
    if isinstance(ref, torch.Tensor):
        if not isinstance(got, torch.Tensor) or got.shape != ref.shape or got.dtype != ref.dtype:
            what = f"{tuple(got.shape)} {got.dtype}" if isinstance(got, torch.Tensor) else type(got).__name__
            return f"{where} is {what}, this run needs {tuple(ref.shape)} {ref.dtype}"
        return None
    if isinstance(ref, bool):
        return None if isinstance(got, bool) else f"{where} is not a boolean"
    if isinstance(ref, (int, float)):
        ok = isinstance(got, (int, float)) and not isinstance(got, bool) and not (isinstance(got, float) and math.isnan(got))
        return None if ok else f"{where}={got!r} is not a number"
    if isinstance(ref, str):
        return None if got == ref else f"{where}={got!r} differs from this run's {ref!r}"
    if ref is None:
        ok = got is None or isinstance(got, (bool, int, float))
        return None if ok else f"{where} has an unexpected {type(got).__name__}"
    if isinstance(ref, (list, tuple)):
        if not isinstance(got, (list, tuple)) or len(got) != len(ref):
            return f"{where} is not a list of {len(ref)}"
        for i, (r, g) in enumerate(zip(ref, got)):
            why = _like(r, g, f"{where}[{i}]")
            if why:
                return why
        return None
    if isinstance(ref, dict):
        if not isinstance(got, dict) or set(got) != set(ref):
            return f"{where} does not hold the entries this run needs"
        for k in ref:
            why = _like(ref[k], got[k], f"{where}.{k}")
            if why:
                return why
        return None
    return None


def _fits_this_run(ckpt: dict[str, Any], path: Path, net: nn.Module, optimizer: Any, scheduler: Any) -> None:
    """The checkpoint's tensors, optimizer and scheduler state have this run's structure and
    types, so restoring cannot fail half-way or later inside a training step."""
    def refuse(why: str) -> TrainingError:
        return TrainingError(f"{path} does not fit this network ({why}); delete it to start afresh.")

    model_ref = {k: v.detach().cpu() for k, v in net.state_dict().items()}
    for key in ("model",):
        why = _like(model_ref, ckpt[key], key)
        if why:
            raise refuse(why)
    best = ckpt["early_stopping"].get("best_state")
    if best is not None:
        why = _like(model_ref, best, "early_stopping.best_state")
        if why:
            raise refuse(why)
    ref = optimizer.state_dict()
    got = ckpt["optimizer"]
    if not isinstance(got, dict) or set(got) != {"state", "param_groups"}:
        raise refuse("optimizer state is not an optimizer state dict")
    why = _like(ref["param_groups"], got["param_groups"], "optimizer.param_groups")
    if why:
        raise refuse(why)
    params = [p for g in optimizer.param_groups for p in g["params"]]
    state = got["state"]
    if not isinstance(state, dict) or not set(state) <= set(range(len(params))):
        raise refuse("optimizer.state does not match the parameters")
    for i, entry in state.items():
        p = params[i]
        if not isinstance(entry, dict) or not set(entry) <= {"step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"}:
            raise refuse(f"optimizer.state.{i} has unexpected entries")
        for k, t in entry.items():
            shape = () if k == "step" else tuple(p.shape)
            dtype = torch.float32 if k == "step" else p.dtype
            if not isinstance(t, torch.Tensor) or tuple(t.shape) != shape or t.dtype != dtype:
                raise refuse(f"optimizer.state.{i}.{k} does not match its parameter")
    if scheduler is not None and ckpt.get("scheduler") is not None:
        why = _like(scheduler.state_dict(), ckpt["scheduler"], "scheduler")
        if why:
            raise refuse(why)
    elif (scheduler is None) != (ckpt.get("scheduler") is None):
        raise refuse("the checkpoint was written with another learning-rate schedule")


def _restore_checks(ckpt: dict[str, Any], path: Path) -> None:
    """Types and ranges of a checkpoint's plain values, before any of them is used."""
    def bad(what: str) -> TrainingError:
        return TrainingError(f"{path}: {what}; the checkpoint is damaged. Delete it to start afresh.")

    for key in ("epoch", "model", "optimizer", "early_stopping", "rng", "history"):
        if key not in ckpt:
            raise bad(f"no {key!r} entry")
    epoch = ckpt["epoch"]
    if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 0:
        raise bad(f"epoch {epoch!r} is not a non-negative integer")
    if not isinstance(ckpt["model"], dict) or not all(isinstance(v, torch.Tensor) for v in ckpt["model"].values()):
        raise bad("'model' is not a state dict of tensors")
    hist = ckpt["history"]
    if not isinstance(hist, dict) or set(hist) != set(_empty_history()) or not all(
        isinstance(v, list) and len(v) == epoch for v in hist.values()
    ):
        raise bad(f"'history' does not hold {epoch} entries of {', '.join(_empty_history())}")
    def number(v: Any, allow_none: bool = False) -> bool:
        if v is None:
            return allow_none
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

    if hist["epoch"] != list(range(1, epoch + 1)):
        raise bad(f"history.epoch is not 1..{epoch}")
    for key, none_ok in (("train_loss", False), ("val_loss", True), ("lr", False), ("epoch_time_s", False)):
        if not all(number(v, none_ok) for v in hist[key]):
            raise bad(f"history.{key} holds a value that is not a finite number")
    es = ckpt["early_stopping"]
    if not isinstance(es, dict) or not {"best_loss", "best_epoch", "bad_epochs", "stopped"} <= set(es):
        raise bad("'early_stopping' is incomplete")
    for key in ("best_epoch", "bad_epochs"):
        if not isinstance(es[key], int) or isinstance(es[key], bool):
            raise bad(f"early_stopping.{key} is not an integer")
    if not isinstance(es["best_loss"], (int, float)) or isinstance(es["best_loss"], bool) or math.isnan(es["best_loss"]):
        raise bad("early_stopping.best_loss is not a number")
    best = es.get("best_state")
    if best is not None and (not isinstance(best, dict) or set(best) != set(ckpt["model"])):
        raise bad("early_stopping.best_state does not match the model's tensors")
    rng = ckpt["rng"]
    ref = torch.get_rng_state()
    torch_rng = rng.get("torch") if isinstance(rng, dict) else None
    if not isinstance(torch_rng, torch.Tensor) or torch_rng.dtype != ref.dtype or torch_rng.shape != ref.shape:
        raise bad("rng.torch is not a torch RNG state")


def _empty_history() -> dict[str, list[Any]]:
    return {"epoch": [], "train_loss": [], "val_loss": [], "lr": [], "epoch_time_s": []}


def fit_network(
    net: nn.Module,
    loss_fn: LossFn,
    train_batches: Callable[[int], Iterable[Batch]],
    val_batches: Callable[[int], Iterable[Batch]] | None = None,
    *,
    epochs: int = 100,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    patience: int | None = 10,
    min_delta: float = 0.0,
    lr_patience: int | None = 5,
    lr_factor: float = 0.5,
    min_lr: float = 1e-6,
    restore_best: bool = True,
    device: str | torch.device = "auto",
    seed: int = 0,
    n_threads: int | None = None,
    checkpoint_dir: str | Path | None = None,
    resume: bool = False,
    progress: ProgressFn | None = None,
    signature: Mapping[str, Any] | None = None,
) -> dict[str, list[Any]]:
    """Train ``net`` with Adam, LR reduction on plateau and early stopping; return the history.

    Parameters
    ----------
    net : nn.Module
        The network; it is moved to ``device`` and trained in place (left on ``device``).
    loss_fn : callable
        ``loss_fn(net, batch) -> Tensor`` of per-event losses, shape (N,) (a scalar is
        accepted too). The optimised loss is their mean; the validation loss is the mean
        over all validation events.
    train_batches : callable
        ``train_batches(epoch) -> Iterable[batch]``, ``epoch`` counted from 0. A batch is a
        Tensor or a tuple of Tensors, moved to ``device`` and passed to ``loss_fn`` as is.
        The order must depend only on ``epoch`` for ``resume`` to be exact.
    val_batches : callable, optional
        Same form; the monitored loss for early stopping and LR reduction. Without it the
        mean training loss is monitored.
    epochs : int
        Maximum number of epochs.
    lr, weight_decay : float
        Adam learning rate and L2 weight decay.
    patience : int or None
        Stop after this many epochs without an improvement larger than ``min_delta``
        (None: never stop early).
    min_delta : float
        The smallest decrease of the monitored loss that counts as an improvement.
    lr_patience, lr_factor, min_lr
        ``ReduceLROnPlateau``: multiply the learning rate by ``lr_factor`` after
        ``lr_patience`` epochs without improvement, not below ``min_lr`` (None: constant lr).
    restore_best : bool
        Load the weights of the best epoch at the end (default).
    device : {"auto", "cpu", "cuda"} or torch.device
        "auto" uses the GPU when one is present.
    seed : int
        Seed of the global torch RNG inside a ``fork_rng`` block (dropout, sampling).
    n_threads : int, optional
        ``torch.set_num_threads`` for the duration of the call (restored afterwards).
    checkpoint_dir : path, optional
        Write ``checkpoint.safetensors`` and ``history.json`` there after every epoch (atomically).
    resume : bool
        Continue from ``checkpoint_dir/checkpoint.safetensors`` when it exists (else start afresh).
    progress : callable, optional
        ``progress(epoch, epochs, logs)`` after every epoch, ``epoch`` counted from 1; logs
        hold train_loss, val_loss, lr, epoch_time_s, best_epoch, best_loss, stopped.
    signature : mapping, optional
        JSON-able description of the model and data; a checkpoint with another signature is
        refused on resume (it belongs to a different run).

    Returns
    -------
    dict of lists
        ``{"epoch", "train_loss", "val_loss", "lr", "epoch_time_s"}``, one entry per epoch
        (``val_loss`` None without validation), including epochs before a resume.
    """
    if not isinstance(epochs, int) or epochs < 1:
        raise ConfigError(f"epochs must be a positive integer, got {epochs!r}.")
    if lr <= 0:
        raise ConfigError(f"learning rate must be positive, got {lr}.")
    if patience is not None and patience < 1:
        raise ConfigError(f"patience must be a positive integer or None, got {patience}.")
    dev = resolve_device(device)
    signature = json.loads(json.dumps(dict(signature or {})))  # canonical, and checks JSON-ability
    ckpt_path = Path(checkpoint_dir) / CHECKPOINT_NAME if checkpoint_dir is not None else None

    net.to(dev)
    try:
        # The fused kernel is ~25 % faster per step for these small networks (CPU and GPU).
        optimizer = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=weight_decay, fused=True)
    except (RuntimeError, TypeError, ValueError):
        optimizer = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=weight_decay)
    scheduler = None
    if lr_patience is not None:
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="min", factor=lr_factor, patience=lr_patience,
            threshold=min_delta, threshold_mode="abs", min_lr=min_lr,
        )

    history = _empty_history()
    start_epoch = 0
    best_loss, best_epoch, bad_epochs, stopped = math.inf, -1, 0, False
    best_state: dict[str, torch.Tensor] | None = None
    rng_state: dict[str, Any] | None = None

    if resume and ckpt_path is None:
        raise ConfigError("resume=True needs a checkpoint_dir to resume from.")
    legacy = Path(checkpoint_dir) / _LEGACY_CHECKPOINT if checkpoint_dir is not None else None
    if resume and ckpt_path is not None and not ckpt_path.exists() and legacy is not None and legacy.exists():
        load_checkpoint(legacy)  # raises: refuses the pickle with a message
    if resume and ckpt_path is not None and ckpt_path.exists():
        try:
            start_epoch, history, best_loss, best_epoch, bad_epochs, stopped, best_state, rng_state = _resume(
                ckpt_path, signature, net, optimizer, scheduler)
        except TrainingError as exc:  # one line, whatever text a damaged checkpoint holds
            raise TrainingError(" ".join(str(exc).split())) from None
        log.info("Resuming from %s after epoch %d of %d.", ckpt_path, start_epoch, epochs)
    elif resume:
        log.info("No checkpoint in %s yet; starting from epoch 1.", checkpoint_dir)

    fork_devices = [dev.index or 0] if dev.type == "cuda" else []
    prev_threads = torch.get_num_threads()
    if n_threads is not None:
        torch.set_num_threads(int(n_threads))
    try:
        with torch.random.fork_rng(devices=fork_devices):
            if rng_state is None:
                torch.manual_seed(int(seed))
            else:
                torch.set_rng_state(rng_state["torch"])
                if fork_devices and rng_state.get("cuda"):
                    torch.cuda.set_rng_state(rng_state["cuda"], dev)
            for epoch in range(start_epoch, epochs):
                if stopped:
                    break
                t0 = time.perf_counter()
                train_loss = _run_epoch(net, loss_fn, train_batches(epoch), dev, optimizer, epoch)
                val_loss = None
                if val_batches is not None:
                    val_loss = _run_epoch(net, loss_fn, val_batches(epoch), dev, None, epoch)
                monitored = train_loss if val_loss is None else val_loss
                lr_used = float(optimizer.param_groups[0]["lr"])
                if monitored < best_loss - min_delta:
                    best_loss, best_epoch, bad_epochs = monitored, epoch + 1, 0
                    best_state = _state_copy(net)
                else:
                    bad_epochs += 1
                if scheduler is not None:
                    scheduler.step(monitored)
                if patience is not None and bad_epochs >= patience:
                    stopped = True
                    log.info("Early stopping after epoch %d (best epoch %d).", epoch + 1, best_epoch)
                dt = time.perf_counter() - t0
                for key, value in (("epoch", epoch + 1), ("train_loss", train_loss), ("val_loss", val_loss),
                                   ("lr", lr_used), ("epoch_time_s", dt)):
                    history[key].append(value)
                if ckpt_path is not None:
                    _save_checkpoint(
                        ckpt_path, net, optimizer, scheduler, epoch + 1, history, signature,
                        dict(best_loss=best_loss, best_epoch=best_epoch, bad_epochs=bad_epochs,
                             stopped=stopped, best_state=best_state),
                        fork_devices, dev,
                    )
                if progress is not None:
                    progress(epoch + 1, epochs, {
                        "train_loss": train_loss, "val_loss": val_loss, "lr": lr_used,
                        "epoch_time_s": dt, "best_epoch": best_epoch, "best_loss": best_loss,
                        "stopped": stopped,
                    })
    finally:
        if n_threads is not None:
            torch.set_num_threads(prev_threads)
    if restore_best and best_state is not None:
        net.load_state_dict(best_state)
    return history


def _resume(ckpt_path: Path, signature: dict[str, Any], net: nn.Module, optimizer: Any, scheduler: Any) -> tuple:
    """Restore ``net``, ``optimizer`` and ``scheduler`` from a checkpoint checked in full first;
    returns the loop state (epoch, history, early stopping, best weights, RNG state)."""
    ckpt = load_checkpoint(ckpt_path)
    if ckpt.get("signature") != signature:
        raise TrainingError(
            f"{ckpt_path} was written by a different model or data (signature differs); "
            "use another checkpoint_dir or delete it to start afresh."
        )
    _restore_checks(ckpt, ckpt_path)
    _fits_this_run(ckpt, ckpt_path, net, optimizer, scheduler)
    try:
        net.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        if scheduler is not None and ckpt.get("scheduler") is not None:
            scheduler.load_state_dict(ckpt["scheduler"])
    except (RuntimeError, KeyError, ValueError, TypeError, IndexError, AttributeError) as exc:
        detail = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
        raise TrainingError(f"{ckpt_path} does not fit this network ({detail}); delete it to start afresh.") from None
    start_epoch = int(ckpt["epoch"])
    history = {k: list(v) for k, v in ckpt["history"].items()}
    es = ckpt["early_stopping"]
    best_loss, best_epoch = float(es["best_loss"]), int(es["best_epoch"])
    bad_epochs, stopped = int(es["bad_epochs"]), bool(es["stopped"])
    best_state = es.get("best_state")
    rng_state = ckpt["rng"]
    return start_epoch, history, best_loss, best_epoch, bad_epochs, stopped, best_state, rng_state


def _run_epoch(
    net: nn.Module,
    loss_fn: LossFn,
    batches: Iterable[Batch],
    dev: torch.device,
    optimizer: torch.optim.Optimizer | None,
    epoch: int,
) -> float:
    """One pass; trains when an optimizer is given, else evaluates. Returns the mean loss."""
    net.train(optimizer is not None)
    total = torch.zeros((), dtype=torch.float64, device=dev)
    n = 0
    ctx = contextlib.nullcontext() if optimizer is not None else torch.no_grad()
    with ctx:
        for batch in batches:
            batch = _to_device(batch, dev)
            losses = loss_fn(net, batch)
            m = _batch_len(batch)
            if losses.ndim == 0:
                loss, batch_sum = losses, losses.detach().double() * m
            else:
                loss, batch_sum = losses.mean(), losses.detach().double().sum()
            if optimizer is not None:
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            total += batch_sum
            n += m
    if n == 0:
        what = "training" if optimizer is not None else "validation"
        raise TrainingError(f"The {what} batches of epoch {epoch + 1} are empty; give at least one event.")
    mean = float(total.item() / n)
    if not math.isfinite(mean):
        raise TrainingError(
            f"The {'training' if optimizer is not None else 'validation'} loss became {mean} in epoch {epoch + 1}; "
            "lower the learning rate, enable scaling in preprocessing, or check the inputs for extreme values."
        )
    return mean


def _save_checkpoint(
    path: Path,
    net: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    epoch: int,
    history: dict[str, list[Any]],
    signature: dict[str, Any],
    early_stopping: dict[str, Any],
    fork_devices: list[int],
    dev: torch.device,
) -> None:
    state = {
        "format": _CHECKPOINT_FORMAT,
        "epoch": epoch,
        "model": _state_copy(net),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "early_stopping": early_stopping,
        # RNG states are ByteTensors: stored as uint8 tensors like the weights.
        "rng": {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state(dev) if fork_devices else None,
        },
        "history": history,
        "signature": signature,
    }
    _write_checkpoint_file(path, state)
    with atomic_path(path.with_name(HISTORY_NAME)) as tmp:
        tmp.write_text(json.dumps(history, indent=1))
