"""The output policy of every command (issue 11, items 1-5, 9, 11, 13).

An output is never an input, is replaced only with --force, is validated before any work, is
locked against a second run, and nothing is left behind when a command fails. Ctrl-C exits 130
with one line saying what was kept. Events are the generator's tiny dataset.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from pathlib import Path

import h5py
import numpy as np
import pytest

import hepad
from hepad._outputs import check_output, output_lock, writing
from _cli import cli, one_error_line
from hepad.errors import OutputError


def tree(d: Path) -> list[str]:
    return sorted(str(p.relative_to(d)) for p in d.rglob("*"))


@pytest.fixture(scope="module")
def work(tmp_path_factory, tiny_dataset):
    """A trained model and copies of the tiny dataset's test files (never the cached originals)."""
    d = tmp_path_factory.mktemp("outputs")
    for name in ("sm_test", "ato4l"):
        shutil.copy(tiny_dataset[name], d / f"{name}.h5")
    hepad.train("mahalanobis", tiny_dataset["sm_train"], output=d / "model")
    return d


@contextlib.contextmanager
def unwritable(folder: Path):
    """Make ``folder`` unwritable, also for root (chattr +i), or skip."""
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(folder)]).returncode != 0:
            pytest.skip("running as root without chattr: cannot make a folder unwritable")
        try:
            yield folder
        finally:
            subprocess.run(["chattr", "-i", str(folder)])
    else:
        folder.chmod(0o555)
        try:
            yield folder
        finally:
            folder.chmod(0o755)


# ------------------------------------------------------------------ item 1: output == input
@pytest.mark.parametrize("variant", ["same", "dot", "among-several", "symlink"])
def test_score_refuses_to_write_over_an_input(capsys, work, tmp_path, variant):
    ev = tmp_path / "x.h5"
    shutil.copy(work / "sm_test.h5", ev)
    before = ev.read_bytes()
    out = {"same": ev, "dot": tmp_path / "." / "x.h5", "among-several": ev, "symlink": tmp_path / "link.h5"}[variant]
    if variant == "symlink":
        out.symlink_to(ev)
    inputs = [work / "ato4l.h5", ev] if variant == "among-several" else [ev]
    code, _, err = cli(capsys, "score", work / "model", *inputs, "-o", out)
    assert code == 1
    assert "is also an input" in one_error_line(err)
    assert ev.read_bytes() == before  # the events are intact
    assert not list(tmp_path.glob(".*"))  # no parts folder, no lock left


def test_score_refuses_an_output_inside_the_model_folder(capsys, work):
    before = tree(work / "model")
    code, _, err = cli(capsys, "score", work / "model", work / "sm_test.h5", "-o", work / "model" / "s.h5")
    assert code == 1 and "inside the input folder" in one_error_line(err)
    assert tree(work / "model") == before
    hepad.load(work / "model")  # still loads


# ------------------------------------------------------------------ item 3: export onnx onto an event file
def test_export_onnx_does_not_overwrite_an_existing_file(capsys, work, tmp_path):
    pytest.importorskip("onnx")
    ev = tmp_path / "ev.h5"
    shutil.copy(work / "sm_test.h5", ev)
    before = ev.read_bytes()
    code, _, err = cli(capsys, "export", "onnx", work / "model", "-o", ev)
    assert code == 1 and "exists; pass --force" in one_error_line(err)
    assert ev.read_bytes() == before
    code, _, err = cli(capsys, "export", "onnx", work / "model", "-o", tmp_path)
    assert code == 1 and "is a folder" in one_error_line(err)


# ------------------------------------------------------------------ item 4: generate over an existing file
def test_generate_refuses_an_existing_file_without_force(capsys, work, tmp_path):
    target = tmp_path / "existing.h5"
    shutil.copy(work / "ato4l.h5", target)
    before = target.read_bytes()
    code, _, err = cli(capsys, "generate", "w", "-n", "5", "-o", target, "-j", "0")
    assert code == 1 and "exists; pass --force" in one_error_line(err)
    assert target.read_bytes() == before
    assert not list(tmp_path.glob(".*"))


# ------------------------------------------------------------------ item 5: evaluate into the model
@pytest.mark.parametrize("where", ["model", "inside"])
def test_evaluate_never_writes_into_a_model_folder(capsys, work, where):
    out = work / "model" if where == "model" else work / "model" / "eval"
    before = tree(work / "model")
    code, _, err = cli(capsys, "evaluate", work / "model", "-b", work / "sm_test.h5", "-s", work / "ato4l.h5",
                       "-o", out, "--no-plots", "--force")
    assert code == 1, err
    one_error_line(err)
    assert tree(work / "model") == before
    hepad.load(work / "model")


def test_evaluate_into_another_model_folder_is_refused_even_with_force(capsys, work, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(work / "model", other)
    code, _, err = cli(capsys, "evaluate", work / "model", "-b", work / "sm_test.h5", "-s", work / "ato4l.h5",
                       "-o", other, "--no-plots", "--force")
    assert code == 1 and "is a hepad model folder" in one_error_line(err)
    hepad.load(other)


def test_train_replaces_a_model_only_with_force(capsys, work, tiny_dataset, tmp_path):
    out = tmp_path / "m"
    shutil.copytree(work / "model", out)
    args = ["train", "-d", "mahalanobis", "--data", tiny_dataset["sm_train"], "-o", out]
    code, _, err = cli(capsys, *args)
    assert code == 1 and "exists; pass --force" in one_error_line(err)
    code, _, err = cli(capsys, *args, "--force")
    assert code == 0, err
    hepad.load(out)


# ------------------------------------------------------------------ item 11: bad output locations
def _write_commands(work: Path, out: Path) -> dict[str, list]:
    m, bkg, sig = work / "model", work / "sm_test.h5", work / "ato4l.h5"
    return {
        "score": ["score", m, bkg, "-o", out / "s.h5"],
        "convert": ["convert", bkg, out / "c.parquet"],
        "train": ["train", "-d", "mahalanobis", "--data", bkg, "-o", out / "m"],
        "evaluate": ["evaluate", m, "-b", bkg, "-s", sig, "-o", out / "e", "--no-plots"],
        "compare": ["compare", m, "-b", bkg, "-s", sig, "-o", out / "c", "--no-plots"],
        "export-onnx": ["export", "onnx", m, "-o", out / "m.onnx"],
        "trigger": ["trigger", m, "--source", f"replay:{bkg}", "-o", out / "t"],
        "generate": ["generate", "w", "-n", "5", "-o", out / "g.h5", "-j", "0"],
    }


@pytest.mark.parametrize("command", list(_write_commands(Path("."), Path("."))))
def test_unwritable_output_folder_is_one_clean_line_naming_the_folder(capsys, work, tmp_path, command):
    ro = tmp_path / "ro"
    with unwritable(ro):
        code, _, err = cli(capsys, *_write_commands(work, ro)[command])
    assert code == 1, err
    line = one_error_line(err)
    assert str(ro) in line and "cannot write" in line and ".tmp" not in line
    assert list(ro.iterdir()) == []


@pytest.mark.parametrize("command", list(_write_commands(Path("."), Path("."))))
def test_output_under_a_regular_file_is_refused_and_nothing_is_created(capsys, work, tmp_path, command):
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a folder")
    code, _, err = cli(capsys, *_write_commands(work, blocker / "sub")[command])
    assert code == 1, err
    assert "is a file, not a folder" in one_error_line(err)
    assert tree(tmp_path) == ["file.txt"]


@pytest.mark.parametrize("command", ["evaluate", "trigger"])
def test_a_file_as_output_folder_is_refused(capsys, work, tmp_path, command):
    f = tmp_path / "out.h5"
    f.write_bytes(b"x")
    args = _write_commands(work, tmp_path)[command]
    args[args.index("-o") + 1] = f
    code, _, err = cli(capsys, *args)
    assert code == 1 and "is a file; the" in one_error_line(err)
    assert f.read_bytes() == b"x"


def test_val_file_with_another_feature_count_is_one_line(capsys, work, tmp_path, real_data):
    code, _, err = cli(capsys, "train", "-d", "mahalanobis", "--data", work / "sm_test.h5",
                       "--val", real_data / "Zmumu_Run2011A.csv", "-o", tmp_path / "m")
    assert code == 1, err
    line = one_error_line(err)
    assert "Zmumu_Run2011A.csv" in line and "57" in line
    assert tree(tmp_path) == []


# ------------------------------------------------------------------ item 13: leftovers
def test_failed_score_leaves_no_parts_folder_and_no_parents(capsys, work, tmp_path):
    bad = tmp_path / "bad.h5"
    with h5py.File(bad, "w") as f:  # a file of another feature count: the model refuses it
        f["data"] = np.ones((50, 7), np.float32)
    out = tmp_path / "new" / "deeper" / "s.h5"
    code, _, err = cli(capsys, "score", work / "model", bad, "-o", out)
    assert code == 1, err
    one_error_line(err)
    assert tree(tmp_path) == ["bad.h5"]


@pytest.mark.parametrize("command", ["score", "evaluate"])
def test_a_folder_as_input_says_so(capsys, work, tmp_path, command):
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir.csv").write_text("a\n1\n")
    if command == "score":
        args = ["score", work / "model", tmp_path / "dir", "-o", tmp_path / "s.h5"]
    else:
        args = ["evaluate", work / "model", "-b", tmp_path / "dir", "-s", work / "ato4l.h5", "-o", tmp_path / "e"]
    code, _, err = cli(capsys, *args)
    line = one_error_line(err)
    assert code == 1 and "is a folder" in line and "dir.csv" not in line


# ------------------------------------------------------------------ item 9: Ctrl-C
def test_ctrl_c_during_score_exits_130_and_the_rerun_resumes(capsys, work, tmp_path, monkeypatch):
    import hepad.scoring as sc

    out = tmp_path / "s.h5"
    args = ["score", work / "model", work / "sm_test.h5", work / "ato4l.h5", "-o", out, "-j", "0",
            "--partition-size", "50"]
    real = sc._assemble

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(sc, "_assemble", interrupted)
    code, _, err = cli(capsys, *args)
    assert code == 130
    (line,) = err.strip().splitlines()
    assert "interrupted" in line and "resume" in line and ".s.h5.parts" in line
    assert not out.exists()
    monkeypatch.setattr(sc, "_assemble", real)
    code, outp, err = cli(capsys, *args)
    assert code == 0, err
    assert "resumed" in outp
    det = hepad.load(work / "model")
    ref = np.concatenate([det.score_samples(hepad.read_events(work / f)) for f in ("sm_test.h5", "ato4l.h5")])
    np.testing.assert_allclose(sc.read_scores(out)["score"], ref, rtol=1e-5)


def test_ctrl_c_during_train_exits_130_with_one_line(capsys, work, tmp_path, monkeypatch):
    import hepad.api

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(hepad.api, "train", interrupted)
    code, _, err = cli(capsys, "train", "-d", "mahalanobis", "--data", work / "sm_test.h5", "-o", tmp_path / "a" / "m")
    assert code == 130
    (line,) = err.strip().splitlines()
    assert line.startswith("hepad: interrupted;") and "nothing was written" in line
    assert tree(tmp_path) == []


# ------------------------------------------------------------------ the lock (item 2's mechanism)
def test_a_locked_output_is_refused_with_the_owner(capsys, work, tmp_path):
    out = tmp_path / "s.h5"
    with output_lock(out):
        code, _, err = cli(capsys, "score", work / "model", work / "sm_test.h5", "-o", out)
        assert code == 1
        line = one_error_line(err)
        assert "another hepad run" in line and f"pid {os.getpid()}" in line
    assert not (tmp_path / ".s.h5.lock").exists()
    code, _, err = cli(capsys, "score", work / "model", work / "sm_test.h5", "-o", out)
    assert code == 0, err


def test_a_killed_run_leaves_no_stale_lock(tmp_path):
    import sys

    out = tmp_path / "x.h5"
    code = ("import os, sys; sys.path.insert(0, sys.argv[2]); from hepad._outputs import output_lock\n"
            "with output_lock(sys.argv[1]):\n    os.kill(os.getpid(), 9)\n")
    src = str(Path(hepad.__file__).parents[1])
    subprocess.run([sys.executable, "-c", code, str(out), src])
    assert (tmp_path / ".x.h5.lock").exists()  # the file stays, but the kernel released the lock
    with output_lock(out):
        pass


# ------------------------------------------------------------------ the policy function itself
def test_check_output_rules(tmp_path):
    f = tmp_path / "a.h5"
    f.write_bytes(b"1")
    d = tmp_path / "d"
    d.mkdir()
    (d / "in.h5").write_bytes(b"1")
    with pytest.raises(OutputError, match="also an input"):
        check_output(tmp_path / "x" / ".." / "a.h5", inputs=[f], force=True)
    with pytest.raises(OutputError, match="holds the input"):
        check_output(d, kind="dir", inputs=[d / "in.h5"], force=True)
    with pytest.raises(OutputError, match="exists; pass --force"):
        check_output(f)
    assert check_output(f, force=True) == f
    with pytest.raises(OutputError, match=r"exists; pass --force \(force=True in Python\) to write into it"):
        check_output(d, kind="dir")
    assert check_output(tmp_path / "new" / "deep" / "x.h5") == tmp_path / "new" / "deep" / "x.h5"
    assert not (tmp_path / "new").exists()  # checking creates nothing


def test_writing_removes_what_a_failed_run_created(tmp_path):
    out = tmp_path / "a" / "b" / "out"
    with pytest.raises(RuntimeError), writing(out, kind="dir"):
        out.mkdir()
        (out / "half.json").write_text("{}")
        raise RuntimeError("boom")
    assert tree(tmp_path) == []
    parts = tmp_path / "p" / ".s.h5.parts"
    with pytest.raises(KeyboardInterrupt), writing(tmp_path / "p" / "s.h5", leftovers=[parts]):
        parts.mkdir()
        (parts / "part-0.h5").write_bytes(b"resume data")
        raise KeyboardInterrupt
    assert tree(tmp_path) == ["p", "p/.s.h5.parts", "p/.s.h5.parts/part-0.h5"]  # resume data kept


# ------------------------------------------------------------------ item 2: two generate runs, one output
def test_generate_into_a_locked_output_is_refused(capsys, tmp_path):
    out = tmp_path / "w.h5"
    with output_lock(out):  # run A holds the output
        code, _, err = cli(capsys, "generate", "w", "-n", "5", "-o", out, "-j", "0", "--seed", "2")
    assert code == 1
    assert "another hepad run" in one_error_line(err)
    assert not out.exists() and not (tmp_path / ".w.h5.parts").exists()


def test_generate_merge_refuses_a_chunk_of_another_run(capsys, tmp_path, monkeypatch):
    """What happened when two runs shared a parts folder: B's chunk (seed 2) replaced A's (seed 1)
    under the same name; A merged it and claimed "seed 1". The merge now checks each chunk's key."""
    import dataclasses

    from hepad.generate import _engine

    real = _engine.execute_chunk

    def concurrent_b(spec):
        stats = real(spec)
        real(dataclasses.replace(spec, seed=spec.seed + 1))  # run B writes the same chunk file
        return stats

    monkeypatch.setattr(_engine, "execute_chunk", concurrent_b)
    out = tmp_path / "w.h5"
    code, _, err = cli(capsys, "generate", "w", "-n", "5", "-o", out, "-j", "0", "--seed", "1")
    assert code == 1
    line = one_error_line(err)
    assert "belongs to another generation run" in line and "w-00000.h5" in line
    assert not out.exists()


def test_report_rewrites_its_own_folder_report_but_not_another_file(capsys, work, tmp_path):
    ev = tmp_path / "eval"
    code, _, err = cli(capsys, "evaluate", work / "model", "-b", work / "sm_test.h5", "-s", work / "ato4l.h5",
                       "-o", ev, "--no-plots", "--no-tsne")
    assert code == 0, err
    for _ in range(2):  # FOLDER/report.html is derived from the folder: rewritten freely
        code, _, err = cli(capsys, "report", ev)
        assert code == 0, err
    other = tmp_path / "talk.html"
    other.write_text("my slides")
    code, _, err = cli(capsys, "report", ev, "-o", other)
    assert code == 1 and "exists; pass --force" in one_error_line(err)
    assert other.read_text() == "my slides"
    code, _, err = cli(capsys, "report", ev, "-o", other, "--force")
    assert code == 0 and "<html" in other.read_text().lower()
    code, _, err = cli(capsys, "report", ev, "-o", ev / "metrics.json", "--force")
    assert code == 1 and "is also an input" in one_error_line(err)


def test_a_second_dataset_build_into_one_folder_is_refused(capsys, tmp_path):
    """Two `dataset build` into one folder: the second stops with one line instead of dying on
    the first run's chunks ("internal error: FileNotFoundError") and leaving a chunk behind."""
    with output_lock(tmp_path / "sm_train.h5"):  # the first build is writing sm_train.h5
        code, _, err = cli(capsys, "dataset", "build", "--size", "tiny", "--dir", tmp_path, "-j", "0")
    assert code == 1
    line = one_error_line(err)
    assert "another hepad run" in line and "sm_train.h5" in line
    assert not [p for p in tmp_path.rglob("*.h5")]


@pytest.mark.slow
def test_real_sigint_during_train_keeps_the_checkpoint_and_resume_finishes(tiny_dataset, tmp_path):
    """A real Ctrl-C (SIGINT) in a deep training: exit 130, one line naming the checkpoint, and the
    same command with --resume completes the model."""
    import signal as sig
    import sys
    import time

    out = tmp_path / "m"
    ckpt = tmp_path / ".m.ckpt"
    args = [sys.executable, "-m", "hepad", "train", "-d", "ae", "--data", str(tiny_dataset["sm_train"]),
            "--val", str(tiny_dataset["sm_val"]), "--epochs", "100000", "--seed", "1", "-o", str(out)]
    env = {**os.environ, "PYTHONPATH": str(Path(hepad.__file__).parents[1])}
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 240
    while not (ckpt.is_dir() and any(ckpt.iterdir())):
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.poll() is not None else "timeout"
        time.sleep(0.2)
    time.sleep(1.0)
    proc.send_signal(sig.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    (line,) = [ln for ln in err.splitlines() if ln.strip()]
    assert line.startswith("hepad: interrupted;") and str(ckpt) in line and "--resume" in line
    assert not out.exists() and any(ckpt.iterdir())
    done = subprocess.run([a if a != "100000" else "3" for a in args] + ["--resume"], capture_output=True,
                          text=True, env=env, timeout=240)
    assert done.returncode == 0, done.stderr
    hepad.load(out)


def test_score_failing_on_a_later_bad_partition_leaves_nothing(capsys, work, tmp_path):
    """Found by the nightly fuzzer: the first partitions were scored and kept in .s.h5.parts/
    when a later one held invalid events; a re-run fails the same way, so nothing is kept."""
    bad = tmp_path / "bad.h5"
    shutil.copy(work / "sm_test.h5", bad)
    with h5py.File(bad, "r+") as f:
        f["Particles"][150, 0, 0] = -5.0  # one negative MET in the last partition
    code, _, err = cli(capsys, "score", work / "model", work / "ato4l.h5", bad, "-o", tmp_path / "s.h5",
                       "-j", "0", "--partition-size", "60")
    assert code == 1 and "negative pT" in one_error_line(err)
    assert tree(tmp_path) == ["bad.h5"]


def test_ctrl_c_during_generate_exits_130_and_the_rerun_resumes(capsys, tmp_path, monkeypatch):
    """Item 9 for generate: the first chunk is generated (real Pythia, Z at PU0), Ctrl-C arrives
    during the second; exit 130 with one line naming the kept chunks, no output file; the same
    command again reuses the finished chunk and writes every event."""
    import hepad.generate._engine as eng

    out = tmp_path / "z.h5"
    args = ["generate", "z", "-n", "30", "--chunk-size", "15", "-j", "0", "--pileup", "0", "--seed", "4",
            "-o", out]
    real, calls = eng.run_chunk, []

    def interrupted_second(spec):
        calls.append(spec.index)
        if len(calls) > 1:
            raise KeyboardInterrupt
        return real(spec)

    monkeypatch.setattr(eng, "run_chunk", interrupted_second)
    code, _, err = cli(capsys, *args)
    assert code == 130, err
    (line,) = [ln for ln in err.splitlines() if ln.strip()]
    assert line.startswith("hepad: interrupted;") and "resume" in line
    assert not out.exists()
    parts = tmp_path / ".z.h5.parts"
    assert len(list(parts.glob("*.h5"))) == 1  # the finished chunk is kept
    monkeypatch.setattr(eng, "run_chunk", real)
    code, _, err = cli(capsys, *args)
    assert code == 0, err
    ev = hepad.read_events(out)
    assert len(ev) == 30 and not parts.exists()
