"""Epoch read time and peak memory of one dataset through ``OfflineDataModule``: HDF5 against Zarr.

One dataset, two stores of it: the HDF5 file as ``TrajectoryWriter`` writes it (what ``pdebench
generate`` writes: gzip level 4 with shuffle, ~1 MiB chunks) and its ``pdebench export --format zarr``
store (Blosc zstd level 3 with byte shuffle, ~4 MiB chunks along ``sample``). The data are
``--samples`` trajectories of one 2-D field, ``--frames`` frames of ``--grid``² points (float32, default
512 x 16 x 128² = 512 MiB uncompressed): a few random travelling waves per trajectory, smooth as solver
output is, every value a full float32.

Each measurement runs in a fresh process (so its peak RSS is its own): ``OfflineDataModule(path,
task="initial_to_final", batch_size=32)``, ``setup("fit")`` (which reads every trajectory of the three
splits, :class:`~pdebench.io.trajectory_file.TrajectoryFile` on both formats) and one pass over the
train loader. Reported: the read (construction + setup), the whole epoch (read + the pass), the peak
RSS and the peak RSS above the process's RSS before the module was built (the imports).

The page cache is emptied before every cold run: by default ``os.posix_fadvise(POSIX_FADV_DONTNEED)``
on every file of the HDF5 file / the store (after an fsync), which touches only these files (the
machine is shared); ``--drop system`` writes 1 to ``/proc/sys/vm/drop_caches`` instead (root only).
``fincore`` (util-linux), where present, reports the bytes of the files still resident after the drop.
The two formats alternate over ``--rounds`` cold rounds, then ``--rounds`` warm ones (cache kept, after one
run each that fills it); medians.
Figures are ratios against HDF5 in the same run; one ``BENCH_JSON`` line per format and mode.

Run: ``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_zarr_read.py`` (about 4 min on 2 cores,
1 GiB of disk under ``--folder``, default a temporary folder that is removed afterwards).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import Report, fmt, machine_info  # noqa: E402


def _files(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in _files(path))


def drop_cache(path: Path, how: str) -> None:
    """Empty the page cache of ``path`` (a file or a store): fadvise per file, or the whole system's."""
    if how == "system":
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("1\n")
        return
    for file in _files(path):
        fd = os.open(file, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def resident_bytes(path: Path) -> int | None:
    """Bytes of ``path``'s files in the page cache (``fincore``), or ``None`` where it is missing."""
    if shutil.which("fincore") is None:
        return None
    files = [str(p) for p in _files(path)]
    total = 0
    for start in range(0, len(files), 500):
        out = subprocess.run(["fincore", "--bytes", "--noheadings", "--raw", "-o", "RES", *files[start:start + 500]],
                             capture_output=True, text=True, check=True).stdout
        total += sum(int(line) for line in out.split())
    return total


def write_dataset(path: Path, samples: int, frames: int, grid: int, batch: int = 16) -> None:
    """``samples`` trajectories ``u (samples, frames, grid, grid)``: travelling waves, float32."""
    import numpy as np
    import torch

    from pdebench.core.trajectories import Trajectories
    from pdebench.io.trajectory_file import TrajectoryWriter

    x = torch.linspace(0, 2 * math.pi, grid + 1)[:-1]
    t = torch.linspace(0, 1, frames)
    generator = torch.Generator().manual_seed(0)
    with TrajectoryWriter(path) as writer:
        for start in range(0, samples, batch):
            n = min(batch, samples - start)
            u = torch.zeros(n, frames, grid, grid)
            for _ in range(4):
                k = torch.randint(1, 6, (n, 2), generator=generator).float()
                a, phase, speed = (torch.rand(n, 3, generator=generator) * torch.tensor([1.0, 6.283, 2.0])).unbind(1)
                arg = (k[:, 0, None, None, None] * x[None, None, :, None] + k[:, 1, None, None, None] * x[None, None, None, :]
                       + phase[:, None, None, None] - speed[:, None, None, None] * t[None, :, None, None])
                u += a[:, None, None, None] * torch.sin(arg)
            writer.append(Trajectories(
                fields={"u": u}, coords={"t": t.numpy().astype(float), "x": x.numpy().astype(float), "y": x.numpy().astype(float)},
                params={"kind": "travelling waves"},
                sample_ids=np.stack([np.zeros(n, dtype=np.int64), np.arange(start, start + n)], axis=1),
                provenance={"benchmark": "bench_zarr_read"},
            ))


def child(path: str) -> None:
    """One measurement in this process; prints a JSON line."""
    import psutil

    from pdebench.data.datamodules import OfflineDataModule

    process = psutil.Process()
    baseline = process.memory_info().rss
    start = time.perf_counter()
    data = OfflineDataModule(path, task="initial_to_final", batch_size=32)
    data.setup("fit")
    read_s = time.perf_counter() - start
    batches = sum(1 for _ in data.train_dataloader())
    epoch_s = time.perf_counter() - start
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
    print(json.dumps({"read_s": read_s, "epoch_s": epoch_s, "peak_rss": peak, "peak_above_imports": peak - baseline,
                      "batches": batches}))


def measure(path: Path) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", str(path)], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONWARNINGS": "ignore"}).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=512)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--grid", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--drop", choices=["fadvise", "system"], default="fadvise")
    parser.add_argument("--folder", help="where the two stores are written (kept); default: a removed temporary folder")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return

    from pdebench.data.export import export_zarr

    report = Report()
    folder = Path(args.folder) if args.folder else Path(tempfile.mkdtemp(prefix="bench_zarr_read_"))
    folder.mkdir(parents=True, exist_ok=True)
    try:
        paths = {"hdf5": folder / "waves.h5", "zarr": folder / "waves.zarr"}
        for path in paths.values():
            if path.exists():
                shutil.rmtree(path) if path.is_dir() else path.unlink()
        with report.status("writing the HDF5 file"):
            start = time.perf_counter()
            write_dataset(paths["hdf5"], args.samples, args.frames, args.grid)
            write_s = time.perf_counter() - start
        with report.status("exporting it to Zarr"):
            start = time.perf_counter()
            export_zarr(paths["hdf5"], paths["zarr"])
            export_s = time.perf_counter() - start
        raw = args.samples * args.frames * args.grid**2 * 4
        report.say(f"{raw / 2**20:.0f} MiB of float32; HDF5 {_size(paths['hdf5']) / 2**20:.0f} MiB written in {write_s:.1f} s, "
                   f"Zarr {_size(paths['zarr']) / 2**20:.0f} MiB ({len(_files(paths['zarr']))} files) exported in {export_s:.1f} s")
        runs: dict[str, list[dict]] = {name: [] for name in paths}
        left: dict[str, list[int | None]] = {name: [] for name in paths}
        for round_ in range(args.rounds):
            for name, path in paths.items():
                with report.status(f"cold round {round_ + 1}: {name}"):
                    drop_cache(path, args.drop)
                    left[name].append(resident_bytes(path))
                    runs[name].append(measure(path))
        warm_runs: dict[str, list[dict]] = {name: [] for name in paths}
        for name, path in paths.items():
            with report.status(f"filling the cache: {name}"):
                measure(path)
        for round_ in range(args.rounds):
            for name, path in paths.items():
                with report.status(f"warm round {round_ + 1}: {name}"):
                    warm_runs[name].append(measure(path))
        warm = {name: {key: statistics.median(run[key] for run in runs_) for key in runs_[0]} for name, runs_ in warm_runs.items()}
        rows = []
        base = {key: statistics.median(run[key] for run in runs["hdf5"]) for key in ("read_s", "epoch_s", "peak_above_imports")}
        for name, path in paths.items():
            cold = {key: statistics.median(run[key] for run in runs[name]) for key in ("read_s", "epoch_s", "peak_rss", "peak_above_imports")}
            resident = [b for b in left[name] if b is not None]
            rows.append([name, fmt(_size(path) / 2**20), fmt(cold["read_s"]), fmt(cold["read_s"] / base["read_s"]),
                         fmt(cold["epoch_s"]), fmt(cold["epoch_s"] / base["epoch_s"]), fmt(warm[name]["epoch_s"]),
                         fmt(warm[name]["epoch_s"] / warm["hdf5"]["epoch_s"]),
                         fmt(cold["peak_above_imports"] / 2**20), fmt(cold["peak_above_imports"] / base["peak_above_imports"]),
                         fmt(max(resident) / 2**20) if resident else "n/a"])
            for mode, figures in (("cold", cold), ("warm", warm[name])):
                report.record(benchmark="zarr_read", format=name, mode=mode, read_s=figures["read_s"],
                              epoch_s=figures["epoch_s"], peak_rss_bytes=figures["peak_rss"],
                              peak_above_imports_bytes=figures["peak_above_imports"],
                              epoch_ratio_to_hdf5=figures["epoch_s"] / (base["epoch_s"] if mode == "cold" else warm["hdf5"]["epoch_s"]),
                              read_ratio_to_hdf5=figures["read_s"] / (base["read_s"] if mode == "cold" else warm["hdf5"]["read_s"]),
                              peak_ratio_to_hdf5=figures["peak_above_imports"] / (base["peak_above_imports"] if mode == "cold"
                                                                                 else warm["hdf5"]["peak_above_imports"]),
                              store_bytes=_size(path), raw_bytes=raw, drop=args.drop,
                              resident_after_drop_bytes=max(resident) if resident and mode == "cold" else None,
                              **machine_info(samples=args.samples, frames=args.frames, grid=args.grid, rounds=args.rounds))
        report.table(f"OfflineDataModule read + one train epoch, {args.samples} x {args.frames} x {args.grid}² float32 "
                     f"({raw / 2**30:.2f} GiB), cache dropped by {args.drop} (medians of {args.rounds} cold and {args.rounds} warm runs)",
                     ["format", "MiB on disk", "read s", "read / HDF5", "epoch s", "epoch / HDF5", "warm epoch s", "warm / HDF5",
                      "peak MiB above imports", "peak / HDF5", "MiB resident after drop"], rows)
        report.emit_json()
    finally:
        if not args.folder:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
