"""Chunks of a training set's point-in-time join (``leadscore.features.store.deal_chunks``)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from leadscore.features.store import deal_chunks


def test_chunks_are_sorted_ranges_of_whole_deals_and_cover_every_row_once():
    rng = np.random.default_rng(0)
    ids = pd.Series(rng.choice([f"D{i:03d}" for i in range(57)], size=400))
    chunks = deal_chunks(ids, 10)
    assert len(chunks) == 6
    assert sorted(np.concatenate(chunks)) == list(range(len(ids)))
    deals = [set(ids.iloc[c]) for c in chunks]
    assert all(len(d) <= 10 for d in deals)
    assert sum(map(len, deals)) == ids.nunique()  # no deal in two chunks
    assert all(max(a) < min(b) for a, b in zip(deals, deals[1:], strict=False))  # ranges
    assert all((np.diff(c) > 0).all() for c in chunks)  # each chunk in the rows' order


def test_no_size_or_few_deals_is_one_chunk_of_every_row():
    ids = pd.Series(["b", "a", "b"])
    for size in (0, 2, 5):
        (only,) = deal_chunks(ids, size)
        assert list(only) == [0, 1, 2]
