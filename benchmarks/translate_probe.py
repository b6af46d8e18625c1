"""Equal-time probes for French-to-English translation: which configuration learns most in a few minutes of
this machine, judged on the validation books only (the test books are never read here).

    python benchmarks/translate_probe.py                         # the probes behind the CPU defaults
    python benchmarks/translate_probe.py --seconds 120 model=lstm,lr=2e-3 model=transformer,width=192

Each configuration (comma-separated `bible-fr-en-translate` keys over the task's defaults) trains for
`--seconds` of wall clock: linear warmup, then a cosine over the steps its first 20 steps say will fit, with
the task's optimizer, batches and gradient clipping. Printed, one JSON line each: the steps, pairs/s, the
epochs covered, and the teacher-forced cross-entropy (no label smoothing) over every validation verse. The
cross-entropy is per target token, so it compares configurations of the same vocabulary only. A short probe
ranks how fast configurations start, not where they end: the translate-race runs the chosen ones for
30 minutes.
"""
from __future__ import annotations

import argparse
import json
import math
import time

import torch
import torch.nn.functional as F

PROBES = ["model=lstm,lr=1e-3,warmup_steps=50", "model=lstm,lr=3e-3,warmup_steps=50",
          "model=transformer,encoder_layers=3,decoder_layers=3,lr=1e-3,warmup_steps=50",
          "model=transformer,lr=2e-3,warmup_steps=50"]


def probe(spec: str, seconds: float) -> dict:
    from pillars import tasks, train
    from pillars.tasks.translation import trimmed
    from pillars.train.optim import make_optimizer
    task = "bible-fr-en-translate"
    cfg = train.resolve_config(task, overrides=dict(kv.split("=", 1) for kv in spec.split(",")))
    torch.manual_seed(0)
    job = tasks.get(task).make_job(cfg, torch.device("cpu"), None)
    model = job.model.train()
    opt = make_optimizer(model, cfg, torch.device("cpu"))
    warm, lr0, total = cfg["warmup_steps"], cfg["lr"], None
    step = pairs = 0
    start = time.time()
    while time.time() - start < seconds:
        if step == 20:
            total = int(seconds / ((time.time() - start) / 20))
        decay = 0.5 * (1 + math.cos(math.pi * min(1.0, step / total))) if total and step >= warm else 1.0
        for group in opt.param_groups:
            group["lr"] = lr0 * min(1.0, (step + 1) / warm) * decay
        batch = job.train.batch(step)
        loss = job.loss(model, batch)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg["grad_clip"] or float("inf"))
        opt.step()
        pairs += len(batch[0])
        step += 1
    took = time.time() - start
    model.eval()
    src, tgt, _ = job.valid
    total_ce = tokens = 0.0
    with torch.no_grad():
        for i in range(0, len(src), 128):
            s, t = trimmed(src[i:i + 128]), trimmed(tgt[i:i + 128])
            logits, target = model(s, t[:, :-1]).float(), t[:, 1:]
            total_ce += F.cross_entropy(logits.flatten(0, 1), target.flatten(), ignore_index=0, reduction="sum").item()
            tokens += (target != 0).sum().item()
    return {"spec": spec, "steps": step, "pairs_per_s": round(pairs / took, 1), "valid_ce": round(total_ce / tokens, 4),
            "epochs": round(pairs / len(job.train), 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("probes", nargs="*", default=PROBES, help="KEY=VALUE,KEY=VALUE configurations")
    ap.add_argument("--seconds", type=float, default=200.0, help="training wall clock of each probe")
    args = ap.parse_args()
    for spec in args.probes:
        print(json.dumps(probe(spec, args.seconds)), flush=True)


if __name__ == "__main__":
    main()
