"""Flat opportunity tables through a mapping file: reading pitfalls and column sets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from leadscore.config import PROJECT_ROOT
from training.tabular import TableMapping, fit_table, load_mapping, read_table, stratified_split

MAPPING = """
name: toy
source: toy.csv
read: {keep_default_na: false, na_values: [""]}
id: Id
label: {column: Result, positive: Won}
categorical: [Competitor, Route]
numeric: [Amount, Days In Stage]
post_hoc: [Days In Stage]
suspect: [Amount]
"""


def write_toy(tmp_path: Path, n: int = 2000, seed: int = 0) -> TableMapping:
    rng = np.random.default_rng(seed)
    competitor = rng.choice(["None", "Known", "Unknown"], n)
    won = rng.uniform(size=n) < np.where(competitor == "None", 0.6, 0.2)
    rows = ["Id,Competitor,Route,Amount,Days In Stage,Result"]
    rows += [
        f"{i},{c},{rng.choice(['Reseller', 'Field'])},{rng.integers(0, 9000)},{rng.integers(1, 90)},"
        f"{'Won' if w else 'Loss'}"
        for i, (c, w) in enumerate(zip(competitor, won, strict=True))
    ]
    rows += [rows[1], rows[2]]  # two exact duplicates
    (tmp_path / "toy.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "toy.yaml").write_text(MAPPING)
    return load_mapping(tmp_path / "toy.yaml")


def test_literal_none_stays_a_category_and_exact_duplicates_go(tmp_path):
    table = read_table(write_toy(tmp_path), tmp_path)
    assert table.duplicates_dropped == 2 and len(table.frame) == 2000
    assert "None" in set(table.frame["Competitor"]) and table.frame["Competitor"].notna().all()


def test_open_time_columns_leave_post_hoc_ones_out(tmp_path):
    mapping = write_toy(tmp_path)
    assert mapping.features(post_hoc=False) == ["Competitor", "Route", "Amount"]
    assert mapping.features(post_hoc=False, without=mapping.suspect) == ["Competitor", "Route"]
    assert mapping.features(post_hoc=True) == ["Competitor", "Route", "Amount", "Days In Stage"]


def test_stratified_split_and_fit(tmp_path):
    mapping = write_toy(tmp_path)
    table = read_table(mapping, tmp_path)
    won = table.frame["won"].to_numpy()
    masks = stratified_split(won, seed=1)
    assert (masks["train"].astype(int) + masks["valid"] + masks["test"] == 1).all()
    assert won[masks["test"]].mean() == pytest.approx(won.mean(), abs=0.03)
    result = fit_table(table, mapping, mapping.features(post_hoc=False), masks)
    assert result.test["roc_auc"] > 0.6  # the competitor effect is learnt


def test_shipped_ibm_mapping_is_consistent():
    mapping = load_mapping(PROJECT_ROOT / "training" / "mappings" / "ibm_sales_win_loss.yaml")
    assert mapping.read["keep_default_na"] is False and not mapping.has_dates
    assert len(mapping.features(post_hoc=True)) == 17
    assert len(mapping.features(post_hoc=False)) == 10
    assert "Revenue From Client Past Two Years" in mapping.suspect
