"""Fixed-point types from data, the planted hard case, resource estimates, and the export's errors.

The planted case: the generator's tiny events with every pT in MeV and every eta in
milli-units, so the feature spreads run from 1e-4 to 2.5e4. Folding the scaling into the first
layer turns that into weights from 1e-4 to 1e4 that no 16-bit type holds; the scaling as its own
layer with types sized on the events exports it exactly.
"""

from __future__ import annotations

import numpy as np
import pytest

import hepad
from hepad.errors import ConfigError, DependencyError
from hepad.export._precision import choose_types, int_bits, profile_network, type_range
from _cli import cli_run


def _plant(events) -> np.ndarray:
    X = events.features.astype(np.float32).copy()
    X[:, 0::3] *= 1000.0  # every pT in MeV
    X[:, 4::3] *= 1e-3  # every eta but MET's (always 0) in milli-units
    return X


@pytest.fixture(scope="module")
def planted(tiny_dataset):
    tr, va, te = (_plant(hepad.read_events(tiny_dataset[n])) for n in ("sm_train", "sm_val", "sm_test"))
    det = hepad.make_detector("ae", epochs=30, batch_size=64, n_threads=1, random_state=0).fit(tr, X_val=va)
    return det, va, te


def test_int_bits_hold_the_range():
    for amax in (0.3, 1.0, 1.5, 31.9, 32.0, 1000.0):
        i = int_bits(amax)
        assert type_range(f"ap_fixed<16,{i}>") > amax >= type_range(f"ap_fixed<16,{i - 1}>") / 2 or amax < 1
    assert int_bits(5.0, headroom_bits=2) == int_bits(5.0) + 2


def test_planted_spreads_fold_blows_up_the_first_layer(planted):
    """The root cause, without a compile: folded weights span 1/spread; the scaling layer keeps them O(1)."""
    from hepad.export.hls import fpga_network

    det, va, _ = planted
    spreads = va.std(axis=0)
    assert spreads[spreads > 0].max() / spreads[spreads > 0].min() > 1e6
    folded = fpga_network(det, scaling="fold").net[0].weight.detach().abs().numpy()
    layered = fpga_network(det).net[1].weight.detach().abs().numpy()
    assert folded.max() / folded[folded > 0].min() > 1e6
    assert layered.max() < 10


def test_planted_spreads_export_at_default_settings(planted, tmp_path):
    from hepad.export import export_hls

    det, va, te = planted
    hm = export_hls(det, tmp_path / "prj", data=va)
    ref = det.score_samples(te).astype(np.float64)
    got = hm.predict(te).astype(np.float64)
    assert np.corrcoef(ref, got)[0, 1] >= 0.999
    # The input type resolves the milli-unit eta and holds the MeV pT.
    w, i = (int(v) for v in hm.types["input"]["result"].split("<")[1].split(",")[:2])
    assert 2 ** (i - 1) > np.abs(va).max() and 2.0 ** -(w - i) < 1e-4
    assert hm.estimate.source == "estimate (analytic)"


@pytest.mark.slow
def test_planted_spreads_uniform_fold_fails_naming_the_layer(planted, tmp_path):
    """The old export (folded scaling, one ap_fixed<16,6>) departs, and the check says where."""
    from hepad.export import export_hls
    from hepad.export._parity import HLSParityError

    det, va, te = planted
    hm = export_hls(det, tmp_path / "prj", data=va, precision="ap_fixed<16,6>", scaling="fold")
    rep = hm.parity(det, te, fraction=0.05)
    assert rep.correlation < 0.999
    with pytest.raises(HLSParityError, match=r"layer input \(input\) saturates: .* --precision auto"):
        rep.check()


def test_choose_types_follow_the_budget_and_headroom(planted):
    from hepad.export._network import _host_inputs, fpga_network

    det, va, _ = planted
    plan = fpga_network(det)
    prof = profile_network(plan.net, _host_inputs(plan, va)[0])
    t12 = choose_types(prof, total_bits=12, headroom_bits=0)
    t16 = choose_types(prof, total_bits=16, headroom_bits=2)
    for p in prof[1:]:
        w12, i12 = (int(v) for v in t12[p.name]["result"].split("<")[1].split(",")[:2])
        w16, i16 = (int(v) for v in t16[p.name]["result"].split("<")[1].split(",")[:2])
        assert (w12, w16) == (12, 16)
        assert i16 == i12 + 2
        assert type_range(t12[p.name]["result"]) > p.bkg_max  # nothing overflows on the background


def test_estimate_scales_with_reuse_factor(planted):
    from hepad.export._resources import estimate_resources
    from hepad.export.hls import _uniform_types, fpga_network

    det, *_ = planted
    plan = fpga_network(det)
    types = _uniform_types(plan, "ap_fixed<16,6>", "ap_fixed<18,13>")
    e1 = estimate_resources(plan.net, types, reuse_factor=1)
    e4 = estimate_resources(plan.net, types, reuse_factor=4)
    assert e1.dsp > 0 and e4.dsp < e1.dsp and e4.latency_cycles > e1.latency_cycles
    narrow = estimate_resources(plan.net, _uniform_types(plan, "ap_fixed<8,4>", "ap_fixed<10,6>"))
    assert narrow.dsp < e1.dsp  # 8-bit products go to LUTs


# ---------------------------------------------------------------------- errors: one line, what to do
def test_non_exportable_detector_is_one_line(tmp_path, tiny_dataset):
    from hepad.export import export_hls

    det = hepad.make_detector("mahalanobis").fit(hepad.read_events(tiny_dataset["sm_train"]))
    with pytest.raises(ConfigError, match="only torch detectors export to hls4ml") as err:
        export_hls(det, tmp_path / "prj")
    assert "\n" not in str(err.value)
    assert not (tmp_path / "prj").exists()


@pytest.mark.parametrize("bad", ["ap_fixed<16>", "fixed<16,6>", "ap_fixed<80,6>"])
def test_bad_precision_string_is_one_line(bad, planted, tmp_path):
    from hepad.export import export_hls

    det, *_ = planted
    with pytest.raises(ConfigError, match="ap_fixed<W,I>|total bits") as err:
        export_hls(det, tmp_path / "prj", precision=bad, compile=False)
    assert "\n" not in str(err.value)


def test_precision_hls4ml_rejects_is_one_line(planted, tmp_path):
    """A type our parser accepts but hls4ml cannot build (a bogus rounding mode)."""
    from hepad.export import export_hls
    det, *_ = planted
    with pytest.raises(ConfigError, match="not a type hls4ml accepts .*BOGUS.*AP_RND_CONV") as err:
        export_hls(det, tmp_path / "prj", precision="ap_fixed<16,6,AP_BOGUS,AP_SAT>", compile=False)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "prj").exists()


def test_missing_compiler_is_one_line(planted, tmp_path, monkeypatch):
    from hepad.export import export_hls

    det, *_ = planted
    monkeypatch.setenv("PATH", str(tmp_path))  # no g++ there
    with pytest.raises(DependencyError, match="apt-get install g\\+\\+.*--no-compile") as err:
        export_hls(det, tmp_path / "prj")
    assert "\n" not in str(err.value)
    assert not (tmp_path / "prj").exists()


# ---------------------------------------------------------------------- CLI (no compile: seconds)
def test_cli_export_hls_prints_the_estimate_table(planted, tmp_path, monkeypatch, capsys, tiny_dataset):
    det, *_ = planted
    det.save(tmp_path / "model")
    code, out, err = cli_run(monkeypatch, capsys, "export", "hls", tmp_path / "model", "-o", tmp_path / "prj",
                          "--no-compile", "--reuse-factor", "2")
    assert code == 0, err
    assert "estimate (analytic)" in out and "DSP" in out and "latency" in out
    assert (tmp_path / "prj" / "hepad_trigger.json").is_file()
    code, out, err = cli_run(monkeypatch, capsys, "export", "hls", tmp_path / "model", "-o", tmp_path / "prj2",
                          "--no-compile", "--precision", "ap_fixed<16,6,AP_BOGUS>")
    assert code != 0 and "not a type hls4ml accepts" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "prj2").exists()


@pytest.mark.slow
def test_precision_scan_rows_per_design_and_signal(planted, tmp_path, tiny_dataset):
    from hepad.export import precision_scan

    det, va, te = planted
    sig = _plant(hepad.read_events(tiny_dataset["ato4l"]))
    rows = precision_scan(det, te, {"ato4l": sig}, tmp_path, total_bits=(10, 16), data=va, fpr=0.05)
    assert [(r["precision"], r["signal"]) for r in rows] == [("auto<10>", "ato4l"), ("auto<16>", "ato4l")]
    assert rows[1]["corr"] >= rows[0]["corr"] - 1e-6 and rows[1]["corr"] >= 0.999
    assert rows[0]["dsp"] < rows[1]["dsp"]
    assert all(r["auc_float"] == rows[0]["auc_float"] for r in rows)
