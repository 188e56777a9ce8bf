"""The PyTorch detectors: they learn, separate toy signal, build the stated architectures,
export to a module that reproduces their scores, and mask padded slots."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from hepad import _layout as L
from hepad.detectors import _nn
from hepad.detectors.base import make_detector
from hepad.errors import ConfigError, NotFittedError

FAST = dict(epochs=6, n_threads=1, patience=None, lr_patience=None, batch_size=256)


def _linears(seq: nn.Module) -> list[tuple[int, int]]:
    return [(m.in_features, m.out_features) for m in seq if isinstance(m, nn.Linear)]


@pytest.fixture(scope="module")
def fitted(toy_bkg, toy_bkg_val):
    """One fit per deep model, shared by the tests below."""
    return {
        name: make_detector(name, **FAST).fit(toy_bkg, X_val=toy_bkg_val)
        for name in ("ae", "vae", "deep-svdd")
    }


@pytest.mark.parametrize("name", ["ae", "vae", "deep-svdd"])
def test_learns_and_separates_toy_signal(fitted, toy_bkg_val, toy_sig, name):
    det = fitted[name]
    hist = det.history_
    assert len(hist["train_loss"]) == FAST["epochs"]
    assert hist["train_loss"][-1] < hist["train_loss"][0]
    assert hist["val_loss"][-1] < hist["val_loss"][0]
    s_bkg, s_sig = det.score_samples(toy_bkg_val), det.score_samples(toy_sig)
    assert s_bkg.dtype == np.float32 and s_bkg.shape == (len(toy_bkg_val),)
    assert s_sig.mean() > s_bkg.mean()
    # The default threshold is the 95th percentile of the validation background.
    assert np.mean(s_bkg > det.threshold_) == pytest.approx(0.05, abs=0.01)


@pytest.mark.parametrize("score", ["recon", "kl", "mu2"])
def test_vae_scores(fitted, toy_bkg_val, toy_sig, score):
    det = fitted["vae"]
    old = det.score
    try:
        det.set_params(score=score)
        s_bkg, s_sig = det.score_samples(toy_bkg_val), det.score_samples(toy_sig)
        mu = det.encode(toy_bkg_val)
    finally:
        det.set_params(score=old)
    assert s_sig.mean() > s_bkg.mean()
    assert (s_bkg >= 0).all()
    if score == "mu2":
        np.testing.assert_allclose(s_bkg, (mu.astype(np.float64) ** 2).sum(axis=1), rtol=1e-5)


@pytest.mark.parametrize("name", ["ae", "vae", "deep-svdd"])
def test_export_module_matches_score_samples(fitted, toy_sig, name):
    det = fitted[name]
    module = det.export_module()
    assert not module.training
    with torch.no_grad():
        exported = module(torch.from_numpy(toy_sig.features)).numpy()
    np.testing.assert_allclose(exported, det.score_samples(toy_sig), rtol=1e-5, atol=1e-7)
    # The exported copy is independent of the estimator's network.
    next(module.parameters()).data.add_(1.0)
    with torch.no_grad():
        assert not np.allclose(module(torch.from_numpy(toy_sig.features)).numpy(), det.score_samples(toy_sig))


@pytest.mark.parametrize("prep", [
    {"log_pt": True, "phi": "drop", "mask_padding": True},
    {"scaling": "minmax", "log_pt": True},
])
def test_torch_preprocessing_matches_numpy(toy_bkg, toy_sig, prep):
    from hepad.preprocessing import Preprocessor

    pre = Preprocessor(**prep).fit(toy_bkg.features, toy_bkg.feature_names)
    tp = _nn.TorchPreprocess(pre, mask_padding=pre.mask_padding)
    X = toy_sig.features
    z, m = tp(torch.from_numpy(X))
    ref_z, ref_m = pre.transform(X), pre.padding_mask(X)
    np.testing.assert_array_equal(m.numpy(), ref_m)
    # Filled features equal the numpy transform; padded ones are the value of an empty slot.
    z_empty = pre.transform(np.zeros((1, X.shape[1]), np.float32))[0]
    ref = np.where(ref_m > 0, ref_z, z_empty)
    np.testing.assert_allclose(z.numpy(), ref, rtol=1e-5, atol=1e-5)
    assert z.shape[1] == (38 if prep.get("phi") == "drop" else 57)


def test_export_with_folded_preprocessing(toy_bkg, toy_sig):
    det = make_detector(
        "ae", **FAST, preprocessing={"log_pt": True, "phi": "drop", "mask_padding": True}
    ).fit(toy_bkg)
    with torch.no_grad():
        exported = det.export_module()(torch.from_numpy(toy_sig.features)).numpy()
    np.testing.assert_allclose(exported, det.score_samples(toy_sig), rtol=1e-5, atol=1e-7)
    assert det.feature_errors(toy_sig).shape == (len(toy_sig), 38)


def test_export_module_runs_in_onnx_runtime(toy_bkg, toy_sig, tmp_path):
    """The folded preprocessing uses only ops ONNX Runtime implements (no bool Where...)."""
    ort = pytest.importorskip("onnxruntime")
    det = make_detector(
        "ae", **{**FAST, "epochs": 1}, preprocessing={"log_pt": True, "phi": "drop", "mask_padding": True}
    ).fit(toy_bkg[:500])
    path = tmp_path / "ae.onnx"
    torch.onnx.export(det.export_module(), (torch.from_numpy(toy_sig.features[:4]),), str(path),
                      input_names=["x"], output_names=["score"], dynamic_axes={"x": {0: "n"}},
                      dynamo=False, opset_version=17)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = sess.run(None, {"x": toy_sig.features})[0]
    np.testing.assert_allclose(out, det.score_samples(toy_sig), rtol=1e-5, atol=1e-7)


def test_masking_excludes_padded_slots(toy_bkg, toy_bkg_val):
    events = toy_bkg_val[:300]
    X = events.features.copy()
    col = {n: i for i, n in enumerate(L.FLAT57_NAMES)}
    padded = X[:, col["j5_pt"]] == 0  # the 5th jet slot is empty in most toy events
    assert padded.sum() > 50
    X2 = X.copy()
    rng = np.random.default_rng(0)
    X2[padded, col["j5_eta"]] = rng.uniform(-3, 3, padded.sum())
    X2[padded, col["j5_phi"]] = rng.uniform(-3, 3, padded.sum())

    masked = make_detector("ae", **FAST, preprocessing={"mask_padding": True}).fit(toy_bkg)
    np.testing.assert_array_equal(masked.score_samples(X2), masked.score_samples(X))
    errs = masked.feature_errors(X)
    assert (errs[padded][:, [col["j5_pt"], col["j5_eta"], col["j5_phi"]]] == 0).all()
    # The score is the mean error over the counted features only.
    mask = masked.preprocessor_.padding_mask(X)
    np.testing.assert_allclose(masked.score_samples(X), errs.sum(1) / mask.sum(1), rtol=1e-5)

    unmasked = make_detector("ae", **FAST).fit(toy_bkg)
    assert not np.allclose(unmasked.score_samples(X2)[padded], unmasked.score_samples(X)[padded])


def test_presets_build_the_stated_architectures():
    keras = make_detector("ae-keras-seed")._build_net(57)
    assert _linears(keras.encoder) == [(57, 32), (32, 16), (16, 8), (8, 4)]
    assert _linears(keras.decoder) == [(4, 8), (8, 16), (16, 32), (32, 57)]
    assert sum(isinstance(m, nn.BatchNorm1d) for m in keras.modules()) == 6
    drops = [m.p for m in keras.modules() if isinstance(m, nn.Dropout)]
    assert drops == [0.2] * 6
    assert isinstance(keras.decoder[-1], nn.Linear)  # linear output

    torch_seed = make_detector("ae-torch-seed")._build_net(57)
    assert _linears(torch_seed.encoder) == [(57, 128), (128, 64), (64, 32)]
    assert _linears(torch_seed.decoder) == [(32, 64), (64, 128), (128, 57)]
    assert isinstance(torch_seed.decoder[-1], nn.Sigmoid)
    assert make_detector("ae-torch-seed").preprocessing == {"scaling": "standard"}

    trivial = make_detector("ae-adc-trivial")._build_net(57)
    assert _linears(trivial.encoder) == [(57, 8)] and _linears(trivial.decoder) == [(8, 57)]
    assert isinstance(trivial.encoder[-1], nn.ReLU) and isinstance(trivial.decoder[-1], nn.ReLU)

    axol = make_detector("axol1tl-like")
    assert axol.score == "mu2"
    net = axol._build_net(57)
    # The encoder alone is the trigger network: it ends with the 8-dim mu layer.
    assert _linears(net.encoder) == [(57, 28), (28, 15), (15, 8)]
    assert (net.logvar.in_features, net.logvar.out_features) == (15, 8)

    default = make_detector("ae")._build_net(57)
    assert _linears(default.encoder) + _linears(default.decoder) == [(57, 32), (32, 16), (16, 32), (32, 57)]

    svdd = make_detector("deep-svdd")._build_net(57)
    assert all(m.bias is None for m in svdd.modules() if isinstance(m, nn.Linear))


def test_svdd_centre_is_fixed_and_saved(fitted):
    det = fitted["deep-svdd"]
    c = det.net_.center
    assert (c.abs() >= 0.1 - 1e-7).all()
    meta, arrays = det._get_state()
    np.testing.assert_array_equal(arrays["net.center"], c.numpy())


@pytest.mark.parametrize("name", ["ae", "vae", "deep-svdd"])
def test_state_round_trip(fitted, toy_sig, name):
    det = fitted[name]
    meta, arrays = det._get_state()
    assert all(k.startswith("net.") and isinstance(v, np.ndarray) for k, v in arrays.items())
    new = make_detector(name, **FAST)
    new.n_features_in_, new.preprocessor_ = det.n_features_in_, det.preprocessor_
    new.feature_names_in_ = det.feature_names_in_
    new._set_state(meta, arrays)
    np.testing.assert_array_equal(new.score_samples(toy_sig), det.score_samples(toy_sig))


def test_fit_is_reproducible_and_leaves_global_rng_alone(toy_bkg):
    state = torch.get_rng_state()
    a = make_detector("ae", **{**FAST, "epochs": 2}, dropout=0.1).fit(toy_bkg[:600])
    assert torch.equal(torch.get_rng_state(), state)
    b = make_detector("ae", **{**FAST, "epochs": 2}, dropout=0.1).fit(toy_bkg[:600])
    c = make_detector("ae", **{**FAST, "epochs": 2}, dropout=0.1, random_state=1).fit(toy_bkg[:600])
    for (k, va), vb, vc in zip(a.net_.state_dict().items(), b.net_.state_dict().values(), c.net_.state_dict().values()):
        assert torch.equal(va, vb), k
    assert not torch.equal(a.net_.encoder[0].weight, c.net_.encoder[0].weight)


def test_bad_parameters_name_the_parameter(toy_bkg):
    with pytest.raises(ConfigError, match="epochs"):
        make_detector("ae", epochs="ten").fit(toy_bkg[:100])
    with pytest.raises(ConfigError, match="Did you mean 'relu'"):
        make_detector("ae", activation="rellu").fit(toy_bkg[:100])
    with pytest.raises(ConfigError, match="score='elbo' is invalid; expected one of 'recon', 'kl', 'mu2'"):
        make_detector("vae", score="elbo").fit(toy_bkg[:100])
    with pytest.raises(NotFittedError):
        make_detector("ae").encode(toy_bkg[:10])


def test_encode_shapes(fitted, toy_sig):
    assert fitted["ae"].encode(toy_sig).shape == (len(toy_sig), 16)
    assert fitted["vae"].encode(toy_sig).shape == (len(toy_sig), 8)
    assert fitted["deep-svdd"].encode(toy_sig).shape == (len(toy_sig), 16)
    assert fitted["ae"].feature_errors(toy_sig).shape == (len(toy_sig), 57)


def test_fit_resumes_from_a_checkpoint_with_more_epochs(toy_bkg, tmp_path):
    X = toy_bkg[:600]
    params = {**FAST, "dropout": 0.1}
    make_detector("ae", **{**params, "epochs": 2}).fit(X, checkpoint_dir=tmp_path)
    resumed = make_detector("ae", **{**params, "epochs": 4}).fit(X, checkpoint_dir=tmp_path, resume=True)
    straight = make_detector("ae", **{**params, "epochs": 4}).fit(X)
    assert resumed.history_["epoch"] == [1, 2, 3, 4]
    for (k, a), b in zip(straight.net_.state_dict().items(), resumed.net_.state_dict().values()):
        torch.testing.assert_close(b, a, rtol=0, atol=1e-6, msg=k)
    with pytest.raises(Exception, match="different model"):
        make_detector("ae", **{**params, "latent_dim": 4}).fit(X, checkpoint_dir=tmp_path, resume=True)


def test_auto_epochs_keeps_the_optimiser_steps_of_100_epochs_on_200k():
    from hepad.training import auto_epochs

    assert auto_epochs(400) == auto_epochs(200_000) == 100
    assert auto_epochs(400_000) == 50 and auto_epochs(1_000_000) == 20
    assert auto_epochs(10**9) == 3 and auto_epochs(0) == 100
    for name in ("ae", "vae", "deep-svdd", "flow", "ae-qat", "ae-trigger"):
        assert make_detector(name).get_params()["epochs"] == "auto", name


@pytest.mark.parametrize("name", ["ae", "flow"])
def test_epochs_auto_trains_the_epochs_of_its_sample_size(tiny_dataset, monkeypatch, name):
    import hepad
    from hepad import training

    X = hepad.read_events(tiny_dataset["sm_train"])
    # A budget of 3.5 passes over the training part (90 % of X): "auto" must run 4 epochs.
    n_fit = len(X) - round(0.1 * len(X))
    monkeypatch.setattr(training, "AUTO_EPOCH_EVENTS", int(3.5 * n_fit))
    det = make_detector(name, patience=None, lr_patience=None, n_threads=1).fit(X)
    assert len(det.history_["epoch"]) == 4
    assert det.get_params()["epochs"] == "auto"


def test_epochs_rejects_a_word_other_than_auto(toy_bkg):
    with pytest.raises(ConfigError, match="epochs"):
        make_detector("ae", epochs="many").fit(toy_bkg)
