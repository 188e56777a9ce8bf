"""hepad.scoring and `hepad score`: multi-file scoring, partitions, assembly and resume (in-process).

The Dask runs (a real scheduler and workers, a killed worker) are in test_distributed.py.
"""

from __future__ import annotations

import h5py
import numpy as np
import pytest

import hepad
from hepad import scoring as sc

from _scoring_job import make_scoring_job
from hepad.errors import ConfigError, InputError


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    """A saved iforest model and three toy input files of different sizes."""
    d = tmp_path_factory.mktemp("score")
    return (d, *make_scoring_job(d))


def test_scores_match_the_detector_in_input_order(job, tmp_path):
    _, model, files, ref, thr = job
    out = tmp_path / "scores.h5"
    seen = []
    rep = sc.score_files(model, files, out, n_workers=0, partition_size=200, chunk_size=64, progress=seen.append)
    got = sc.read_scores(out)
    assert np.array_equal(got["score"], ref)
    assert got["score"].dtype == np.float32
    assert np.array_equal(got["accept"], (ref > thr).astype(np.uint8))
    sizes = [700, 450, 300]
    assert np.array_equal(got["source_file"], np.repeat([0, 1, 2], sizes))
    assert np.array_equal(got["source_row"], np.concatenate([np.arange(n) for n in sizes]))
    assert got["files"] == [str(p) for p in files]
    assert got["threshold"] == pytest.approx(thr) and got["model_sha256"] == sc.model_sha256(model)
    assert rep.n_events == 1450 and rep.n_accepted == int((ref > thr).sum())
    assert rep.n_partitions == 4 + 3 + 2 and rep.n_skipped == 0
    assert [p.parts_done for p in seen] == list(range(rep.n_partitions + 1))
    assert seen[-1].events_done == 1450
    assert not (tmp_path / ".scores.h5.parts").exists()  # parts removed after assembly


def test_plan_covers_every_row_once(job):
    _, _, files, _, _ = job
    parts = sc.plan_partitions(files, partition_size=300)
    for fi, n in enumerate((700, 450, 300)):
        mine = [p for p in parts if p.file_index == fi]
        assert mine[0].start == 0 and mine[-1].stop == n
        assert all(a.stop == b.start for a, b in zip(mine, mine[1:]))
    assert [p.index for p in parts] == list(range(len(parts)))


def test_resume_skips_finished_parts_and_rescores_stale_ones(job, tmp_path):
    _, model, files, ref, _ = job
    out = tmp_path / "scores.h5"

    class Stop(Exception):
        pass

    def stop_after_3(p):
        if p.parts_done == 3:
            raise Stop

    with pytest.raises(Stop):
        sc.score_files(model, files, out, n_workers=0, partition_size=200, progress=stop_after_3)
    assert not out.exists()
    parts = sorted((tmp_path / ".scores.h5.parts").glob("part-*.h5"))
    assert len(parts) == 3
    # A part scored by another model must not be reused.
    with h5py.File(parts[1], "a") as f:
        f.attrs["model_sha256"] = "0" * 64
    rep = sc.score_files(model, files, out, n_workers=0, partition_size=200)
    assert rep.n_skipped == 2 and rep.n_scored == 1450 - 400
    assert np.array_equal(sc.read_scores(out)["score"], ref)
    # Another partition size plans other ranges: nothing matches, nothing wrong is reused.
    rep = sc.score_files(model, files, out, n_workers=0, partition_size=500, keep_parts=True)
    assert rep.n_skipped == 0
    rep = sc.score_files(model, files, out, n_workers=0, partition_size=500)
    assert rep.n_skipped == rep.n_partitions
    assert np.array_equal(sc.read_scores(out)["score"], ref)


def test_globs_flat_columns_and_errors(job, tmp_path):
    d, model, files, ref, _ = job
    assert sc.expand_files([str(d / "in_*.h5")]) == files
    assert sc.expand_files([files[1], str(d / "in_*.h5")]) == [files[1], files[0], files[2]]
    with pytest.raises(InputError, match="matches no file"):
        sc.expand_files([str(d / "nothing_*.h5")])
    with pytest.raises(InputError, match="no such file. Did you mean .*'in_0.h5'"):
        sc.expand_files([d / "in_O.h5"])
    with pytest.raises(ConfigError, match="chunk_size"):
        sc.score_files(model, files, tmp_path / "x.h5", n_workers=0, chunk_size=0)
    # A flat file with the model's columns plus one more, in another order: columns are matched by name.
    ev = hepad.read_events(files[0])
    names = list(ev.feature_names)
    perm = np.random.default_rng(0).permutation(len(names))
    flat = np.column_stack([ev.flat57[:, perm], np.zeros(len(ev), np.float32)])
    p = tmp_path / "flat.h5"
    hepad.write_events(hepad.EventSet(flat, feature_names=[names[i] for i in perm] + ["extra"]), p)
    sc.score_files(model, [p], tmp_path / "flat_scores.h5", n_workers=0)
    assert np.array_equal(sc.read_scores(tmp_path / "flat_scores.h5")["score"], ref[:700])


def test_cli_score(job, tmp_path):
    from typer.testing import CliRunner

    from hepad.cli import app

    d, model, files, ref, _ = job
    out = tmp_path / "cli.h5"
    res = CliRunner().invoke(app, ["score", str(model), str(d / "in_*.h5"), "-o", str(out), "--workers", "0",
                                   "--partition-size", "400", "--engine", "native"])
    assert res.exit_code == 0, res.output
    assert "1,450 events from 3 file(s)" in res.output
    assert np.array_equal(sc.read_scores(out)["score"], ref)
    res = CliRunner().invoke(app, ["score", str(model), str(files[0]), "-o", str(out), "--engine", "onx"])
    assert res.exit_code != 0 and "onnx" in str(res.exception)


def test_root_entry_ranges_on_real_files(job, real_data, tmp_path):
    """ROOT partitions are entry ranges: two ATLAS open-data trees, mapped to the ADC layout."""
    _, model, _, _, _ = job
    files = [real_data / "data_A.4lep.root", real_data / "data_B.4lep.root"]
    for f in files:
        if not f.is_file():
            pytest.skip(f"{f} is missing from the real-data folder")
    det = hepad.load(model)
    ref = np.concatenate([det.score_samples(hepad.read_events(f)) for f in files])
    rep = sc.score_files(model, files, tmp_path / "root.h5", n_workers=0, partition_size=80)
    assert rep.n_partitions == 1 + 2 and rep.n_events == 39 + 156
    got = sc.read_scores(tmp_path / "root.h5")
    assert np.array_equal(got["score"], ref)
    assert np.array_equal(got["source_row"][39:], np.arange(156))


def test_two_small_files_score_in_process_by_default(job, tmp_path, monkeypatch):
    """No scheduler, no -j: small inputs never start a local cluster (issue 16, Done-when 4)."""
    import hepad.partitions as P

    _, model, files, ref, _ = job

    def no_cluster(*a, **k):
        raise AssertionError("a local Dask cluster was started for 1,150 events")

    monkeypatch.setattr(P, "dask_client", no_cluster)
    rep = sc.score_files(model, files[:2], tmp_path / "s.h5", partition_size=200)
    assert rep.mode == "in-process" and rep.n_partitions == 4 + 3
    np.testing.assert_array_equal(sc.read_scores(tmp_path / "s.h5")["score"], ref[:1150])


def test_local_cluster_rule():
    """A cluster only for several partitions and enough events per core; -j decides when given."""
    big = sc.LOCAL_CLUSTER_MIN_EVENTS_PER_CORE * 4
    assert not sc.use_local_cluster(big - 1, 20, None, cores=4)
    assert sc.use_local_cluster(big, 20, None, cores=4)
    assert not sc.use_local_cluster(big, 1, None, cores=4)  # one partition: nothing to spread
    assert not sc.use_local_cluster(10 * big, 20, None, cores=2)  # two cores: in-process uses both
    assert sc.use_local_cluster(10, 2, 2) and not sc.use_local_cluster(10 * big, 20, 0)


def test_an_exported_onnx_model_scores_like_its_directory(tmp_path):
    """`score` takes the .onnx file `trigger` takes: same scores (ONNX Runtime), same threshold."""
    from hepad._toy import toy_events
    from hepad.export.onnx import export_onnx

    det = hepad.make_detector("ae", hidden_layers=[8], latent_dim=4, epochs=1, n_threads=1).fit(toy_events(800, seed=3))
    det.save(tmp_path / "model")
    export_onnx(det, tmp_path / "model.onnx")
    f = tmp_path / "in.h5"
    hepad.write_events(toy_events(500, "signal", seed=4), f)
    a = sc.score_files(tmp_path / "model", [f], tmp_path / "a.h5", n_workers=0)
    b = sc.score_files(tmp_path / "model.onnx", [f], tmp_path / "b.h5", n_workers=0)
    sa, sb = sc.read_scores(tmp_path / "a.h5"), sc.read_scores(tmp_path / "b.h5")
    np.testing.assert_allclose(sb["score"], sa["score"], rtol=1e-5, atol=1e-6)
    assert sb["threshold"] == pytest.approx(det.threshold_) and b.n_events == a.n_events == 500
    np.testing.assert_allclose(sa["score"], det.score_samples(hepad.read_events(f)), rtol=1e-5, atol=1e-6)


def test_prefetching_reader_gives_the_same_scores_in_order(job):
    """The next chunk is read in a thread while the current one is scored: same scores, same order."""
    from hepad.engine import make_scorer
    from hepad.partitions import score_partition

    _, model, files, ref, _ = job
    scorer = make_scorer(model, threads=1)
    part = sc.plan_partitions(files[:1], partition_size=10_000)[0]
    for chunk in (7, 64, 700, None):
        for readers in (0, 1, 3):
            np.testing.assert_array_equal(score_partition(part, scorer, chunk, readers=readers), ref[:700])


@pytest.fixture(scope="module")
def tiny_ae(tiny_dataset, tmp_path_factory):
    """An AE (ONNX Runtime engine) fitted on the tiny dataset's Pythia background."""
    d = tmp_path_factory.mktemp("tiny_ae")
    det = hepad.make_detector("ae", hidden_layers=[16], latent_dim=4, epochs=2, n_threads=1, random_state=0)
    det.fit(hepad.read_events(tiny_dataset["sm_train"]))
    det.save(d / "model")
    return d / "model", det


def _restored(src, dst, rows, **opts):
    """``src``'s Particles rewritten with stored chunks of ``rows`` events (several per file)."""
    data = hepad.read_events(src).data
    with h5py.File(dst, "w") as f:
        f.create_dataset("Particles", data=data, chunks=(rows, 19, 4), **opts)
    return dst


def test_streamed_scores_equal_the_whole_file_scores(tiny_dataset, tiny_ae, tmp_path):
    """The read-ahead pipeline (blocks across partitions, HDF5 chunks inflated outside h5py)
    gives the scores and counts of scoring each whole file at once, for every stored layout."""
    from hepad.engine import make_scorer

    model, det = tiny_ae
    names = ("sm_test", "ato4l", "hplus-taunu")
    layouts = {"as written": None, "gzip, 32-event chunks": dict(compression="gzip"),
               "raw, 32-event chunks": {}, "shuffle+gzip": dict(compression="gzip", shuffle=True)}
    whole = make_scorer(model, threads=1)
    for layout, opts in layouts.items():
        files = [tiny_dataset[n] if opts is None else _restored(tiny_dataset[n], tmp_path / f"{n}.h5", 32, **opts)
                 for n in names]
        ref = np.concatenate([whole(hepad.read_events(f)) for f in files])
        for chunk, part in ((None, 250_000), (None, 45), (7, 64)):
            out = tmp_path / "s.h5"
            rep = sc.score_files(model, files, out, n_workers=0, chunk_size=chunk, partition_size=part, resume=False)
            got = sc.read_scores(out)
            if chunk is None and part > 200:  # one engine call per file, as the reference: bit for bit
                assert np.array_equal(got["score"], ref), layout
            else:  # other batch sizes: ONNX Runtime's sums may round differently in the last bit
                np.testing.assert_allclose(got["score"], ref, rtol=1e-6, atol=0, err_msg=f"{layout} {chunk} {part}")
            s = got["score"]
            assert rep.n_events == len(ref) == 200 + 200 + 60 and rep.n_accepted == int((s > det.threshold_).sum())
            assert np.array_equal(got["accept"], (s > det.threshold_).astype(np.uint8))
            assert np.array_equal(got["source_row"], np.concatenate([np.arange(n) for n in (200, 200, 60)]))
    np.testing.assert_allclose(ref, det.score_samples(np.concatenate(
        [hepad.read_events(f).features for f in files])), rtol=1e-5, atol=1e-6)
    ev = hepad.read_events(files[0])  # the column-wise layout of the model inputs
    assert np.array_equal(ev.features, ev.data[:, :, :3].reshape(len(ev), 57))


@pytest.mark.parametrize("row, col, value", [(0, 0, np.nan), (77, 3, 2.5), (199, 1, -11.0)])
def test_a_planted_bad_event_stops_the_streamed_job_with_no_output(tiny_dataset, tiny_ae, tmp_path, row, col, value):
    """Every event is validated on the fast path too: one bad value anywhere (first row, a
    middle chunk, the last row of the last chunk) fails the job like read_events, no output."""
    from hepad.errors import InvalidValuesError

    model, _ = tiny_ae
    data = hepad.read_events(tiny_dataset["sm_test"]).data.copy()
    data[row, 5 if col != 3 else 9, col] = value
    p = tmp_path / "bad.h5"
    with h5py.File(p, "w") as f:
        f.create_dataset("Particles", data=data, chunks=(32, 19, 4), compression="gzip")
    with pytest.raises(InvalidValuesError) as expected:
        hepad.read_events(p)
    out = tmp_path / "s.h5"
    for chunk in (None, 16):
        with pytest.raises(InvalidValuesError, match=r"bad\.h5: 1 of [\d,]+ events hold invalid values") as got:
            sc.score_files(model, [tiny_dataset["sm_val"], p], out, n_workers=0, chunk_size=chunk, partition_size=64)
        assert str(got.value).split(": 1 of")[1].split("events")[1] == str(expected.value).split(": 1 of")[1].split("events")[1]
        assert not out.exists()
