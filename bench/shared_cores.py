"""The embedded model on cores it does not have to itself: one enrich process alone, two at once,
and one under a CPU quota (cgroup) below its thread count.

Each scenario starts fresh child processes that load the embedded model, warm a 16-sequence
decoder up, report ready, and then — all at the same instant — decode 32 MovieLens item prompts
over and over for ``--window`` seconds. A child's throughput is the tokens it decoded inside the
window (prompt + generated, read from the decoder's counters at the window's start and end), so
two children are measured over exactly the same seconds. Each scenario is given as the fraction of
the *solo* throughput of the same thread policy, and solo runs are repeated at the start and the
end (A…A order) so drift of the machine shows.

Thread policies (the other job, a LightGBM lambdarank fit like ``enrich evaluate``'s re-ranker,
runs with the same OpenMP wait policy, as it would in an enrich process):
- ``2``: two threads, GNU OpenMP's default wait (spin 300,000 times, then sleep; set explicitly
  as ``GOMP_SPINCOUNT=300000``, which enrich leaves alone) — enrich before this benchmark;
- ``2-passive``: two threads, ``OMP_WAIT_POLICY=PASSIVE`` (waiting threads sleep at once) —
  enrich's default now;
- ``1``: one thread (default wait): what one core gives, the reference for the quota.

    .venv/bin/python bench/shared_cores.py --window 20

The quota scenarios need root and cgroup v1 CPU control (they are skipped otherwise).
LightGBM's rate is stored under the same key as enrich's (``tokens_s``) but is rounds per second.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parent.parent
CGROUP = Path("/sys/fs/cgroup/cpu/enrich-bench")


def child(policy: str, window: float) -> None:
    """Load, warm up, say ready, wait for the start time on stdin, decode for ``window`` s."""
    import json as _json

    from enrich.llm import ChatEmbedded
    from enrich.llm.batched import BatchDecoder, grammar_for_schema
    from enrich.llm.embedded import ROLES, WORKER, chat_tokens
    from enrich.movielens import find_data_dir, load_ml100k_items, load_sample_catalogue
    from enrich.prompts import PromptTemplate
    from enrich.schemas import ItemProfile

    data = find_data_dir("ml-100k")
    items = (load_ml100k_items(data) if data else load_sample_catalogue()).head(32)
    prompt = PromptTemplate.for_items()
    chats = [
        [{"role": ROLES[m.type], "content": m.text} for m in prompt.render(v, ItemProfile)]
        for v in items.select("title", "genres").to_dicts()
    ]
    chat = ChatEmbedded(n_threads=int(policy[0]))
    llama = chat.llama()
    prompts = [chat_tokens(llama, c) for c in chats]
    grammar = grammar_for_schema(_json.dumps(ItemProfile.model_json_schema()))
    decoder = WORKER.submit(
        BatchDecoder,
        llama,
        n_seq=16,
        n_ctx_seq=1024,
        n_threads=int(policy[0]),
        run_on=WORKER.submit,
    ).result()
    for t, k in prompts[:2]:  # warm-up (short: under contention a full batch takes minutes)
        decoder.submit(t, prefix_len=k, grammar=grammar, max_tokens=16).result()
    print("ready", flush=True)
    start = float(sys.stdin.readline())
    time.sleep(max(0.0, start - time.time()))
    futures = [
        decoder.submit(t, prefix_len=k, grammar=grammar) for _ in range(40) for t, k in prompts
    ]
    s0 = decoder.stats.prompt_tokens + decoder.stats.completion_tokens
    done0 = sum(f.done() for f in futures)
    time.sleep(window)
    s1 = decoder.stats.prompt_tokens + decoder.stats.completion_tokens
    done1 = sum(f.done() for f in futures)
    result = {
        "tokens_s": (s1 - s0) / window,
        "items": done1 - done0,
    }
    print(_json.dumps(result), flush=True)
    os._exit(0)  # the queued requests are abandoned


def lightgbm_child(window: float) -> None:
    """The other job: a LightGBM lambdarank fit (as ``enrich evaluate``'s re-ranker runs, all
    available cores), repeated; its throughput is boosting rounds per second in the window."""
    import lightgbm as lgb
    import numpy as np

    from enrich.cores import available_cores

    rng = np.random.default_rng(0)
    x = rng.normal(size=(50_000, 40))
    y = (x[:, 0] + rng.normal(size=len(x)) > 1.5).astype(int)
    data = lgb.Dataset(x, y, group=[100] * (len(x) // 100), free_raw_data=False)
    params = {"objective": "lambdarank", "num_threads": available_cores(), "verbose": -1}
    lgb.train(params, data, num_boost_round=5)  # warm-up
    print("ready", flush=True)
    start = float(sys.stdin.readline())
    time.sleep(max(0.0, start - time.time()))
    end, rounds = start + window, 0

    def count(env: object) -> None:
        nonlocal rounds
        if time.time() > end:
            raise lgb.callback.EarlyStopException(0, [])
        rounds += 1

    while time.time() < end:
        lgb.train(params, data, num_boost_round=1_000, callbacks=[count])
    print(json.dumps({"tokens_s": rounds / window}), flush=True)
    os._exit(0)


def run(policies: list[str], window: float, quota: float | None = None) -> list[dict]:
    """Start one child per policy (in the quota's cgroup if given), together; their results."""
    env = os.environ.copy()
    procs = []
    for policy in policies:
        passive = policy.endswith("passive")
        wait = {"OMP_WAIT_POLICY": "PASSIVE"} if passive else {"GOMP_SPINCOUNT": "300000"}
        child_env = {k: v for k, v in env.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
        child_env |= wait
        p = subprocess.Popen(
            [sys.executable, __file__, "--child", policy.split("-")[0], "--window", str(window)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=child_env,
            cwd=ROOT,
            preexec_fn=_join_cgroup if quota else None,
        )
        procs.append(p)
    for p in procs:
        line = p.stdout.readline()  # type: ignore[union-attr]
        if line.strip() != "ready":
            raise SystemExit(f"child failed to start: {line!r}")
    start = time.time() + 0.5
    for p in procs:
        p.stdin.write(f"{start}\n")  # type: ignore[union-attr]
        p.stdin.flush()  # type: ignore[union-attr]
    results = [json.loads(p.stdout.readline()) for p in procs]  # type: ignore[union-attr]
    for p in procs:
        p.wait()
    return results


def _join_cgroup() -> None:
    (CGROUP / "cgroup.procs").write_text(str(os.getpid()))


def _make_cgroup(quota: float) -> bool:
    try:
        CGROUP.mkdir(exist_ok=True)
        period = int((CGROUP / "cpu.cfs_period_us").read_text())
        (CGROUP / "cpu.cfs_quota_us").write_text(str(int(quota * period)))
        return True
    except OSError as exc:
        print(f"no cgroup v1 CPU control here ({exc}): quota scenarios skipped")
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--window", type=float, default=30.0)
    parser.add_argument("--policies", nargs="+", default=["2", "2-passive", "1"])
    parser.add_argument("--quota", type=float, default=1.0, help="CPUs of the quota scenario")
    parser.add_argument("--child")
    parser.add_argument("--out", default=str(ROOT / "bench/results/shared_cores.json"))
    args = parser.parse_args()
    if args.child == "lightgbm":
        lightgbm_child(args.window)
        return
    if args.child:
        child(args.child, args.window)
        return

    solo: dict[str, list[float]] = {p: [] for p in [*args.policies, "lightgbm", "lightgbm-passive"]}
    rows: list[dict] = []

    def measure_solo() -> None:
        for policy in solo:
            (r,) = run([policy], args.window)
            solo[policy].append(r["tokens_s"])
            print(f"solo {policy}: {r['tokens_s']:.1f}/s", flush=True)

    def scenario(name: str, who: list[str], quota: float | None = None) -> None:
        results = run(who, args.window, quota)
        rows.append({"scenario": name, "policy": who[0], "who": who, "results": results})
        print(f"{name} {who}: {[round(r['tokens_s'], 1) for r in results]}", flush=True)

    measure_solo()
    for policy in args.policies:
        scenario("two enrich processes", [policy, policy])
    for policy in args.policies:
        other = "lightgbm-passive" if policy.endswith("passive") else "lightgbm"
        scenario("beside LightGBM", [policy, other])
    if _make_cgroup(args.quota):
        for policy in args.policies:
            scenario(f"quota {args.quota:g} CPU", [policy], args.quota)
        CGROUP.rmdir()
    measure_solo()

    mean = {k: sum(v) / len(v) for k, v in solo.items()}
    one_core = mean.get("1")
    print(f"\nsolo (tokens/s; LightGBM: rounds/s), {args.window:g}-s windows, start and end:")
    for policy, rates in solo.items():
        print(f"  {policy:10} {' / '.join(f'{r:.1f}' for r in rates)}")
    print(f"\n{'scenario':22} {'enrich threads':14} {'each, of its solo':>24} {'of 1 core':>10}")
    for row in rows:
        pairs = zip(row["results"], row["who"], strict=True)
        fractions = [r["tokens_s"] / mean[w] for r, w in pairs]
        row["of_solo"] = fractions
        row["of_one_core"] = row["results"][0]["tokens_s"] / one_core if one_core else None
        shown = " ".join(f"{w}:{f:.0%}" for w, f in zip(row["who"], fractions, strict=True))
        of_core = f"{row['of_one_core']:.0%}" if one_core else "-"
        print(f"{row['scenario']:22} {row['policy']:14} {shown:>24} {of_core:>10}")
    Path(args.out).write_text(
        json.dumps({"window_s": args.window, "solo": solo, "rows": rows}, indent=2) + "\n"
    )


if __name__ == "__main__":
    main()
