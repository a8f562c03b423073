"""Serving latency and throughput: LeadScorer over HTTP, against LightGBM in-process and `mlflow models serve`.

    uv run python benchmarks/serving_latency.py [--rounds 200] [--leaves 31] [--seconds 10] [--json out.json]

In one run, on one synthetic CRM and one model (trained here, registered in a private
MLflow store, packaged by ``serving.package``, served by ``leadscore serve``):

* one deal with reasons over HTTP: p50/p99 latency (sequential requests) and
  requests/s (``--clients`` concurrent clients);
* batches of 100 and 1,000 deals with reasons over HTTP, the deals sent with their
  activity lists and with pre-summarised activity, as explained deals/s;
* the same batches in-process: the booster's predict and pred_contrib, one thread; for
  the batch goal, pred_contrib is timed again just before each HTTP batch and the
  goal's ratio is the median of those side-by-side pairs;
* ``mlflow models serve`` on the same registered model, predictions only, same measures.

It prints medians and the ratios the serving goals are stated in. The client runs on
the same machine as the servers and takes some of the same cores; the load average
before and after is printed because other work on the machine moves every figure.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

GOALS = {
    "single_p50_ms": 6.0,
    "single_p99_ms": 12.0,
    "single_rps": 250.0,
    "batch_over_pred_contrib": 1.5,
    "throughput_over_mlflow": 2.0,
    "p50_over_mlflow": 0.5,
}
BIN = Path(sys.executable).parent


def timed(fn: Callable[[], Any], repeat: int, warmup: int = 1) -> list[float]:
    """Seconds per call."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def throughput(
    url: str, bodies: list[bytes], clients: int, seconds: float, headers: dict[str, str]
) -> float:
    """Requests per second from ``clients`` threads, each on its own keep-alive connection."""
    counts = [0] * clients
    stop = time.monotonic() + seconds

    def run(k: int) -> None:
        with httpx.Client(headers=headers, timeout=60) as c:
            for body in itertools.islice(itertools.cycle(bodies), k, None, clients):
                if time.monotonic() >= stop:
                    return
                c.post(url, content=body).raise_for_status()
                counts[k] += 1

    threads = [threading.Thread(target=run, args=(k,)) for k in range(clients)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts) / (time.monotonic() - start)


def measure_http(
    url: str,
    headers: dict[str, str],
    singles: list[bytes],
    batches: dict[str, tuple[int, bytes]],
    args: argparse.Namespace,
    baselines: dict[int, Callable[[], Any]] | None = None,
) -> dict[str, Any]:
    """Sequential single-item latency, concurrent single-item throughput, batch times.

    With ``baselines`` (a function per batch size), each batch request is paired with a
    call of its baseline just before it, and the ratio is the median of the pairs'
    ratios: on a shared machine whose speed drifts by tens of percent within minutes,
    only figures taken side by side compare.
    """
    with httpx.Client(headers=headers, timeout=300) as c:
        bodies = itertools.cycle(singles)
        one = timed(
            lambda: c.post(url, content=next(bodies)).raise_for_status(), args.single, warmup=50
        )
        out: dict[str, Any] = {
            "single": {
                "p50_ms": float(np.percentile(one, 50) * 1000),
                "p99_ms": float(np.percentile(one, 99) * 1000),
            }
        }
        for name, (n, body) in batches.items():
            c.post(url, content=body).raise_for_status()  # warm-up
            http, local = [], []
            for _ in range(10 if n <= 100 else 5):
                if baselines:
                    local += timed(baselines[n], 1, warmup=0)
                http += timed(lambda body=body: c.post(url, content=body).raise_for_status(), 1, 0)
            secs = statistics.median(http)
            out[name] = {"deals": n, "ms": secs * 1000, "deals_per_s": n / secs}
            if local:
                out[name]["baseline_ms"] = statistics.median(local) * 1000
                out[name]["over_baseline"] = statistics.median(
                    h / b for h, b in zip(http, local, strict=True)
                )
    out["single"]["rps"] = throughput(url, singles, args.clients, args.seconds, headers)
    return out


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--deals", type=int, default=1500, help="Synthetic deals (payloads and training)."
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=90,
        help="Trees (`leadscore train` stops near 80-90 on this CRM).",
    )
    parser.add_argument("--leaves", type=int, default=31, help="Leaves per tree.")
    parser.add_argument(
        "--single", type=int, default=400, help="Sequential single-deal requests timed."
    )
    parser.add_argument(
        "--seconds", type=float, default=10.0, help="Duration of each throughput run."
    )
    parser.add_argument(
        "--clients", type=int, default=4, help="Concurrent clients in throughput runs."
    )
    parser.add_argument(
        "--json", type=Path, help="Also write the figures here (e.g. benchmarks/results/)."
    )
    args = parser.parse_args(argv)

    from tests.conftest import free_port
    from tests.serving_fixture import running_server, serving_environment

    base = Path(tempfile.mkdtemp(prefix="leadscore-bench-"))
    settings, env = serving_environment(base)
    os.environ.update(env)  # before anything opens the BentoML model store
    # `mlflow models serve` starts uvicorn by name, from the environment's bin folder.
    os.environ["PATH"] = f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"

    from serving.payload import payload_features
    from serving.schemas import DealIn
    from tests.serving_fixture import (
        AS_OF,
        crm_payloads,
        prepare_champion,
        synthetic_tables,
        train_small_model,
        with_activity_summaries,
    )

    results: dict[str, Any] = {"load_average_before": os.getloadavg(), "cores": os.cpu_count()}
    print(
        f"load average {results['load_average_before']} on {results['cores']} cores; preparing...",
        flush=True,
    )
    tables = synthetic_tables(args.deals)
    model, frame = train_small_model(tables, rounds=args.rounds, num_leaves=args.leaves)
    prepare_champion(settings, tables, model, frame)
    payloads = [p for p in crm_payloads(tables) if p["created_at"] <= AS_OF.isoformat()][:1000]
    summarised = with_activity_summaries(payloads, tables, AS_OF)
    results["model"] = {"trees": model.booster.current_iteration(), "leaves": args.leaves}
    results["activities_per_deal"] = statistics.mean(len(p["activities"]) for p in payloads)

    # ---------------------------------------------------------------- in-process
    columns = payload_features([DealIn.model_validate(p) for p in payloads], AS_OF.to_pydatetime())
    X = model.encode_columns(columns)
    inproc = {}
    for n in (1, 100, 1000):
        rows, reps = np.ascontiguousarray(X[:n]), 200 if n == 1 else 20 if n == 100 else 7
        inproc[n] = {
            "predict_ms": statistics.median(timed(lambda rows=rows: model.raw_score(rows), reps))
            * 1000,
            "pred_contrib_ms": statistics.median(
                timed(lambda rows=rows: model.contributions(rows), reps)
            )
            * 1000,
        }
    results["in_process"] = inproc
    print_in_process(results)

    # ---------------------------------------------------------------- LeadScorer over HTTP
    def score_body(deals: list[dict[str, Any]]) -> bytes:
        return json.dumps({"deals": deals, "as_of": AS_OF.isoformat()}).encode()

    token = "bench-token"
    port = free_port()
    batches = {
        f"batch_{n}_{kind}": (n, score_body(deals[:n]))
        for kind, deals in (("activity_lists", payloads), ("activity_summaries", summarised))
        for n in (100, 1000)
    }
    with running_server(
        [str(BIN / "leadscore"), "serve", "--port", str(port), "--host", "127.0.0.1"],
        {**os.environ, "LEADSCORE_API_TOKEN": token},
        f"http://127.0.0.1:{port}/readyz",
    ):
        results["leadscore"] = measure_http(
            f"http://127.0.0.1:{port}/score",
            {"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            [score_body([p]) for p in payloads[:200]],
            batches,
            args,
            {n: lambda n=n: model.contributions(np.ascontiguousarray(X[:n])) for n in (100, 1000)},
        )
    print_http("LeadScorer over HTTP, with reasons", results["leadscore"])

    # ---------------------------------------------------------------- mlflow models serve
    columns = list(model.features)

    def frame_body(rows: np.ndarray) -> bytes:
        data = [[None if np.isnan(v) else float(v) for v in row] for row in rows]
        return json.dumps({"dataframe_split": {"columns": columns, "data": data}}).encode()

    port = free_port()
    cmd = [
        str(BIN / "mlflow"),
        "models",
        "serve",
        "-m",
        f"models:/{settings.model_name}@champion",
        "-h",
        "127.0.0.1",
        "-p",
        str(port),
        "--env-manager",
        "local",
        "-w",
        "2",
    ]
    with running_server(cmd, dict(os.environ), f"http://127.0.0.1:{port}/ping"):
        results["mlflow_models_serve"] = measure_http(
            f"http://127.0.0.1:{port}/invocations",
            {"Content-Type": "application/json"},
            [frame_body(X[i : i + 1]) for i in range(200)],
            {f"batch_{n}": (n, frame_body(X[:n])) for n in (100, 1000)},
            args,
        )
    print_http("mlflow models serve, predictions only (2 workers)", results["mlflow_models_serve"])

    # ---------------------------------------------------------------- ratios
    ours, theirs = results["leadscore"], results["mlflow_models_serve"]
    results["ratios"] = {
        **{
            f"{name}_over_pred_contrib": v["over_baseline"]
            for name, v in ours.items()
            if name.startswith("batch_")
        },
        "throughput_over_mlflow": ours["single"]["rps"] / theirs["single"]["rps"],
        "p50_over_mlflow": ours["single"]["p50_ms"] / theirs["single"]["p50_ms"],
    }
    results["load_average_after"] = os.getloadavg()
    print_ratios(results)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2, default=str))
    shutil.rmtree(base, ignore_errors=True)
    return results


def _verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def print_in_process(r: dict[str, Any]) -> None:
    print(
        f"\nmodel: {r['model']['trees']} trees x {r['model']['leaves']} leaves; "
        f"{r['activities_per_deal']:.0f} activities per deal"
    )
    print("in-process LightGBM, one thread (median ms):")
    for n, v in r["in_process"].items():
        print(
            f"  {n:>5} deals  predict {v['predict_ms']:9.2f}   pred_contrib {v['pred_contrib_ms']:9.2f}"
        )


def print_http(title: str, r: dict[str, Any]) -> None:
    s = r["single"]
    print(f"\n{title}:")
    print(
        f"  one deal       p50 {s['p50_ms']:7.2f} ms   p99 {s['p99_ms']:7.2f} ms   {s['rps']:6.0f} req/s"
    )
    for name, v in r.items():
        if name.startswith("batch_"):
            paired = (
                f"   in-process pred_contrib beside it {v['baseline_ms']:7.1f} ms"
                if "baseline_ms" in v
                else ""
            )
            print(f"  {name:30s} {v['ms']:9.1f} ms   {v['deals_per_s']:7.0f} deals/s{paired}")


def print_ratios(r: dict[str, Any]) -> None:
    s, ratios = r["leadscore"]["single"], r["ratios"]
    checks = [
        (
            "one deal p50 (ms)",
            s["p50_ms"],
            s["p50_ms"] <= GOALS["single_p50_ms"],
            f"<= {GOALS['single_p50_ms']:g}",
        ),
        (
            "one deal p99 (ms)",
            s["p99_ms"],
            s["p99_ms"] <= GOALS["single_p99_ms"],
            f"<= {GOALS['single_p99_ms']:g}",
        ),
        (
            "one deal req/s",
            s["rps"],
            s["rps"] >= GOALS["single_rps"],
            f">= {GOALS['single_rps']:g}",
        ),
    ]
    checks += [
        (name, v, v <= GOALS["batch_over_pred_contrib"], f"<= {GOALS['batch_over_pred_contrib']:g}")
        for name, v in ratios.items()
        if name.startswith("batch_")
    ]
    checks += [
        (
            "throughput / mlflow",
            ratios["throughput_over_mlflow"],
            ratios["throughput_over_mlflow"] >= GOALS["throughput_over_mlflow"],
            ">= 2",
        ),
        (
            "p50 / mlflow p50",
            ratios["p50_over_mlflow"],
            ratios["p50_over_mlflow"] <= GOALS["p50_over_mlflow"],
            "<= 0.5",
        ),
    ]
    print("\ngoals:")
    for name, value, ok, goal in checks:
        print(f"  {name:50s} {value:8.2f}  goal {goal:7s} {_verdict(ok)}")
    print(f"\nload average before {r['load_average_before']}, after {r['load_average_after']}")


if __name__ == "__main__":
    main()
