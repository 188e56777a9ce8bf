"""hepad.data: the streaming training loader and the streaming fit recipe."""

from __future__ import annotations

import numpy as np
import pytest

import hepad
from hepad._toy import toy_events
from hepad.data import StreamingLoader, fit_streaming
from hepad.errors import ConfigError
from hepad.events import EventSet


@pytest.fixture(scope="module")
def id_files(tmp_path_factory):
    """Three flat files whose first column is a unique event id (0..N-1 across files)."""
    d = tmp_path_factory.mktemp("ids")
    paths, start = [], 0
    rng = np.random.default_rng(0)
    for i, n in enumerate((1300, 700, 1001)):
        ids = np.arange(start, start + n, dtype=np.float32)
        data = np.column_stack([ids, rng.normal(size=(n, 2)).astype(np.float32)])
        p = d / f"ids_{i}.h5"
        hepad.write_events(EventSet(data, feature_names=("id", "a", "b")), p)
        paths.append(p)
        start += n
    return paths, start


def _ids(loader, epoch):
    return np.concatenate([b[:, 0] for b in loader(epoch)]).astype(np.int64)


def test_every_event_once_per_epoch_shuffled_and_bounded(id_files):
    paths, n = id_files
    loader = StreamingLoader(paths, batch_size=64, buffer_size=500, seed=3, block_size=128, as_tensor=False)
    assert loader.n_events == n and len(loader) == -(-n // 64)
    batches = list(loader(0))
    assert all(len(b) == 64 for b in batches[:-1]) and len(batches) == len(loader)
    ids = np.concatenate([b[:, 0] for b in batches]).astype(np.int64)
    assert np.array_equal(np.sort(ids), np.arange(n))  # each event exactly once
    # Shuffled: far from file order, and the first batch already mixes several blocks.
    assert np.corrcoef(ids, np.arange(n))[0, 1] < 0.9
    assert len(np.unique(batches[0][:, 0] // 128)) > 3
    assert loader.max_buffered_ <= 500 + 64 + 128


def test_order_depends_on_seed_and_epoch_only(id_files):
    paths, _ = id_files
    a = StreamingLoader(paths, batch_size=100, buffer_size=400, seed=1, as_tensor=False)
    b = StreamingLoader(paths, batch_size=100, buffer_size=400, seed=1, as_tensor=False)
    assert np.array_equal(_ids(a, 2), _ids(b, 2))
    assert not np.array_equal(_ids(a, 0), _ids(a, 1))
    c = StreamingLoader(paths, batch_size=100, buffer_size=400, seed=2, as_tensor=False)
    assert not np.array_equal(_ids(a, 0), _ids(c, 0))


def test_no_shuffle_is_file_order_and_drop_last(id_files):
    paths, n = id_files
    plain = StreamingLoader(paths, batch_size=256, buffer_size=300, shuffle=False, as_tensor=False)
    assert np.array_equal(_ids(plain, 5), np.arange(n))
    dropped = StreamingLoader(paths, batch_size=256, buffer_size=300, drop_last=True, as_tensor=False)
    sizes = [len(b) for b in dropped(0)]
    assert set(sizes) == {256} and len(sizes) == len(dropped) == n // 256


def test_preprocess_tuple_and_tensors(id_files):
    torch = pytest.importorskip("torch")
    paths, n = id_files
    loader = StreamingLoader(paths, batch_size=500, buffer_size=1000, preprocess=lambda X: (X * 2, X[:, :1]))
    first = next(iter(loader))
    assert isinstance(first, tuple) and all(isinstance(t, torch.Tensor) for t in first)
    assert torch.equal(first[0][:, :1], first[1] * 2)  # rows stay aligned across outputs
    bad = StreamingLoader(paths, batch_size=10, buffer_size=10, preprocess=lambda X: X[:1])
    with pytest.raises(ConfigError, match="one row per event"):
        next(iter(bad))


def test_bad_parameters_are_named(id_files):
    paths, _ = id_files
    with pytest.raises(ConfigError, match="buffer_size"):
        StreamingLoader(paths, buffer_size=0)
    with pytest.raises(hepad.HepadError, match="no such file"):
        StreamingLoader([paths[0].parent / "nope.h5"])


def test_fit_streaming_trains_a_deep_detector(tmp_path):
    pytest.importorskip("torch")
    files = []
    for i in range(2):
        p = tmp_path / f"bkg_{i}.h5"
        hepad.write_events(toy_events(600, seed=20 + i), p)
        files.append(p)
    val = tmp_path / "val.h5"
    hepad.write_events(toy_events(400, seed=30), val)
    det = hepad.make_detector("ae", epochs=2, batch_size=128, hidden_layers=[16], latent_dim=4)
    fit_streaming(det, files, val_files=[val], n_fit=500, buffer_size=400)
    assert len(det.history_["train_loss"]) == 2
    s_bkg = det.score_samples(hepad.read_events(val))
    # The default threshold is set on the validation background: 5 % of it passes.
    assert (s_bkg > det.threshold_).sum() == int(0.05 * len(s_bkg))
    det.save(tmp_path / "model")
    again = hepad.load(tmp_path / "model")
    assert np.allclose(again.score_samples(hepad.read_events(val)), s_bkg, atol=1e-6)
    with pytest.raises(ConfigError, match="deep detectors"):
        fit_streaming(hepad.make_detector("iforest"), files)
