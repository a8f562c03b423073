"""The synthetic CRM's revival of lost deals, and its truth (issue 12).

Thresholds sit well inside the simulated effects (20,000 deals), so a test fails when a
direction flips or the truth stops describing the outcomes, not by chance.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from leadscore.crm import synth
from leadscore.crm.contract import (
    COMPETITOR,
    LOST,
    LOST_REASONS,
    OPEN,
    PRODUCT_FIT,
    TIMING,
    canonical_lost_reasons,
)
from leadscore.crm.synth import (
    LOST_REASON_TEXTS,
    REVIVAL_HORIZON_DAYS,
    SyntheticCRM,
    generate_crm,
    write_export,
)

AS_OF = pd.Timestamp("2025-06-30 12:00:00", tz="UTC")


def _truth(crm: SyntheticCRM) -> pd.DataFrame:
    """The revival truth of a CRM generated with ``revival=True`` (None without)."""
    assert crm.revival_truth is not None
    return crm.revival_truth


@pytest.fixture(scope="module")
def crm() -> SyntheticCRM:
    return generate_crm(20_000, seed=5, as_of=AS_OF, revival=True)


@pytest.fixture(scope="module")
def losses(crm: SyntheticCRM) -> pd.DataFrame:
    """One row per loss: its first snapshot (the revival outcome is a per-loss fact)."""
    return _truth(crm).drop_duplicates(["deal_id", "lost_at"]).set_index("deal_id")


def test_every_synthetic_lost_reason_text_is_read_back_as_its_reason():
    for reason, texts in zip(LOST_REASONS, LOST_REASON_TEXTS, strict=True):
        read = canonical_lost_reasons(pd.Series(texts))
        assert (read == reason).all(), dict(zip(texts, read, strict=True))


def test_lost_deals_carry_a_reason_that_follows_the_latent_state(crm: SyntheticCRM, losses):
    deals = crm.tables["deals"].set_index("deal_id")
    lost = deals[deals["status"] == LOST]
    assert lost["lost_reason"].notna().mean() > 0.85
    assert deals.loc[deals["status"] == OPEN, "lost_reason"].notna().mean() < 0.05  # re-opened
    read = canonical_lost_reasons(lost["lost_reason"].dropna())
    last = _truth(crm).sort_values("lost_at").drop_duplicates("deal_id", keep="last")
    # Losses of the last week have no snapshot yet, hence no truth row of that loss.
    last = last.set_index("deal_id").reindex(read.index)
    same_loss = last["lost_at"] == lost.loc[read.index, "closed_at"]
    truth = last["lost_reason"].astype(object).where(same_loss)
    assert truth.notna().mean() > 0.95
    assert (read[truth.notna()] == truth.dropna()).all()
    named = lost["competitor"].isin(["Acme CRM", "Globex", "Initech", "Umbrella Systems"])
    none = lost["competitor"] == "none"
    reason = truth.reindex(lost.index)
    assert (reason[named] == COMPETITOR).mean() > 3 * (reason[none] == COMPETITOR).mean()


def test_revival_rates_by_reason_move_as_the_latent_model_says(losses):
    revived = losses["revived_at"].notna()
    by_reason = revived.groupby(losses["lost_reason"].astype(object)).mean()
    assert by_reason[TIMING] > 2 * by_reason[PRODUCT_FIT], by_reason
    assert by_reason[TIMING] > by_reason[COMPETITOR], by_reason
    assert 0.1 < revived.mean() < 0.4


def test_p_revival_is_calibrated_and_a_shuffled_truth_is_not(crm: SyntheticCRM):
    truth = _truth(crm)
    y = truth["revived_and_won"].to_numpy(dtype=float)
    p = truth["p_revival"].to_numpy()
    assert ((p >= 0) & (p <= 1)).all()

    def worst_gap(p: np.ndarray) -> float:
        bins = np.quantile(p, np.linspace(0, 1, 11))
        which = np.clip(np.searchsorted(bins, p, side="right") - 1, 0, 9)
        gaps = [abs(p[which == b].mean() - y[which == b].mean()) for b in range(10)]
        return max(gaps)

    assert worst_gap(p) < 0.02
    assert abs(p.mean() - y.mean()) < 0.01
    shuffled = np.random.default_rng(0).permutation(p)
    assert worst_gap(shuffled) > 0.05
    # It ranks: outcomes concentrate where the oracle says.
    top = p >= np.quantile(p, 0.9)
    assert y[top].mean() > 3 * y[~top].mean()


def test_the_observable_oracle_is_calibrated_and_knows_less(crm: SyntheticCRM):
    """``p_revival_observable`` integrates what the export does not show (the latent
    interest given the engagement seen, the fiscal year, the revived deal's fresh
    quality): still calibrated, ranking below the oracle that knows them, above chance;
    and it reads the engagement: more inbound contact since the loss, a higher value."""
    truth = _truth(crm)
    y = truth["revived_and_won"].to_numpy(dtype=float)
    seen = truth["p_revival_observable"].to_numpy()
    assert ((seen >= 0) & (seen <= 1)).all()
    assert abs(seen.mean() - y.mean()) < 0.01
    bins = np.quantile(seen, np.linspace(0, 1, 11))
    which = np.clip(np.searchsorted(bins, seen, side="right") - 1, 0, 9)
    assert max(abs(seen[which == b].mean() - y[which == b].mean()) for b in range(10)) < 0.02
    auc_all, auc_seen = roc_auc_score(y, truth["p_revival"]), roc_auc_score(y, seen)
    assert 0.6 < auc_seen < auc_all - 0.02, (auc_seen, auc_all)
    # The latent interest shows through inbound contact: among snapshots at the same time
    # since the loss, those with more inbound activities get more.
    acts = crm.tables["activities"]
    inbound = acts[acts["direction"] == "inbound"]
    late = truth[truth["days_since_loss"] == 97.0]
    pairs = (
        late[["deal_id", "lost_at", "as_of"]]
        .reset_index()
        .merge(inbound[["deal_id", "occurred_at"]], on="deal_id")
    )
    within = (pairs["occurred_at"] > pairs["lost_at"]) & (pairs["occurred_at"] <= pairs["as_of"])
    counts = pairs[within].groupby("index").size().reindex(late.index, fill_value=0)
    assert (
        late.loc[counts > 0, "p_revival_observable"].mean()
        > late.loc[counts == 0, "p_revival_observable"].mean()
    )


def test_no_revival_precedes_its_loss_and_snapshots_precede_the_revival(crm, losses):
    truth = _truth(crm)
    assert (truth["as_of"] > truth["lost_at"]).all()
    assert (truth["as_of"] <= crm.as_of).all()
    revived = truth["revived_at"].notna()
    assert (truth.loc[revived, "revived_at"] > truth.loc[revived, "as_of"]).all()
    horizon = pd.Timedelta(days=REVIVAL_HORIZON_DAYS)
    won = truth["revived_and_won"]
    assert (truth.loc[won, "revived_at"] <= truth.loc[won, "as_of"] + horizon).all()
    deals = crm.tables["deals"].set_index("deal_id")
    follow = deals[deals["previous_deal_id"].notna()]
    previous = deals.loc[follow["previous_deal_id"]]
    assert (follow["account_id"].to_numpy() == previous["account_id"].to_numpy()).all()
    assert (follow["created_at"].to_numpy() > previous["created_at"].to_numpy()).all()
    # A follow-up starts after the loss it revives, and a re-open shows in the history.
    shown = losses[losses["revival_deal_id"].notna() & (losses["revived_at"] <= crm.as_of)]
    started = deals.loc[shown["revival_deal_id"].astype(str), "created_at"].to_numpy()
    kind = shown["revival_kind"].astype(object).to_numpy()
    follow_up = kind == "follow_up"
    assert (started[follow_up] > shown["lost_at"].to_numpy()[follow_up]).all()
    sh = crm.tables["stage_history"]
    reopened = shown.index[kind == "reopen"]
    assert len(reopened) > 50
    after_close = sh[sh["deal_id"].isin(reopened)].sort_values(["deal_id", "entered_at"])
    after_close = after_close.assign(prev=after_close.groupby("deal_id")["stage"].shift())
    assert (
        ((after_close["prev"] == "closed") & (after_close["stage"] != "closed"))
        .groupby(after_close["deal_id"])
        .any()
        .all()
    )


def test_post_loss_engagement_is_logged_after_the_loss(crm: SyntheticCRM):
    deals = crm.tables["deals"]
    lost = deals[deals["status"] == LOST].set_index("deal_id")["closed_at"]
    acts = crm.tables["activities"]
    acts = acts[acts["deal_id"].isin(lost.index)]
    after = acts[acts["occurred_at"] > acts["deal_id"].map(lost)]
    assert len(after) > 0.5 * len(lost)
    assert set(after["direction"]) == {"inbound", "outbound"}
    assert (after["type"] == "visit").any()


def test_same_seed_same_revival_and_its_own_stream_leaves_the_open_deals_alone(monkeypatch):
    a = generate_crm(1_500, seed=3, as_of=AS_OF, revival=True)
    b = generate_crm(1_500, seed=3, as_of=AS_OF, revival=True)
    pd.testing.assert_frame_equal(_truth(a), _truth(b))
    for name in a.tables:
        pd.testing.assert_frame_equal(a.tables[name], b.tables[name])
    # Another revival stream: other revivals, the same open-deal simulation.
    monkeypatch.setattr(synth, "REVIVAL_STREAM", 13)
    c = generate_crm(1_500, seed=3, as_of=AS_OF, revival=True)
    assert not _truth(a)["p_revival"].equals(_truth(c)["p_revival"])
    # And without revival (the default): the same open-deal simulation, no revival.
    off = generate_crm(1_500, seed=3, as_of=AS_OF)
    assert off.revival_truth is None and len(_truth(a)) > 0
    fields = ["deal_id", "account_id", "created_at", "amount", "competitor"]
    for other in (c, off):
        for name in ("accounts", "contacts"):
            pd.testing.assert_frame_equal(a.tables[name], other.tables[name])
        pd.testing.assert_frame_equal(a.truth.iloc[:1_500], other.truth.iloc[:1_500])
        pd.testing.assert_frame_equal(
            a.tables["deals"].iloc[:1_500][fields], other.tables["deals"].iloc[:1_500][fields]
        )


def test_the_export_has_the_revival_truth_beside_the_truth(crm: SyntheticCRM, tmp_path):
    small = generate_crm(600, seed=2, as_of=AS_OF, revival=True)
    paths = write_export(small, tmp_path)
    assert paths["revival_truth"] == tmp_path / "revival_truth.parquet"
    back = pd.read_parquet(paths["revival_truth"])
    assert len(back) == len(_truth(small))
    assert set(back.columns) >= {"deal_id", "as_of", "days_since_loss", "p_revival"}
