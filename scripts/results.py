#!/usr/bin/env python3
"""Produces docs/results.md: how well each training policy ranks NAS-Bench-201 subnets on
Fashion-MNIST, against stand-alone ground truth, at the same training budget.

Steps (every run folder lands in runs/results/, finished runs are reused):
  1. a fixed, seeded set of archs stratified over op composition (one per (#conv3x3, #conv1x1)
     pair, non-degenerate cells only, topped up to --archs with seeded random ones);
  2. ground truth: `nas retrain` of every arch with 2 seeds (same macro, 1 epoch);
  3. per sampler and seed: `nas train` of the supernet (1 epoch), then `nas rank` of the arch set
     against the mean ground truth (batch-statistics BN, test split);
  4. the table: Kendall tau-b and Spearman rho (mean and spread over seeds), the share of
     correctly ordered pairs whose ground-truth gap exceeds the seed noise, wall time; the ground
     truth's own seed-to-seed figures as the ceiling.

Usage: scripts/results.py [--archs 30] [--channels 8] [--cells 1] [--epochs 1]
Needs scripts/setup.sh (binary, plugins, Fashion-MNIST). Uses only the Python standard library.
"""
import argparse, itertools, json, random, re, statistics, subprocess, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NAS = ROOT / "target/release/nas"
OPS = ["none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3"]
EDGES = [(1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2)]
SAMPLERS = [
    ("uniform", "nb201-uniform"),
    ("fairnas", "fairnas"),
    ("sandwich", "sandwich"),
    ("dynas over uniform", "dynas-uniform"),
    ("dynas over fairnas", "dynas-fairnas"),
]


def text(choices):
    groups = []
    for to in (1, 2, 3):
        entries = [f"{OPS[choices[EDGES.index((to, frm))]]}~{frm}" for frm in range(to)]
        groups.append("|" + "|".join(entries) + "|")
    return "+".join(groups)


def reaches_output(choices):
    live = {0}
    for to in (1, 2, 3):
        if any(choices[EDGES.index((to, frm))] != 0 and frm in live for frm in range(to)):
            live.add(to)
    return 3 in live


def arch_set(count, seed):
    rng = random.Random(seed)
    everything = [c for c in itertools.product(range(5), repeat=6) if reaches_output(c)]
    groups = {}
    for c in everything:
        groups.setdefault((c.count(3), c.count(2)), []).append(c)
    chosen = [rng.choice(groups[key]) for key in sorted(groups)]
    while len(chosen) < count:
        c = rng.choice(everything)
        if c not in chosen:
            chosen.append(c)
    return chosen


def nas(*args, log=None):
    started = time.time()
    result = subprocess.run([str(NAS), *map(str, args)], capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"nas {' '.join(map(str, args))} failed:\n{result.stderr}")
    if log:
        print(log, f"({time.time() - started:.0f}s)", flush=True)
    return result.stdout


def kendall_tau_b(x, y):
    n = len(x)
    conc = disc = tx = ty = 0
    for i in range(n):
        for j in range(i + 1, n):
            dx, dy = x[i] - x[j], y[i] - y[j]
            if dx == 0 and dy == 0:
                tx += 1; ty += 1
            elif dx == 0:
                tx += 1
            elif dy == 0:
                ty += 1
            elif (dx > 0) == (dy > 0):
                conc += 1
            else:
                disc += 1
    pairs = n * (n - 1) // 2
    return (conc - disc) / ((pairs - tx) * (pairs - ty)) ** 0.5


def ordered_share(pred, truth, noise):
    """Share of pairs with a ground-truth gap above `noise` that `pred` orders the same way."""
    good = total = 0
    for i in range(len(truth)):
        for j in range(i + 1, len(truth)):
            if abs(truth[i] - truth[j]) > noise:
                total += 1
                good += (pred[i] - pred[j]) * (truth[i] - truth[j]) > 0
    return good / total if total else float("nan"), total


def fmt(values):
    return f"{statistics.mean(values):.3f} ± {(max(values) - min(values)) / 2:.3f}"


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--archs", type=int, default=30)
    p.add_argument("--channels", type=int, default=8)
    p.add_argument("--cells", type=int, default=1)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--steps", type=int, default=0, help="train.steps instead of epochs (smoke tests)")
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--out", default=str(ROOT / "runs/results"))
    p.add_argument("--doc", default=str(ROOT / "docs/results.md"))
    args = p.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = ROOT / "data/fashion-mnist"
    common = [
        "--set", f"run.out_dir={out}", "--set", f"data.path={data}", "--set", "run.threads=2",
        "--set", f"space.config.channels={args.channels}", "--set", f"space.config.cells_per_stage={args.cells}",
        "--set", f"train.epochs={args.epochs}", "--set", f"train.steps={args.steps}",
        "--set", "train.progress=false",
    ]
    archs = arch_set(args.archs, seed=201)
    arch_file = out / "archs.txt"
    arch_file.write_text("".join(text(c) + "\n" for c in archs))

    # 1. Ground truth.
    truth_file = out / "ground-truth.jsonl"
    done = set()
    if truth_file.exists():
        done = {(tuple(r["choices"]), r["seed"]) for r in map(json.loads, truth_file.read_text().splitlines())}
    for i, c in enumerate(archs):
        missing = [s for s in seeds if (c, s) not in done]
        if missing:
            nas("retrain", *common, "--arch", json.dumps(list(c)), "--seeds", ",".join(map(str, missing)),
                "--ground-truth", truth_file, log=f"[truth {i + 1}/{len(archs)}] {text(c)}")
    records = [json.loads(line) for line in truth_file.read_text().splitlines()]
    by_arch = {}
    for r in records:
        by_arch.setdefault(tuple(r["choices"]), {})[r["seed"]] = r["accuracy"]
    truth_runs = {s: [by_arch[c][s] for c in archs] for s in seeds}
    truth_mean = [statistics.mean(by_arch[c][s] for s in seeds) for c in archs]
    noise = statistics.mean(abs(by_arch[c][seeds[0]] - by_arch[c][seeds[1]]) for c in archs)
    truth_tau = kendall_tau_b(truth_runs[seeds[0]], truth_runs[seeds[1]])
    truth_share, truth_pairs = ordered_share(truth_runs[seeds[1]], truth_runs[seeds[0]], noise)
    retrain_seconds = statistics.mean(r["seconds"] for r in records)

    # 2. Supernets and their rankings.
    rows = []
    for label, recipe in SAMPLERS:
        taus, rhos, shares, seconds = [], [], [], []
        for seed in seeds:
            name = f"{recipe}-s{seed}"
            run = out / name
            if not (run / "checkpoints/latest.json").exists():
                stdout = nas("train", "-c", ROOT / f"examples/configs/{recipe}.toml", *common,
                             "--set", f"run.name={name}", "--set", f"run.seed={seed}", log=f"[train] {name}")
            else:
                stdout = (run / "train.log").read_text() if (run / "train.log").exists() else ""
            match = re.search(r"in ([0-9.]+)s", stdout)
            if match:
                (run / "train.log").write_text(stdout)
                seconds.append(float(match.group(1)))
            reports = sorted((run / "rank").glob("rank-*.json"), key=lambda p: p.stat().st_mtime)
            if not reports:
                nas("rank", "--run", run, "--ground-truth", truth_file, "--archs-file", arch_file,
                    "--bn", "batch-stats", log=f"[rank] {name}")
                reports = sorted((run / "rank").glob("rank-*.json"), key=lambda p: p.stat().st_mtime)
            report = json.loads(reports[-1].read_text())
            supernet = [a["supernet"] for a in report["archs"]]
            truth = [a["truth"] for a in report["archs"]]
            taus.append(report["kendall_tau"])
            rhos.append(report["spearman_rho"])
            shares.append(ordered_share(supernet, truth, noise)[0])
        rows.append((label, taus, rhos, shares, seconds))

    length = f"{args.steps} steps" if args.steps else f"{args.epochs} epoch(s)"
    lines = [
        "# Results: ranking NAS-Bench-201 subnets on Fashion-MNIST",
        "",
        "Produced by the committed script, with this exact command (finished runs in runs/results/ are",
        "reused, so rerunning only redoes what is missing):",
        "",
        f"`python3 scripts/results.py --archs {args.archs} --channels {args.channels} --cells {args.cells} --epochs {args.epochs} --steps {args.steps} --seeds {args.seeds}`",
        "",
        f"- Macro: NB201 cells, C = {args.channels}, N = {args.cells}, Fashion-MNIST (28x28, 1 channel), batch 64.",
        f"- Arch set: {len(archs)} archs, one per (#nor_conv_3x3, #nor_conv_1x1) composition among cells whose",
        "  output depends on the input, topped up with seeded random ones (`runs/results/archs.txt`).",
        f"- Ground truth: each arch trained stand-alone (`nas retrain`, {length}, SGD lr 0.05 cosine, Nesterov,",
        f"  wd 5e-4) with seeds {args.seeds}; test accuracy with its own BN statistics; mean over seeds.",
        f"  Mean stand-alone training time {retrain_seconds:.0f} s.",
        f"- Supernets: the recipes in `examples/configs/`, {length} each (same number of optimizer steps),",
        "  seeds " + args.seeds + "; subnets evaluated with batch-statistics BN on the test split.",
        f"- Seed noise: mean |acc(seed {seeds[0]}) - acc(seed {seeds[1]})| of the ground truth = {noise:.2f} points;",
        f"  {truth_pairs} of {len(archs) * (len(archs) - 1) // 2} arch pairs differ by more than that.",
        "",
        "| training policy | Kendall tau-b | Spearman rho | correctly ordered pairs (gap > noise) | train wall time (s) |",
        "|---|---|---|---|---|",
        f"| ground truth, seed {seeds[0]} vs seed {seeds[1]} (ceiling) | {truth_tau:.3f} | - | {truth_share:.3f} | - |",
    ]
    for label, taus, rhos, shares, seconds in rows:
        wall = (f"{statistics.mean(seconds):.0f} ± {(max(seconds) - min(seconds)) / 2:.0f}"
                if seconds else "-")
        lines.append(f"| {label} | {fmt(taus)} | {fmt(rhos)} | {fmt(shares)} | {wall} |")
    lines += ["", "## The arch set and its ground truth", "",
              f"| arch | test accuracy, seed {seeds[0]} | seed {seeds[1]} |", "|---|---|---|"]
    for c in sorted(archs, key=lambda c: -statistics.mean(by_arch[c][s] for s in seeds)):
        escaped = text(c).replace("|", "\\|")  # a pipe inside a table cell must be escaped
        lines.append(f"| `{escaped}` | {by_arch[c][seeds[0]]:.2f} | {by_arch[c][seeds[1]]:.2f} |")
    lines += [
        "",
        "Values are mean ± half the range over the seeds. With 2 seeds and ~30 archs, differences",
        "smaller than the spread are not evidence either way.",
        "",
    ]
    Path(args.doc).write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
