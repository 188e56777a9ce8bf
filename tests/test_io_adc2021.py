"""The ADC2021 files as published and as the challenge tutorial splits them.

Built from the generator's tiny dataset in the exact shapes of the Zenodo files (float64
``Particles``, ``Particles_Names``, ``Particles_Classes``, a black box's ``EvtId``) and of the
ADC2021 example code's outputs (``X_train``/``X_val``/``X_test`` flat (N, 57) or (N, 19, 3),
signal files holding ``Data``).
"""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from hepad import _layout as L
from hepad.errors import FormatError, InputError, MissingKeyError
from hepad.download import adc2021_paths
from hepad.io import iter_events, read_events
from hepad.io._summary import hdf5_keys_to_inspect, summarize

NAMES = np.array([b"Pt", b"Eta", b"Phi", b"Class"])
CLASSES = np.array([b"MET_class_1", b"Four_Ele_class_2", b"Four_Mu_class_3", b"Ten_Jet_class_4"])


@pytest.fixture(scope="module")
def sm(tiny_dataset):
    return read_events(tiny_dataset["sm_train"])


def _zenodo_like(path, data, *, names=NAMES, classes=CLASSES, evt_id=False):
    with h5py.File(path, "w") as f:
        f["Particles"] = data.astype(np.float64)
        if names is not None:
            f["Particles_Names"] = names
        if classes is not None:
            f["Particles_Classes"] = classes
        if evt_id:
            f["EvtId"] = np.arange(len(data), dtype=np.int64) + 10_000


def test_zenodo_file_with_names_and_classes(tmp_path, sm):
    _zenodo_like(tmp_path / "background_for_training.h5", sm.data)
    ev = read_events(tmp_path / "background_for_training.h5")
    assert ev.is_objects and ev.data.dtype == np.float32
    np.testing.assert_array_equal(ev.data, sm.data)
    assert ev.provenance["particles_names"] == ["Pt", "Eta", "Phi", "Class"]
    assert ev.provenance["particles_classes"][3] == "Ten_Jet_class_4"
    s = summarize(tmp_path / "background_for_training.h5")
    assert s["layout"] == "adc2021" and s["particles_classes"][0] == "MET_class_1"
    np.testing.assert_array_equal(
        [s["multiplicities"]["muons"]["distribution"][str(i)] for i in range(5)],
        np.bincount(sm.multiplicities["muons"], minlength=5),
    )


def test_black_box_with_event_ids_streams(tmp_path, sm):
    _zenodo_like(tmp_path / "BlackBox_1.h5", sm.data, evt_id=True)
    chunks = list(iter_events(tmp_path / "BlackBox_1.h5", chunk_size=128))
    assert sum(len(c) for c in chunks) == len(sm)
    assert chunks[0].provenance["event_ids"] == "EvtId"
    np.testing.assert_array_equal(np.concatenate([c.data for c in chunks]), sm.data)


def test_wrong_names_or_classes_are_errors(tmp_path, sm):
    _zenodo_like(tmp_path / "swapped.h5", sm.data, names=np.array([b"Eta", b"Pt", b"Phi", b"Class"]))
    with pytest.raises(FormatError, match=r"swapped\.h5: Particles_Names is \['Eta', 'Pt'.*\(Pt, Eta, Phi, Class\)"):
        read_events(tmp_path / "swapped.h5")
    _zenodo_like(tmp_path / "classes.h5", sm.data, classes=CLASSES[::-1])
    with pytest.raises(FormatError, match=r"classes\.h5: Particles_Classes is"):
        read_events(tmp_path / "classes.h5")


def test_tutorial_dense_split_files(tmp_path, sm):
    """The example code's create_datasets_dense: X_train/X_val/X_test (N, 57); signals as Data."""
    flat = sm.data[:, :, :3].reshape(len(sm), 57)
    with h5py.File(tmp_path / "BKG_dataset.h5", "w") as f:
        f["X_train"], f["X_test"], f["X_val"] = flat[:200], flat[200:300], flat[300:]
    with pytest.raises(MissingKeyError, match=r"train/validation/test splits.*--key X_test"):
        read_events(tmp_path / "BKG_dataset.h5")
    assert hdf5_keys_to_inspect(tmp_path / "BKG_dataset.h5", None) == ["X_test", "X_train", "X_val"]  # HDF5 name order
    xt = read_events(tmp_path / "BKG_dataset.h5", key="X_test")
    assert xt.feature_names == L.FLAT57_NAMES
    np.testing.assert_array_equal(xt.data, sm.flat57[200:300])
    with h5py.File(tmp_path / "Ato4l_lepFilter_13TeV_dataset.h5", "w") as f:
        f["Data"] = flat[:50]
    sig = read_events(tmp_path / "Ato4l_lepFilter_13TeV_dataset.h5")  # Data is a default key
    np.testing.assert_array_equal(sig.data, sm.flat57[:50])


def test_tutorial_convolutional_splits_get_their_types_back(tmp_path, sm):
    """create_datasets_convolutional keeps (N, 19, 3): the type column comes back from the slot."""
    with h5py.File(tmp_path / "conv.h5", "w") as f:
        f["X_train"] = sm.data[:, :, :3]
        f["Data"] = sm.data[:10, :, :3]
    ev = read_events(tmp_path / "conv.h5", key="X_train")
    assert ev.is_objects
    np.testing.assert_array_equal(ev.data, sm.data)  # types identical to the generator's
    np.testing.assert_array_equal(ev.multiplicities["jets"], sm.multiplicities["jets"])
    with h5py.File(tmp_path / "particles3.h5", "w") as f:
        f["Particles"] = sm.data[:, :, :3]  # a Particles dataset must carry its type column
    with pytest.raises(FormatError, match=r"19 x 3 without the type column"):
        read_events(tmp_path / "particles3.h5")


def test_no_downloaded_dataset_says_how_to_get_one(tmp_path):
    with pytest.raises(InputError, match="hepad dataset download adc2021 --dir"):
        adc2021_paths(tmp_path)
