"""Custom attributes: declared in attributes.json, checked at ingest, model features with
their own catalog entries and reasons; ``after_close`` ones are never features."""

from __future__ import annotations

import json
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from leadscore.crm.attributes import (
    ATTRIBUTES_FILE,
    Attribute,
    AttributesError,
    read_attributes,
    write_attributes,
)
from leadscore.crm.contract import UNDATED, WON
from leadscore.crm.ingest import ExportError, ingest_export
from leadscore.crm.synth import generate_crm, write_export
from leadscore.features.catalog import attribute_features
from leadscore.features.featurize import build_feature_sources, model_frame
from leadscore.model.explain import Explainer
from leadscore.model.reasons import reason_text
from leadscore.model.scoring_model import ScoringModel
from serving.schemas import DealIn, attribute_columns, attribute_problems
from training.data import in_memory_frame
from training.result import TrainConfig
from training.train import fit_and_evaluate

AS_OF = pd.Timestamp("2025-06-30", tz="UTC")
SEGMENT = Attribute("segment", "deals", "categorical", "creation", label="Segment")
DISCOUNT = Attribute("discount_pct", "deals", "numeric", "anytime", label="Discount %")
SIZE_BAND = Attribute("size_band", "accounts", "categorical", "creation")
#: Written once a deal is lost: a perfect leak, which must never become a feature.
LOSS_REASON = Attribute("loss_reason", "deals", "categorical", "after_close")
ATTRIBUTES = (SEGMENT, DISCOUNT, SIZE_BAND, LOSS_REASON)


# ---------------------------------------------------------------- the file
def test_attributes_file_round_trips_and_labels_default_from_the_name(tmp_path):
    write_attributes(tmp_path, ATTRIBUTES)
    assert read_attributes(tmp_path) == ATTRIBUTES
    assert read_attributes(tmp_path / "elsewhere") == ()
    assert SIZE_BAND.label == "Size band"
    assert [a.name for a in ATTRIBUTES if a.is_feature] == ["segment", "discount_pct", "size_band"]


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ('{"attributes": [{"name": "Team"', "line 1 column"),
        ('{"attributes": {}}', 'must be an object {"attributes": [...]}'),
        (
            '{"attributes": [{"name": "team", "table": "deals", "kind": "text", "known": "creation"}]}',
            "attributes[0] ('team'): kind 'text' must be one of: categorical, numeric",
        ),
        (
            '{"attributes": [{"name": "Team", "table": "deals", "kind": "numeric", "known": "creation"}]}',
            "name 'Team' must be snake_case",
        ),
        (
            '{"attributes": [{"name": "amount", "table": "deals", "kind": "numeric", "known": "creation"}]}',
            "'amount' is a contract column of deals",
        ),
        (
            '{"attributes": [{"name": "team", "table": "deals", "kind": "categorical", '
            '"known": "later"}]}',
            "known 'later' must be one of: creation, anytime, after_close",
        ),
    ],
)
def test_a_bad_attributes_file_names_the_file_the_entry_and_the_rule(tmp_path, document, message):
    (tmp_path / ATTRIBUTES_FILE).write_text(document, encoding="utf-8")
    with pytest.raises(AttributesError) as err:
        read_attributes(tmp_path)
    assert str(tmp_path / ATTRIBUTES_FILE) in str(err.value)
    assert message in str(err.value)


# ---------------------------------------------------------------- ingest
def _export_with_attributes(tmp_path: Path, n_deals: int = 60) -> Path:
    crm = generate_crm(n_deals, seed=3, as_of=AS_OF)
    export = tmp_path / "export"
    write_export(crm, export, "csv")
    deals = pd.read_csv(export / "deals.csv", dtype=str, keep_default_na=False)
    deals["segment"] = np.where(np.arange(len(deals)) % 2, "Mid Market", "enterprise ")
    deals["discount_pct"] = [str(i % 40) for i in range(len(deals))]
    deals.loc[4, "discount_pct"] = "lots"  # line 6 of the file: header, then rows 1..
    deals["loss_reason"] = np.where(deals["status"] == "lost", "price", "")
    deals.to_csv(export / "deals.csv", index=False)
    accounts = pd.read_csv(export / "accounts.csv", dtype=str, keep_default_na=False)
    accounts["size_band"] = "Large"
    accounts.to_csv(export / "accounts.csv", index=False)
    write_attributes(export, ATTRIBUTES)
    return export


def test_ingest_parses_numeric_attributes_and_stores_the_declaration_with_the_tables(tmp_path):
    export = _export_with_attributes(tmp_path)
    crm_dir = tmp_path / "crm"
    result = ingest_export(export, crm_dir, tmp_path / "rejects", now=AS_OF)

    [reject] = [r for r in result.rejects if r.column == "discount_pct"]
    assert (reject.file, reject.value, reject.reason) == ("deals.csv", "lots", "is not a number")
    deals = result.tables["deals"]
    assert deals["discount_pct"].dtype == "float64"
    assert set(deals["segment"]) == {"Mid Market", "enterprise"}  # text as written, trimmed
    assert result.attributes == ATTRIBUTES
    assert read_attributes(crm_dir) == ATTRIBUTES

    # A later export without attributes.json keeps the stored declaration and its checks.
    again = tmp_path / "again"
    again.mkdir()
    (again / "deals.csv").write_bytes((export / "deals.csv").read_bytes())
    result = ingest_export(again, crm_dir, tmp_path / "rejects", now=AS_OF)
    assert result.attributes == ATTRIBUTES
    assert [r.value for r in result.rejects if r.column == "discount_pct"] == ["lots"]


def test_a_bad_attributes_file_stops_the_ingest_before_anything_is_stored(tmp_path):
    export = _export_with_attributes(tmp_path)
    (export / ATTRIBUTES_FILE).write_text('{"attributes": [1]}', encoding="utf-8")
    with pytest.raises(ExportError, match=r"attributes\.json: attributes\[0\]: must be an object"):
        ingest_export(export, tmp_path / "crm", tmp_path / "rejects", now=AS_OF)
    assert not (tmp_path / "crm").exists()


# ---------------------------------------------------------------- feature source
def test_attribute_source_stamps_at_creation_and_never_holds_after_close_attributes():
    deals = pd.DataFrame(
        {
            "deal_id": ["D1", "D2"],
            "account_id": ["A1", "A2"],
            "owner_id": ["U1", "U1"],
            "created_at": pd.Series([AS_OF, pd.NaT], dtype="datetime64[us, UTC]"),
            "status": ["won", "lost"],
            "closed_at": pd.Series([AS_OF, AS_OF], dtype="datetime64[us, UTC]"),
            "segment": ["Mid  Market", None],
            "discount_pct": [12.5, np.nan],
            "loss_reason": [None, "price"],
        }
    )
    accounts = pd.DataFrame({"account_id": ["A1", "A2"], "size_band": ["Large", "Small"]})
    sources = build_feature_sources({"deals": deals, "accounts": accounts}, attributes=ATTRIBUTES)
    source = sources["deal_attributes"].set_index("deal_id")
    assert list(source.columns) == [
        "event_timestamp",
        "attr_segment",
        "attr_discount_pct",
        "attr_size_band",
    ]
    assert source.loc["D1", "event_timestamp"] == AS_OF
    assert source.loc["D2", "event_timestamp"] == UNDATED
    assert source.loc["D1", "attr_segment"] == "mid_market"  # normalised like any category
    assert source.loc["D2", "attr_segment"] is None
    assert source.loc["D1", "attr_size_band"] == "large"  # joined through the account
    assert source.loc["D1", "attr_discount_pct"] == 12.5
    # Without attributes known before close, no source and the frame is the built-in one.
    assert "deal_attributes" not in build_feature_sources(
        {"deals": deals}, attributes=[LOSS_REASON]
    )


# ---------------------------------------------------------------- reasons
def test_attribute_entries_phrase_reasons_in_words():
    segment, discount, _ = attribute_features(ATTRIBUTES)
    assert (segment.name, segment.kind, segment.monotone) == ("attr_segment", "categorical", 0)
    assert reason_text(segment, "mid_market") == "Segment is mid market"
    assert reason_text(segment, None) == "Segment not recorded"
    stats = {"numeric": {"attr_discount_pct": {"edges": [0.0, 5.0, 10.0, 20.0, 30.0, 45.0]}}}
    assert reason_text(discount, 42.0, stats) == "Discount % is high (42)"
    assert reason_text(discount, 2.0, stats) == "Discount % is low (2)"
    assert reason_text(discount, 12.0, stats) == "Discount % is mid-range (12)"
    assert reason_text(discount, 42.0) == "Discount %: 42"  # no statistics: the value alone
    assert "export holds its last value" in discount.description  # the anytime caveat


# ---------------------------------------------------------------- serving inputs
def test_the_api_names_unknown_attributes_and_wrong_kinds_and_normalises_the_rest():
    known = {a.name: a for a in (SEGMENT, DISCOUNT)}
    deal = DealIn.model_validate(
        {
            "deal_id": "D1",
            "account_id": "A1",
            "created_at": "2025-01-01T00:00:00Z",
            "attributes": {"segment": 3.0, "discount_pct": "high", "loss_reason": "price"},
        }
    )
    problems = {tuple(p.loc): p.msg for p in attribute_problems(deal, known)}
    assert problems == {
        ("attributes", "segment"): "must be text",
        ("attributes", "discount_pct"): "must be a number",
        ("attributes", "loss_reason"): "is not an attribute of this model "
        "(it knows: discount_pct, segment)",
    }
    good = DealIn.model_validate(
        {
            "deal_id": "D2",
            "account_id": "A1",
            "created_at": "2025-01-01T00:00:00Z",
            "attributes": {"segment": " Mid Market", "discount_pct": 42},
        }
    )
    assert attribute_problems(good, known) == []
    bare = good.model_copy(update={"attributes": None})
    assert attribute_columns([good, bare], (SEGMENT, DISCOUNT)) == {
        "attr_segment": ["mid_market", None],
        "attr_discount_pct": [42.0, None],
    }


# ---------------------------------------------------------------- the model uses them
@pytest.fixture(scope="module")
def planted():
    """A synthetic CRM whose deals carry a segment that shifts win odds strongly, a
    numeric noise attribute, and a loss reason written after close (a perfect leak)."""
    crm = generate_crm(1500, seed=5, as_of=AS_OF)
    deals = crm.tables["deals"].copy()
    rng = np.random.default_rng(11)
    won = deals["status"].eq(WON).to_numpy()
    closed = deals["closed_at"].notna().to_numpy()
    strong = rng.random(len(deals)) < np.where(won, 0.8, np.where(closed, 0.2, 0.5))
    deals["segment"] = np.where(strong, "Enterprise", "SMB")
    deals["discount_pct"] = rng.uniform(0, 40, len(deals)).round(1)
    deals["loss_reason"] = np.where(closed & ~won, "price", None)
    tables = {**crm.tables, "deals": deals}
    with_attributes = in_memory_frame(tables, attributes=ATTRIBUTES[:2] + (LOSS_REASON,))
    config = TrainConfig(seed=3)
    return {
        "with": fit_and_evaluate(
            with_attributes,
            "lead_scoring_v1",
            config,
            attributes=ATTRIBUTES[:2] + (LOSS_REASON,),
        ),
        "without": fit_and_evaluate(in_memory_frame(tables), "lead_scoring_v1", config),
        "frame": with_attributes,
    }


def test_a_planted_attribute_is_used_and_the_after_close_leak_never_is(planted):
    model = planted["with"].model
    assert model.features[-2:] == ["attr_segment", "attr_discount_pct"]
    assert "attr_loss_reason" not in planted["frame"].columns
    assert not any("loss_reason" in f for f in model.features)
    assert [a.name for a in model.attributes] == ["segment", "discount_pct"]
    gain = dict(zip(model.features, model.booster.feature_importance("gain"), strict=True))
    assert gain["attr_segment"] > 0
    assert gain["attr_segment"] == max(gain.values())  # the planted signal dominates
    auc_with = planted["with"].evaluation["test"]["roc_auc"]
    auc_without = planted["without"].evaluation["test"]["roc_auc"]
    assert auc_with > auc_without + 0.05


def test_reasons_speak_of_the_attribute_in_words_and_survive_the_model_metadata(planted):
    model = planted["with"].model
    again = ScoringModel.from_metadata(
        lgb.Booster(model_str=model.booster.model_to_string()),
        json.loads(json.dumps(model.metadata())),
    )
    assert again.attributes == model.attributes
    test = planted["with"].frame[planted["with"].masks["test"]]
    columns = {n: v.tolist() for n, v in model_frame(test, again.attributes).items()}
    explained = Explainer(again).explain(columns)
    texts = [
        r["text"]
        for e in explained
        for r in e["positive_reasons"] + e["negative_reasons"]
        if r["feature"] == "attr_segment"
    ]
    assert {"Segment is enterprise", "Segment is smb"} <= set(texts)
    probabilities = [e["probability"] for e in explained]
    assert roc_auc_score(test["won"], probabilities) == pytest.approx(
        planted["with"].evaluation["test"]["roc_auc"], abs=1e-9
    )
