"""The earliest any schedule could finish a wave, under the sandbox's own model of AWS.

Derivation. Fix the wave: server i is launched (its MGN launch event) at L_i; its image takes C_i
to create; its copy into target t takes P_it (the modelled durations of the first attempts, drawn
per image identity, see ledger.py, so they do not depend on the schedule). Any schedule must:

1. Chain: create after launch and copy after create, so server i finishes no sooner than
   L_i + C_i + max_t P_it. Makespan >= max_i of that.
2. Copy tokens: CopyImage draws from a bucket per destination account and region holding B tokens
   and refilling R a second (B = 100, R = 1). The bucket is full at its first use, which is no
   earlier than the first copy's ready time r_(1) = min_i (L_i + C_i). So the k-th copy into t
   starts at s_k >= max(r_(k), r_(1) + (k - B) / R), where r_(k) is the k-th smallest ready time
   (k copies must be ready before the k-th can start). The N - k + 1 copies started at or after
   s_k include one at least as long as the (N - k + 1)-th shortest, d_(N-k+1). Makespan >=
   max_k s_k + d_(N-k+1). The same argument bounds CreateImage (source account, B = 50, R = 5;
   ready at launch, followed by create and the shortest copy).
3. Copy concurrency: at most M copies are pending per destination account and region (M = 300).
   For any instant x, the copies ready at or after x hold W(x) = sum of their P_it of work and run
   M at a time, so makespan >= x + W(x) / M; take the largest over x in the ready times.

The bound is the largest of these, measured from the wave's start (the first StartCutover). It
ignores API latency, invocation time, polling and failed attempts, all of which only add time.
"""
from __future__ import annotations

from dataclasses import dataclass

from automation.sandbox.settings import SandboxSettings


@dataclass(frozen=True)
class ServerWork:
    launch: float  # absolute time of the launch event
    create_s: float
    copy_s: dict[str, float]  # target key -> first-attempt copy duration


def paced_bound(ready: list[float], durations: list[float], burst: float, rate: float) -> float:
    """Part 2: the k-th call waits for k ready items and for the bucket; then the shortest remaining work."""
    if not ready:
        return 0.0
    ready, durations = sorted(ready), sorted(durations)
    n, best = len(ready), 0.0
    for k in range(1, n + 1):
        start = max(ready[k - 1], ready[0] + max(0.0, (k - burst) / rate))
        best = max(best, start + durations[n - k])
    return best


def concurrency_bound(ready: list[float], durations: list[float], limit: int) -> float:
    """Part 3: for each ready instant x, the work ready at or after x runs `limit` at a time."""
    pairs = sorted(zip(ready, durations))
    best, suffix = 0.0, 0.0
    for r, d in reversed(pairs):
        suffix += d
        best = max(best, r + suffix / limit)
    return best


def lower_bound(work: list[ServerWork], start: float, settings: SandboxSettings) -> dict:
    if not work:
        return {"lower_bound_s": 0.0, "parts": {}}
    throttling = settings.throttling
    chain = max(w.launch + w.create_s + max(w.copy_s.values(), default=0.0) for w in work)
    parts = {"chain": chain}
    burst, rate = throttling.bucket_for("CreateImage")
    parts["create_tokens"] = paced_bound([w.launch for w in work],
                                         [w.create_s + min(w.copy_s.values(), default=0.0) for w in work], burst, rate)
    targets = sorted({t for w in work for t in w.copy_s})
    copy_burst, copy_rate = throttling.bucket_for("CopyImage")
    for target in targets:
        ready = [w.launch + w.create_s for w in work if target in w.copy_s]
        durations = [w.copy_s[target] for w in work if target in w.copy_s]
        parts[f"copy_tokens:{target}"] = paced_bound(ready, durations, copy_burst, copy_rate)
        if throttling.copy_concurrency_enabled:
            parts[f"copy_concurrency:{target}"] = concurrency_bound(ready, durations,
                                                                   throttling.copy_concurrency_limit)
    relative = {name: round(value - start, 3) for name, value in parts.items()}
    return {"lower_bound_s": max(relative.values()), "parts": relative}
