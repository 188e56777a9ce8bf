"""EventSet validation's fast path (column extremes) agrees with the per-event masks."""

from __future__ import annotations

import numpy as np
import pytest

from hepad.events import EventSet


@pytest.fixture(scope="module")
def events(tiny_dataset):
    from hepad.io import read_events

    return read_events(tiny_dataset["sm_train"])


@pytest.mark.parametrize("slot, col, value", [
    (3, 0, np.nan), (5, 1, np.inf), (0, 0, -1.0), (7, 0, 2e4), (2, 1, 10.5), (9, 2, 3.2),
    (4, 3, 2.5), (4, 3, 5.0), (18, 3, -1.0),
])
def test_one_planted_bad_value_is_found(events, slot, col, value):
    data = events.data.copy()
    i = len(data) // 2
    data[i, slot, col] = value
    ev = EventSet(data=data, feature_names=events.feature_names)
    assert not ev._all_valid()
    mask = ev.invalid_mask()
    assert mask.sum() == 1 and mask[i]


def test_valid_events_take_the_fast_path(events):
    assert events._all_valid() and not events.invalid_mask().any()
    # an odd number of events exercises the remainder rows of the column reduction
    odd = events[: len(events) - 3]
    assert odd._all_valid()
    flat = EventSet(data=events.features, feature_names=[f"f{i}" for i in range(57)])
    assert flat._all_valid()
    bad = flat.data.copy()
    bad[1, 5] = np.nan
    assert not EventSet(data=bad, feature_names=flat.feature_names)._all_valid()


@pytest.mark.parametrize("n", [1, 3, 67, 400, 3001])
def test_one_sweep_column_extremes_equal_plain_reductions(events, n):
    """The tiled min/max (both per L2-sized tile) equals numpy's reductions, remainder rows and NaN included."""
    from hepad.events import _column_extremes

    d = np.resize(events.data, (n, 19, 4)).copy()
    lo, hi = _column_extremes(d, tile_rows=2)
    assert np.array_equal(lo, d.reshape(-1, 4).min(axis=0)) and np.array_equal(hi, d.reshape(-1, 4).max(axis=0))
    d[n // 2, 18, 1] = np.nan
    lo, hi = _column_extremes(d, tile_rows=2)
    assert np.isnan(lo[1]) and np.isnan(hi[1]) and np.isfinite(lo[[0, 2, 3]]).all()
