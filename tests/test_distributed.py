"""hepad.distributed and Dask scoring: a real scheduler and workers on loopback, a killed
worker, an interrupted client, and histogram-based evaluation checked against exact metrics."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import hepad
from hepad import metrics as M
from hepad import scoring as sc
from hepad._toy import toy_events

from _scoring_job import make_scoring_job
from hepad.distributed import DistributedError, dask_client, metrics_from_histograms
from hepad.distributed import evaluate_files_by_histogram as evaluate_files

DASK = Path(sys.executable).with_name("dask")


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    d = tmp_path_factory.mktemp("dist")
    model, files, ref, _ = make_scoring_job(d)
    return d, model, files, ref


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """`dask scheduler` and two `dask worker` processes (no nanny) on 127.0.0.1."""
    if not DASK.exists():
        pytest.skip(f"the dask command line is not installed next to {sys.executable}")
    d = tmp_path_factory.mktemp("cluster")
    sfile = d / "scheduler.json"
    log = open(d / "cluster.log", "w")
    common = dict(stdout=log, stderr=subprocess.STDOUT, cwd=d)
    procs = {"scheduler": subprocess.Popen(
        [DASK, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard", "--scheduler-file", sfile], **common
    )}
    try:
        t0 = time.monotonic()
        while not sfile.exists():
            if time.monotonic() - t0 > 60 or procs["scheduler"].poll() is not None:
                pytest.fail(f"the Dask scheduler did not start; see {d / 'cluster.log'}")
            time.sleep(0.2)
        for name in ("w0", "w1"):
            # The preload imports hepad's detectors while the workers start, not on their first task.
            procs[name] = subprocess.Popen(
                [DASK, "worker", "--scheduler-file", sfile, "--nthreads", "1", "--no-nanny", "--no-dashboard",
                 "--name", name, "--local-directory", d / name, "--preload", "hepad.detectors.classical"], **common
            )
        from distributed import Client

        with Client(scheduler_file=str(sfile), timeout="60s") as c:
            c.wait_for_workers(2, timeout=120)
        yield {"file": sfile, "procs": procs, "address": json.loads(sfile.read_text())["address"]}
    finally:
        # Test processes hold nothing worth a graceful close; SIGKILL spares seconds of teardown.
        for p in procs.values():
            if p.poll() is None:
                p.kill()
        for p in procs.values():
            p.wait()
        log.close()


def test_cluster_scores_equal_single_process(job, cluster, tmp_path):
    _, model, files, ref = job
    rep = sc.score_files(model, files, tmp_path / "a.h5", scheduler=cluster["address"], partition_size=200)
    assert rep.mode == "dask" and rep.n_workers == 2
    got = sc.read_scores(tmp_path / "a.h5")
    assert np.array_equal(got["score"], ref)  # identical, in input order
    assert np.array_equal(got["source_file"], np.repeat([0, 1, 2], [700, 450, 300]))
    # The model was rebuilt on the workers from shipped bytes, once per worker.
    from distributed import Client

    with Client(scheduler_file=str(cluster["file"])) as c:
        cached = c.run(lambda: sorted(k[0] for k in __import__("hepad.partitions").partitions._MODELS))
    assert any(v == [rep.model_sha256] for v in cached.values())


def test_interrupted_client_resumes(job, cluster, tmp_path):
    _, model, files, ref = job

    class Stop(Exception):
        pass

    def stop_after_4(p):
        if p.parts_done == 4:
            raise Stop

    out = tmp_path / "b.h5"
    with pytest.raises(Stop):
        sc.score_files(model, files, out, scheduler=str(cluster["file"]), partition_size=100, progress=stop_after_4)
    rep = sc.score_files(model, files, out, scheduler=str(cluster["file"]), partition_size=100)
    assert rep.n_skipped == 4 and rep.n_partitions == 7 + 5 + 3
    assert np.array_equal(sc.read_scores(out)["score"], ref)


def test_killed_worker_still_completes(job, cluster, tmp_path):
    """Kill a worker after the first partitions finish: Dask reruns its partitions elsewhere."""
    _, model, files, ref = job
    victim = cluster["procs"]["w1"]
    killed_at = []

    def kill_one(p):
        if p.parts_done == 2 and not killed_at:
            victim.kill()
            victim.wait()
            killed_at.append(p.parts_done)

    out = tmp_path / "c.h5"
    rep = sc.score_files(model, files, out, scheduler=str(cluster["file"]), partition_size=50, progress=kill_one)
    assert killed_at == [2] and rep.n_partitions == 14 + 9 + 6  # killed with 27 partitions to go
    assert np.array_equal(sc.read_scores(out)["score"], ref)


def test_bad_scheduler_is_a_clear_error(tmp_path):
    with pytest.raises(DistributedError, match="scheduler file"):
        with dask_client(scheduler=tmp_path / "missing.json"):
            pass


# ---------------------------------------------------------------------- histogram metrics
def test_histogram_metrics_equal_exact_on_full_resolution():
    rng = np.random.default_rng(1)
    b = np.round(rng.normal(0, 1, 4000), 2)  # rounded: many ties, handled as in hepad.metrics
    s = np.round(rng.normal(1.2, 1, 800), 2)
    edges = np.concatenate([[-np.inf], np.unique(np.r_[b, s]), [np.inf]])
    count = lambda x: np.bincount(np.searchsorted(edges, x, side="left") - 1, minlength=edges.size - 1)
    res = metrics_from_histograms(count(b), count(s), edges, fprs=(1e-2, 1e-3))
    y, x = np.r_[np.zeros(b.size), np.ones(s.size)], np.r_[b, s]
    assert res["auc"] == pytest.approx(M.roc_auc(y, x), abs=1e-12)
    for wp, exact in zip(res["working_points"], M.tpr_at_fpr(y, x, (1e-2, 1e-3))):
        assert wp["threshold"] == exact.threshold and wp["tpr"] == exact.tpr and wp["fpr"] == exact.fpr
        assert wp["n_background_pass"] == exact.n_background_pass
    assert res["max_sic"]["sic"] == pytest.approx(M.max_sic(y, x).sic, rel=1e-12)


@pytest.fixture(scope="module")
def eval_files(job):
    d = job[0]
    bkg = []
    for i in range(2):
        p = d / f"bkg_{i}.h5"
        hepad.write_events(toy_events(2500, seed=60 + i), p)
        bkg.append(p)
    sig = d / "sig.h5"
    hepad.write_events(toy_events(600, "signal", seed=70), sig)
    return bkg, sig


def test_evaluate_files_against_exact_metrics(job, eval_files):
    _, model, _, _ = job
    bkg, sig = eval_files
    res = evaluate_files(model, bkg, {"toy": [sig]}, n_workers=0, partition_size=1000, bins=256, sketch_size=2000)
    det = hepad.load(model)
    b = np.concatenate([det.score_samples(hepad.read_events(p)) for p in bkg])
    s = det.score_samples(hepad.read_events(sig))
    y, x = np.r_[np.zeros(b.size), np.ones(s.size)], np.r_[b, s]
    r = res["signals"]["toy"]
    exact_auc = M.roc_auc(y, x)
    assert abs(r["auc"] - exact_auc) <= r["auc_error_bound"] + 1e-12
    assert r["auc_error_bound"] < 0.01
    for wp, exact in zip(r["working_points"], M.tpr_at_fpr(y, x)):
        assert wp["exact"] and wp["threshold"] == exact.threshold and wp["tpr"] == exact.tpr
    assert r["n_background"] == 5000 and r["n_signal"] == 600
    assert r["max_sic"]["sic"] <= M.max_sic(y, x).sic + 1e-9


def test_evaluate_files_on_the_cluster_equals_in_process(job, eval_files, cluster):
    _, model, _, _ = job
    bkg, sig = eval_files
    kw = dict(partition_size=1000, bins=256, sketch_size=2000)
    local = evaluate_files(model, bkg, {"toy": [sig]}, n_workers=0, **kw)
    remote = evaluate_files(model, bkg, {"toy": [sig]}, scheduler=cluster["address"], **kw)
    assert remote == local
