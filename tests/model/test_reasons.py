"""The reasons of a ranked list from a trained model, measured as a rep reads them.

The list is the one ``leadscore rank`` makes (five reasons each way here, to give each
rule more to do), on the session's synthetic CRM with a third of the open deals stripped
of their activities: sparse deals, whose many activity features all read "No activity
logged yet". The same list made without the rules (strongest pushes each way, track
records included) shows every problem the audit looks for, so each assertion can fail.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from leadscore.crm.synth import SyntheticCRM
from leadscore.features.catalog import ACTIONABLE_GROUPS, features_by_name
from leadscore.model import explain
from leadscore.model.explain import Cells
from leadscore.model.reason_audit import ReasonAudit, audit_reasons
from leadscore.priority.rank import RankConfig, rank_deals
from tests.model.conftest import AS_OF
from training.result import TrainingResult


@pytest.fixture(scope="module")
def sparse_tables(crm: SyntheticCRM) -> dict[str, pd.DataFrame]:
    tables = dict(crm.tables)
    deals = tables["deals"]
    open_ids = deals.loc[deals["status"].astype(str).eq("open"), "deal_id"]
    sparse = set(open_ids.iloc[::3])
    tables["activities"] = tables["activities"][~tables["activities"]["deal_id"].isin(sparse)]
    return tables


def listed_audit(tables: dict[str, pd.DataFrame], trained: TrainingResult) -> ReasonAudit:
    ranked = rank_deals(tables, trained.model, AS_OF, RankConfig(max_reasons=5)).frame
    return audit_reasons(
        zip(ranked["positive_reasons"], ranked["negative_reasons"], strict=True),
        features_by_name(trained.model.attributes),
    )


def actionable_share(audit: ReasonAudit) -> float:
    """Share of the top three reasons for a deal that a rep can act on."""
    top = audit.top_groups["+"]
    return sum(top[g] for g in ACTIONABLE_GROUPS) / top.total()


def strongest(cells: Cells, k: int, complete: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The list without the rules (:func:`~leadscore.model.explain.choose_reasons_batch`'s
    contract): the strongest pushes each way."""
    side = 2 * cells.row + (cells.push > 0)
    by_side = np.argsort(side, kind="stable")
    ordered = side[by_side]
    place = np.arange(len(ordered)) - np.searchsorted(ordered, ordered, side="left")
    full = np.bincount(side, minlength=2 * len(complete)).reshape(-1, 2).min(axis=1) >= k
    return by_side[place < k], ~complete & ~full


def test_listed_reasons_agree_with_their_tooltips_and_show_no_track_record_nor_a_text_twice(
    sparse_tables, trained, monkeypatch
):
    audit = listed_audit(sparse_tables, trained)
    assert audit.deals > 300 and audit.reasons > 5 * audit.deals
    assert audit.contradicting == 0
    assert audit.deals_with_track_record == 0
    assert audit.deals_with_duplicate == 0 and audit.deals_both_ways == 0
    # What a rep can act on comes first: most of the top reasons for a deal.
    assert actionable_share(audit) > 0.6

    monkeypatch.setattr(explain, "choose_reasons_batch", strongest)
    monkeypatch.setattr(explain, "HIDDEN_GROUPS", ())
    raw = listed_audit(sparse_tables, trained)
    assert raw.contradicting > 0.02 * raw.reasons
    assert raw.deals_with_owner_record > 0.05 * raw.deals
    assert raw.deals_with_duplicate > 0
    assert actionable_share(raw) < 0.5


def test_explained_deals_read_in_chinese_with_the_english_numbers(trained, test_rows):
    """A sample of real deals of the test slice: each reason's Chinese words carry the
    English numbers, text and tooltip (issue 13)."""
    from tests.code.test_reasons_zh import CJK, numbers

    rows = test_rows.head(300)
    explained = explain.Explainer(trained.model).explain(
        {name: rows[name].tolist() for name in trained.model.features if name in rows}
    )
    reasons = [r for e in explained for r in (*e["positive_reasons"], *e["negative_reasons"])]
    assert len(reasons) > 300
    for r in reasons:
        assert CJK.search(r["text_zh"]), r
        assert set(numbers(r["text"])) <= set(numbers(r["text_zh"])), r
        assert (r["tooltip"] is None) == (r["tooltip_zh"] is None), r
        assert numbers(r["tooltip"]) == numbers(r["tooltip_zh"]), r
