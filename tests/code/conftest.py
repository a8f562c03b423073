"""Fixtures the unit tests of several modules share."""

from __future__ import annotations

import pytest

from leadscore.config import Settings
from tests.crm_fixture import ranking_crm


@pytest.fixture
def stored(isolated_settings: Settings) -> Settings:
    """Private settings whose stored CRM is :func:`tests.crm_fixture.ranking_crm`."""
    isolated_settings.crm_dir.mkdir(parents=True)
    for name, table in ranking_crm().items():
        table.to_parquet(isolated_settings.crm_dir / f"{name}.parquet")
    return isolated_settings
