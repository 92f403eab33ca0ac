"""Benchmark: searching a large gallery file (gallery/), exact and approximate.

A synthetic gallery of ``--n`` items (default 1,000,000) with two branches of ``--dim`` (default
512, the default ``model.embed_dim``) is written in the gallery layout (HDF5). The vectors are
clustered and of low intrinsic dimension, as learnt embeddings are (``--clusters`` centres and a
spread in a 32-dimensional space, mapped to ``--dim``, plus a little noise; absolute values, as
order embeddings are). How well an approximate index does depends on the data: this is why
``demo.py index --ann`` measures it on the user's own gallery. Each phase runs in its own process, so its peak
memory is its own:

- ``floor``: the gallery read into memory once, then ``numpy.sum`` over it: the memory-bandwidth
  floor a scan cannot beat (its time, per pass).
- ``exact``: ``gallery.topk.exact_search`` over the gallery file (memory-mapped, chunk by chunk), top 10, for
  batches of 1 and ``--batch`` queries: queries/s, and its time per batch against the floor.
- ``ann``: a faiss index (``--ann hnsw|ivf``) over the same vectors: build time, and per search
  effort (``--effort``: HNSW's efSearch or IVF's nprobe) the recall@10 of the shortlist (re-scored
  exactly) against the exact scan, queries/s and speed-up over the exact scan.

Peak memory is the process's peak resident size less its size before the phase began, against the
gallery's size. Times are the best of ``--repeats`` (the page cache is warm after the first).

    python benchmarks/bench_gallery.py --ann none            # 1M items, order measure, exact scan (4 GB of disk)
    python benchmarks/bench_gallery.py --measure cosine      # and a faiss HNSW shortlist (its build takes a while)
    python benchmarks/bench_gallery.py --n 100000 --measure cosine --ann ivf --effort 16 64 256
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from anywhere

BRANCHES = ("abstract", "grounded")
WEIGHTS = {"abstract": 0.5, "grounded": 0.5}


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def current_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


LATENT = 32  # the synthetic vectors' intrinsic dimension


def synth(rng: np.random.Generator, n: int, dim: int, centres: np.ndarray, basis: np.ndarray,
          measure: str) -> np.ndarray:
    """``n`` clustered vectors: a cluster centre plus a spread in a ``LATENT``-dimensional space,
    mapped to ``dim`` dimensions by ``basis``, plus a little isotropic noise."""
    z = centres[rng.integers(0, len(centres), n)] + 0.5 * rng.normal(size=(n, LATENT)).astype(np.float32)
    x = np.abs(z @ basis + 0.02 * rng.normal(size=(n, dim)).astype(np.float32))
    if measure == "cosine":
        x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32)


def make_space(seed: int, dim: int, clusters: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return {b: (rng.normal(size=(clusters, LATENT)).astype(np.float32),
                rng.normal(size=(LATENT, dim)).astype(np.float32) / np.sqrt(LATENT)) for b in BRANCHES}


def write(path: str, args) -> None:
    import h5py

    space = make_space(0, args.dim, args.clusters)
    rng = np.random.default_rng(1)
    with h5py.File(path, "w") as f:
        vec = f.create_group("vectors")
        for b in BRANCHES:
            d = vec.create_dataset(b, shape=(args.n, args.dim), dtype=args.dtype)
            for lo in range(0, args.n, 100_000):
                hi = min(lo + 100_000, args.n)
                d[lo:hi] = synth(rng, hi - lo, args.dim, *space[b], args.measure)


def queries(args, n: int) -> dict[str, np.ndarray]:
    space = make_space(0, args.dim, args.clusters)  # the gallery's space, other draws
    rng = np.random.default_rng(2)
    return {b: synth(rng, n, args.dim, *space[b], args.measure) for b in BRANCHES}


def best_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def phase_floor(path: str, args) -> dict:
    import h5py

    base = current_mb()
    with h5py.File(path, "r") as f:
        arr = {b: f["vectors"][b][()] for b in BRANCHES}
    seconds = best_time(lambda: [float(a.sum(dtype=np.float32)) for a in arr.values()], args.repeats)
    return {"seconds": seconds, "peak_mb": rss_mb() - base}


def phase_exact(path: str, args) -> dict:
    import h5py

    from gallery.store import vector_views
    from gallery.topk import exact_search

    base = current_mb()
    out = {}
    with h5py.File(path, "r") as f:
        vectors = vector_views(f, path)
        for batch in (1, args.batch):
            q = queries(args, batch)
            seconds = best_time(lambda: exact_search(q, vectors, WEIGHTS, args.measure, "images", 10), args.repeats)
            out[str(batch)] = {"seconds": seconds, "queries_per_s": batch / seconds}
    out["peak_mb"] = rss_mb() - base
    return out


def phase_ann(path: str, args) -> dict:
    import h5py

    from gallery.ann import build_index, shortlist_search
    from gallery.store import vector_views
    from gallery.topk import exact_search

    base = current_mb()
    with h5py.File(path, "r") as f:
        vectors = vector_views(f, path)
        t = time.perf_counter()
        index = build_index(vectors, WEIGHTS, args.measure, args.ann)
        build = time.perf_counter() - t
        q = queries(args, args.batch)
        _, exact = exact_search(q, vectors, WEIGHTS, args.measure, "images", 10)
        rows = []
        for effort in args.effort:
            def search(qq, effort=effort):
                return shortlist_search(index, qq, vectors, WEIGHTS, args.measure, "images", 10, args.shortlist, effort)

            _, approx = search(q)
            recall = float(np.mean([len(set(e) & set(a)) / 10 for e, a in zip(exact.tolist(), approx.tolist())]))
            per = {}
            for batch in (1, args.batch):
                qb = {b: v[:batch] for b, v in q.items()}
                seconds = best_time(lambda: search(qb), args.repeats)
                per[str(batch)] = {"seconds": seconds, "queries_per_s": batch / seconds}
            rows.append({"effort": effort, "recall_at_10": recall, **per})
    return {"build_seconds": build, "rows": rows, "peak_mb": rss_mb() - base}


def run_phase(name: str, path: str, argv: list[str]) -> dict:
    out = subprocess.run([sys.executable, __file__, "--phase", name, "--file", path, *argv], capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--dim", type=int, default=512, help="per branch (two branches)")
    p.add_argument("--measure", default="order", choices=("order", "cosine"))
    p.add_argument("--dtype", default="float32", choices=("float32", "float16"))
    p.add_argument("--clusters", type=int, default=2000)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--ann", default="hnsw", choices=("hnsw", "ivf", "none"))
    p.add_argument("--effort", type=int, nargs="+", default=[64, 128],
                   help="search efforts to try: HNSW's efSearch or IVF's nprobe")
    p.add_argument("--shortlist", type=int, default=200)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--phase", help=argparse.SUPPRESS)
    p.add_argument("--file", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.phase:
        print(json.dumps({"floor": phase_floor, "exact": phase_exact, "ann": phase_ann}[args.phase](args.file, args)))
        return
    argv = [a for a in sys.argv[1:]]
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        path = os.path.join(tmp, "gallery.h5")
        t = time.perf_counter()
        write(path, args)
        size_mb = os.path.getsize(path) / 2**20
        print(f"gallery: {args.n:,} items x 2 branches x {args.dim} ({args.dtype}, {args.measure}), "
              f"{size_mb:,.0f} MiB, written in {time.perf_counter() - t:.0f} s")
        floor = run_phase("floor", path, argv)
        print(f"memory-read floor (numpy sum over the gallery in memory): {floor['seconds']:.3f} s per pass")
        exact = run_phase("exact", path, argv)
        for batch in ("1", str(args.batch)):
            e = exact[batch]
            print(f"exact scan, batch {batch:>3}: {e['queries_per_s']:8.2f} queries/s, {e['seconds']:.3f} s per batch "
                  f"= {e['seconds'] / floor['seconds']:.2f}x the floor")
        print(f"exact scan peak memory: {exact['peak_mb']:,.0f} MiB = {exact['peak_mb'] / size_mb:.3f}x the gallery")
        if args.ann != "none":
            ann = run_phase("ann", path, argv)
            print(f"faiss {args.ann} index built in {ann['build_seconds']:.0f} s; peak memory {ann['peak_mb']:,.0f} MiB "
                  f"= {ann['peak_mb'] / size_mb:.2f}x the gallery")
            for r in ann["rows"]:
                for batch in ("1", str(args.batch)):
                    speed = exact[batch]["seconds"] / r[batch]["seconds"]
                    print(f"  effort {r['effort']:>3}, batch {batch:>3}: recall@10 {r['recall_at_10']:.3f}, "
                          f"{r[batch]['queries_per_s']:8.1f} queries/s = {speed:.1f}x the exact scan")


if __name__ == "__main__":
    main()
