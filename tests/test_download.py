"""``hepad dataset download adc2021`` against a local Zenodo look-alike on 127.0.0.1 (never the network).

The served files are ADC2021-format HDF5 files (float64 ``Particles``, ``Particles_Names``,
``Particles_Classes``) made from the generator's tiny dataset. Planted failures: a corrupted
file (checksum error, nothing left behind), a transfer cut half-way (resumed with a Range
request), no server at all (a one-line offline error).
"""

from __future__ import annotations

import hashlib
import io
import json
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import h5py
import numpy as np
import pytest

from hepad.download import (ADC2021_RECORDS, ChecksumError, DownloadError, adc2021_paths,
                            download_adc2021, prepare_adc2021)
from hepad.io import read_events
from _cli import cli_run
from hepad.cli import run


def _adc_file(events) -> bytes:
    """An HDF5 file shaped like the Zenodo ones, in memory."""
    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        f["Particles"] = events.data.astype(np.float64)
        f["Particles_Names"] = np.array([b"Pt", b"Eta", b"Phi", b"Class"])
        f["Particles_Classes"] = np.array([b"MET_class_1", b"Four_Ele_class_2", b"Four_Mu_class_3", b"Ten_Jet_class_4"])
    return buf.getvalue()


@pytest.fixture(scope="module")
def served(tiny_dataset):
    """record id -> {file name: bytes}: background from sm_train, two signals."""
    files = {
        ADC2021_RECORDS["background"].record: {"background_for_training.h5": _adc_file(read_events(tiny_dataset["sm_train"]))},
        ADC2021_RECORDS["ato4l"].record: {"Ato4l_lepFilter_13TeV_filtered.h5": _adc_file(read_events(tiny_dataset["ato4l"])),
                                          "README.txt": b"not data"},
        ADC2021_RECORDS["lq-btau"].record: {"leptoquark_LOWMASS_lepFilter_13TeV_filtered.h5": _adc_file(read_events(tiny_dataset["lq-btau"]))},
    }
    return files


class Zenodo:
    """A minimal Zenodo API: /api/records/<id> (JSON) and the files, with HTTP Range."""

    def __init__(self, files):
        self.files = files
        self.corrupt: set[str] = set()
        self.cut_once: set[str] = set()
        self.requests: list[tuple[str, str | None]] = []
        zen = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean
                pass

            def do_GET(self):
                zen.requests.append((self.path, self.headers.get("Range")))
                parts = self.path.strip("/").split("/")
                if len(parts) == 3 and parts[:2] == ["api", "records"]:
                    rid = int(parts[2])
                    if rid not in zen.files:
                        return self.send_error(404)
                    body = json.dumps({"id": rid, "files": [
                        {"key": k, "size": len(v), "checksum": "md5:" + hashlib.md5(v).hexdigest(),
                         "links": {"self": f"{zen.url}/api/records/{rid}/files/{k}/content"}}
                        for k, v in zen.files[rid].items()]}).encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    return self.wfile.write(body)
                if len(parts) == 6 and parts[3] == "files" and parts[5] == "content":
                    data = zen.files.get(int(parts[2]), {}).get(parts[4])
                    if data is None:
                        return self.send_error(404)
                    if parts[4] in zen.corrupt:
                        data = data[:100] + bytes([data[100] ^ 0xFF]) + data[101:]
                    start = 0
                    rng = self.headers.get("Range")
                    if rng:
                        start = int(rng.split("=")[1].split("-")[0])
                        self.send_response(206)
                        self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                    else:
                        self.send_response(200)
                    self.send_header("Content-Length", str(len(data) - start))
                    self.end_headers()
                    if parts[4] in zen.cut_once and not rng:
                        zen.cut_once.discard(parts[4])
                        self.wfile.write(data[start:start + (len(data) - start) // 2])
                        self.wfile.flush()
                        self.close_connection = True
                        self.connection.shutdown(socket.SHUT_RDWR)
                        return
                    return self.wfile.write(data[start:])
                self.send_error(404)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def content_requests(self, name):
        return [r for r in self.requests if r[0].endswith(f"/{name}/content")]


@pytest.fixture
def zenodo(served):
    z = Zenodo(served)
    z.thread.start()
    yield z
    z.server.shutdown()
    z.server.server_close()


def test_good_download_becomes_a_dataset(zenodo, served, tmp_path, tiny_dataset):
    files = download_adc2021(tmp_path, signals=["ato4l", "lq-btau"], base=zenodo.url)
    assert set(files) == {"background", "ato4l", "lq-btau"}
    for name, path in files.items():
        rid = ADC2021_RECORDS[name].record
        assert path.parent == tmp_path / "zenodo"
        assert path.read_bytes() == served[rid][path.name]
    assert not list((tmp_path / "zenodo").glob(".*.part"))
    assert not (tmp_path / "zenodo" / "README.txt").exists()  # only the record's .h5 file
    paths = prepare_adc2021(files, tmp_path)
    assert set(paths) == {"sm_train", "sm_val", "sm_test", "ato4l", "lq-btau"}
    bkg = read_events(tiny_dataset["sm_train"]).data
    n = len(bkg)
    sm = {s: read_events(paths[s]) for s in ("sm_train", "sm_val", "sm_test")}
    assert [len(sm[s]) for s in sm] == [n // 2, int(n * 0.6) - n // 2, n - int(n * 0.6)]
    np.testing.assert_array_equal(np.concatenate([sm[s].data for s in sm]), bkg)
    assert (sm["sm_val"].labels == 0).all() and sm["sm_val"].provenance["process"] == "sm-mix"
    sig = read_events(paths["ato4l"])
    np.testing.assert_array_equal(sig.data, read_events(tiny_dataset["ato4l"]).data)
    assert (sig.labels == 1).all() and sig.provenance["process"] == "ato4l"
    assert sig.provenance["zenodo_record"] == 5046446
    assert sig.provenance["particles_classes"][0] == "MET_class_1"
    assert adc2021_paths(tmp_path) == paths
    # A second run transfers nothing and rewrites nothing.
    before = len(zenodo.content_requests("background_for_training.h5"))
    mtime = paths["sm_train"].stat().st_mtime_ns
    download_adc2021(tmp_path, signals=["ato4l", "lq-btau"], base=zenodo.url)
    prepare_adc2021(files, tmp_path)
    assert len(zenodo.content_requests("background_for_training.h5")) == before
    assert paths["sm_train"].stat().st_mtime_ns == mtime


def test_corrupted_file_is_a_checksum_error_and_nothing_is_left(zenodo, tmp_path):
    zenodo.corrupt.add("Ato4l_lepFilter_13TeV_filtered.h5")
    with pytest.raises(ChecksumError, match=r"Ato4l_lepFilter_13TeV_filtered\.h5: MD5 [0-9a-f]{32} does not match") as info:
        download_adc2021(tmp_path, signals=["ato4l"], background=False, base=zenodo.url)
    assert "\n" not in str(info.value)
    assert list((tmp_path / "zenodo").iterdir()) == []


def test_interrupted_transfer_resumes_with_a_range_request(zenodo, served, tmp_path):
    name = "background_for_training.h5"
    data = served[ADC2021_RECORDS["background"].record][name]
    zenodo.cut_once.add(name)
    with pytest.raises(DownloadError, match=r"transfer (interrupted|ended) after [\d,]+ of [\d,]+ bytes.*rerun the same command to resume"):
        download_adc2021(tmp_path, signals=[], base=zenodo.url)
    part = tmp_path / "zenodo" / f".{name}.part"
    assert part.exists() and 0 < part.stat().st_size < len(data)
    assert not (tmp_path / "zenodo" / name).exists()
    got = part.stat().st_size
    files = download_adc2021(tmp_path, signals=[], base=zenodo.url)
    assert zenodo.content_requests(name)[-1][1] == f"bytes={got}-"
    assert files["background"].read_bytes() == data and not part.exists()


def test_offline_is_one_line(monkeypatch, capsys, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nothing listens there
    with pytest.raises(DownloadError, match=r"cannot reach http://127\.0\.0\.1:\d+/api/records/5046389"):
        download_adc2021(tmp_path, base=f"http://127.0.0.1:{port}")
    monkeypatch.setenv("HEPAD_ZENODO_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setattr(sys, "argv", ["hepad", "dataset", "download", "adc2021", "--dir", str(tmp_path)])
    with pytest.raises(SystemExit) as exit_info:
        run()
    err = capsys.readouterr().err
    assert exit_info.value.code == 1
    assert err.startswith("hepad: error: cannot reach") and err.count("\n") == 1


def test_cli_download_and_unknown_signal(zenodo, monkeypatch, capsys, tmp_path):
    code, out, err = cli_run(monkeypatch, capsys, "dataset", "download", "adc2021", "--signals", "ato4l",
                          "--dir", tmp_path, "--base-url", zenodo.url)
    assert code == 0, err
    assert f"sm_test: {tmp_path / 'sm_test.h5'}" in out and f"ato4l: {tmp_path / 'ato4l.h5'}" in out
    code, out, err = cli_run(monkeypatch, capsys, "dataset", "download", "adc2021", "--signals", "ato4ll",
                          "--dir", tmp_path, "--base-url", zenodo.url)
    assert code == 1 and "unknown ADC2021 signal 'ato4ll'. Did you mean 'ato4l'?" in err
    assert not list(tmp_path.glob(".*.lock"))
