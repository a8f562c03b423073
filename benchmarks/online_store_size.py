"""Redis memory per entity of the materialized online store: the figure docs/scaling.md
sizes a production Redis from.

Ingests a synthetic CRM into a private feature repo, applies it and materializes into
one Redis database (``--redis``, default ``localhost:6379,db=13``: it must be empty, and
is emptied again at the end), then reads Redis's own ``MEMORY USAGE`` of every key and
prints bytes per key by kind (deal, account, owner), next to ``used_memory`` before and
after. Usage:

    uv run python benchmarks/online_store_size.py [--deals 2000] [--redis localhost:6379,db=13]
"""

from __future__ import annotations

import argparse
import logging
import shutil
import tempfile
from collections import Counter
from pathlib import Path

import pandas as pd
import redis

from leadscore.config import load_settings
from leadscore.crm.synth import generate_crm, write_export
from leadscore.features.store import apply_repo, materialize
from pipelines.steps import ingest

AS_OF = pd.Timestamp("2025-06-01", tz="UTC")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deals", type=int, default=2000)
    parser.add_argument("--redis", default="localhost:6379,db=13")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    host, _, rest = args.redis.partition(":")
    port, _, db = rest.partition(",db=")
    client = redis.Redis(host=host, port=int(port), db=int(db or 0))
    if client.dbsize():
        raise SystemExit(f"{args.redis} is not empty: choose an empty database")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        shutil.copytree(
            Path(__file__).parents[1] / "features",
            root / "features",
            ignore=shutil.ignore_patterns("data", "__pycache__"),
        )
        settings = load_settings(
            feature_repo=root / "features",
            feature_store_yaml="feature_store.redis.yaml",
            redis=args.redis,
        )
        crm = generate_crm(args.deals, seed=7, as_of=AS_OF)
        write_export(crm, root / "export")
        before = client.info("memory")["used_memory"]
        try:
            ingest(root / "export", settings)
            apply_repo(settings)
            materialize(settings, AS_OF.to_pydatetime())
            after = client.info("memory")["used_memory"]
            sizes: Counter[str] = Counter()
            keys: Counter[str] = Counter()
            for key in client.scan_iter(count=1000):
                kind = next(
                    (k for k in ("deal_id", "account_id", "owner_id") if k.encode() in key),
                    "other",
                )
                sizes[kind] += client.memory_usage(key, samples=0) or 0
                keys[kind] += 1
        finally:
            client.flushdb()
    print(f"{args.deals:,} deals materialized; Redis used_memory +{(after - before) / 1e6:.1f} MB")
    for kind in keys:
        print(f"{kind:10s} {keys[kind]:8,d} keys {sizes[kind] / keys[kind]:8,.0f} bytes/key")


if __name__ == "__main__":
    main()
