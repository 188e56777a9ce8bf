"""The plain training loop: exact resume after a kill, early stopping, LR reduction."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from hepad.training import (
    CHECKPOINT_NAME,
    HISTORY_NAME,
    TrainingError,
    fit_network,
    load_checkpoint,
    tensor_batches,
)

# A tiny model with batch norm and dropout (so RNG and running statistics matter), trained
# with LR reduction on; `run` is used both by the killed subprocess and in-process.
SCRIPT = '''
import sys, time
import torch
from hepad.detectors._nn import AutoEncoderNet, masked_mse
from hepad.training import fit_network, tensor_batches

EPOCHS = 6

def run(ckpt_dir, resume, sleep):
    g = torch.Generator().manual_seed(7)
    x = torch.randn(600, 12, generator=g)
    xv = torch.randn(200, 12, generator=g)
    with torch.random.fork_rng():
        torch.manual_seed(3)
        net = AutoEncoderNet(12, [16], 4, batch_norm=True, dropout=0.2)
    loss = lambda net, xb: masked_mse(xb, net(xb), None)
    hist = fit_network(
        net, loss, tensor_batches(x, batch_size=64, seed=5), tensor_batches(xv, batch_size=200, shuffle=False),
        epochs=EPOCHS, lr=3e-3, patience=None, lr_patience=1, lr_factor=0.5, device="cpu", seed=11,
        n_threads=1, checkpoint_dir=ckpt_dir, resume=resume,
        progress=(lambda e, n, logs: time.sleep(sleep)) if sleep else None,
    )
    return net, hist

if __name__ == "__main__":
    run(sys.argv[1], True, float(sys.argv[2]))
'''


@pytest.fixture
def script(tmp_path: Path):
    path = tmp_path / "train_tiny.py"
    path.write_text(SCRIPT)
    spec = importlib.util.spec_from_file_location("train_tiny", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return path, mod


def _ckpt_epoch(path: Path) -> int:
    try:
        return int(load_checkpoint(path)["epoch"])
    except (TrainingError, FileNotFoundError):
        return 0


def test_killed_run_resumes_to_the_same_weights(script, tmp_path):
    path, mod = script
    ckpt_dir = tmp_path / "ckpt"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, str(path), str(ckpt_dir), "0.5"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ckpt = ckpt_dir / CHECKPOINT_NAME
    deadline = time.monotonic() + 90
    try:
        while _ckpt_epoch(ckpt) < 2:
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "the training subprocess wrote no 2nd checkpoint in 90 s"
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    killed_at = _ckpt_epoch(ckpt)
    assert 2 <= killed_at < mod.EPOCHS, "the run must be interrupted before it finished"

    resumed, hist = mod.run(str(ckpt_dir), True, 0)
    assert hist["epoch"] == list(range(1, mod.EPOCHS + 1))
    assert json.loads((ckpt_dir / HISTORY_NAME).read_text())["epoch"] == hist["epoch"]

    reference, ref_hist = mod.run(None, False, 0)
    for (k, a), b in zip(reference.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(b, a, rtol=0, atol=1e-6, msg=k)
    assert hist["val_loss"] == pytest.approx(ref_hist["val_loss"], rel=1e-6)
    assert hist["lr"] == ref_hist["lr"]


def test_resume_refuses_a_foreign_checkpoint(tmp_path):
    x = torch.randn(50, 3)
    net = nn.Linear(3, 3)
    loss = lambda net, xb: ((net(xb) - xb) ** 2).mean(dim=1)
    fit_network(net, loss, tensor_batches(x, batch_size=10), epochs=1, device="cpu",
                checkpoint_dir=tmp_path, signature={"model": "a"})
    with pytest.raises(TrainingError, match="different model"):
        fit_network(nn.Linear(3, 3), loss, tensor_batches(x, batch_size=10), epochs=2, device="cpu",
                    checkpoint_dir=tmp_path, resume=True, signature={"model": "b"})
    (tmp_path / CHECKPOINT_NAME).write_bytes(b"not a checkpoint")
    with pytest.raises(TrainingError, match="not a readable hepad checkpoint"):
        fit_network(nn.Linear(3, 3), loss, tensor_batches(x, batch_size=10), epochs=2, device="cpu",
                    checkpoint_dir=tmp_path, resume=True, signature={"model": "a"})


def _one_weight() -> nn.Linear:
    net = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        net.weight.zero_()
    return net


def _fit_target(target_train: float, target_val: float, **kw):
    """Train w (from 0) towards target_train while validation prefers target_val."""
    one = torch.ones(1, 1)
    train = lambda epoch: [(one, torch.full((1, 1), target_train))]
    val = lambda epoch: [(one, torch.full((1, 1), target_val))]
    loss = lambda net, b: ((net(b[0]) - b[1]) ** 2).sum(dim=1)
    net = _one_weight()
    hist = fit_network(net, loss, train, val, device="cpu", **kw)
    return net, hist


def test_early_stopping_restores_the_best_weights():
    # Adam moves w by ~lr per step: validation improves until w ~ 0.3, then degrades.
    net, hist = _fit_target(1.0, 0.3, epochs=30, lr=0.1, patience=3, lr_patience=None)
    n = len(hist["epoch"])
    assert n < 30, "early stopping never triggered"
    best = min(range(n), key=lambda i: hist["val_loss"][i])
    assert n == best + 1 + 3  # stopped after `patience` epochs without improvement
    w = net.weight.item()
    assert (w - 0.3) ** 2 == pytest.approx(hist["val_loss"][best], rel=1e-4)
    assert (w - 0.3) ** 2 < hist["val_loss"][-1]

    # Without restoring, the weights are those of the last epoch.
    net2, hist2 = _fit_target(1.0, 0.3, epochs=30, lr=0.1, patience=3, lr_patience=None, restore_best=False)
    assert (net2.weight.item() - 0.3) ** 2 == pytest.approx(hist2["val_loss"][-1], rel=1e-4)


def test_learning_rate_drops_on_plateau_only():
    # Validation loss never improves after epoch 1 (it prefers w = 0, training moves w away).
    _, hist = _fit_target(1.0, -1.0, epochs=7, lr=0.01, patience=None, lr_patience=2, lr_factor=0.5)
    # torch semantics: the LR drops after lr_patience + 1 epochs without improvement.
    assert hist["lr"] == pytest.approx([0.01] * 4 + [0.005] * 3)
    # While the monitored loss improves, the learning rate stays put.
    _, hist = _fit_target(1.0, 1.0, epochs=5, lr=0.01, patience=None, lr_patience=1)
    assert hist["lr"] == [0.01] * 5


def test_tensor_batches_order_depends_on_epoch_only():
    x = torch.arange(10).float()
    a, b = tensor_batches(x, batch_size=4, seed=1), tensor_batches(x, batch_size=4, seed=1)
    assert [t.tolist() for t in a(3)] == [t.tolist() for t in b(3)]
    assert [t.tolist() for t in a(3)] != [t.tolist() for t in a(4)]
    assert sorted(torch.cat(list(a(0))).tolist()) == x.tolist()


def test_progress_callback_and_nan_loss():
    calls = []
    x = torch.randn(20, 2)
    loss = lambda net, xb: ((net(xb) - xb) ** 2).mean(dim=1)
    fit_network(nn.Linear(2, 2), loss, tensor_batches(x, batch_size=8), epochs=3, device="cpu",
                progress=lambda e, n, logs: calls.append((e, n, sorted(logs))))
    assert [c[:2] for c in calls] == [(1, 3), (2, 3), (3, 3)]
    assert {"train_loss", "val_loss", "lr", "epoch_time_s", "best_epoch"} <= set(calls[0][2])
    with pytest.raises(TrainingError, match="loss became nan in epoch 1"):
        fit_network(nn.Linear(2, 2), lambda net, xb: net(xb).sum(dim=1) * float("nan"),
                    tensor_batches(x, batch_size=8), epochs=2, device="cpu")


# ------------------------------------------------------------- checkpoints without pickle (issue 11, item 8)
def _tiny_fit(ckpt_dir, epochs, resume=False, **kw):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(64, 4, generator=g)
    with torch.random.fork_rng():
        torch.manual_seed(2)
        net = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 4))
    loss = lambda net, xb: ((net(xb) - xb) ** 2).mean(dim=1)
    hist = fit_network(net, loss, tensor_batches(x, batch_size=16, seed=3), epochs=epochs, device="cpu",
                       lr_patience=1, checkpoint_dir=ckpt_dir, resume=resume, seed=4, n_threads=1, **kw)
    return net, hist


def test_checkpoint_is_safetensors_and_resume_never_unpickles(tmp_path, monkeypatch):
    from safetensors import safe_open

    _tiny_fit(tmp_path, 2)
    ckpt = tmp_path / CHECKPOINT_NAME
    assert ckpt.suffix == ".safetensors" and not (tmp_path / "checkpoint.pt").exists()
    with safe_open(str(ckpt), framework="pt") as f:  # a plain safetensors file with a JSON header
        meta = json.loads(f.metadata()["hepad"])
        assert meta["epoch"] == 2 and any(k.startswith("t") for k in f.keys())

    def no_unpickling(*a, **k):
        raise AssertionError("torch.load / pickle must not be used to read a checkpoint")

    monkeypatch.setattr(torch, "load", no_unpickling)
    import pickle

    monkeypatch.setattr(pickle, "load", no_unpickling)
    monkeypatch.setattr(pickle, "loads", no_unpickling)
    resumed, hist = _tiny_fit(tmp_path, 4, resume=True)
    monkeypatch.undo()
    reference, ref_hist = _tiny_fit(None, 4)
    assert hist["epoch"] == [1, 2, 3, 4] and hist["lr"] == ref_hist["lr"]
    for (k, a), b in zip(reference.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(b, a, rtol=0, atol=1e-6, msg=k)


def test_a_pickle_checkpoint_is_refused_without_loading_it(tmp_path, monkeypatch):
    class Boom:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    torch.save({"format": "hepad-checkpoint/1", "x": Boom()}, tmp_path / "checkpoint.pt")
    monkeypatch.setattr(torch, "load", lambda *a, **k: (_ for _ in ()).throw(AssertionError("torch.load called")))
    with pytest.raises(TrainingError, match="pickle checkpoint") as info:
        _tiny_fit(tmp_path, 2, resume=True)
    assert "weights_only" not in str(info.value) and "\n" not in str(info.value)
    assert not (tmp_path / "pwned").exists()


def test_a_damaged_checkpoint_is_one_clean_error(tmp_path):
    from safetensors import safe_open
    from safetensors.torch import save_file

    _tiny_fit(tmp_path, 1)
    ckpt = tmp_path / CHECKPOINT_NAME
    with safe_open(str(ckpt), framework="pt") as f:
        meta, tensors = dict(f.metadata()), {k: f.get_tensor(k) for k in f.keys()}
    doc = json.loads(meta["hepad"])
    cases = {
        "epoch": dict(doc, epoch=-3),
        "history": dict(doc, history={"epoch": [1]}),
        "rng": dict(doc, rng={"torch": doc["model"][next(iter(doc["model"]))]}),
    }
    for what, bad in cases.items():
        save_file(tensors, str(ckpt), metadata=dict(meta, hepad=json.dumps(bad)))
        with pytest.raises(TrainingError, match="damaged|missing or repeated"):
            _tiny_fit(tmp_path, 2, resume=True)
    save_file({k: v for k, v in list(tensors.items())[1:]}, str(ckpt), metadata=meta)
    with pytest.raises(TrainingError, match="missing or repeated"):
        _tiny_fit(tmp_path, 2, resume=True)
