"""``edgeseg bench``: every backend and precision of a model, side by side, in one run."""

from __future__ import annotations

from pathlib import Path

import typer

from edgeseg.cli._common import EXIT_CODES_HELP, console, parse_int_list
from edgeseg.errors import EdgesegError


def register(app: typer.Typer) -> None:
    @app.command("bench", epilog=EXIT_CODES_HELP)
    def bench(
        target: Path = typer.Argument(
            ..., help="Build directory (engines/<name>), a .pt bundle or an .onnx file."
        ),
        batch: str = typer.Option("1,4", "--batch", help="Comma-separated batch sizes."),
        warmup: int = typer.Option(5, help="Untimed calls before timing each case."),
        iters: int = typer.Option(20, help="Timed calls per case and batch size."),
        backend: list[str] = typer.Option(
            None, "--backend", help="Only these backends (repeatable): torch, onnxruntime, tensorrt."
        ),
        checkpoint: Path = typer.Option(
            None, help="The .pt bundle for the torch cases of a build directory (default: from build.json)."
        ),
        fused: bool = typer.Option(True, "--fused/--no-fused", help="Include PyTorch + fused DDC op cases."),
        threads: int = typer.Option(None, help="ONNX Runtime intra-op threads (default: all cores)."),
        power: bool = typer.Option(
            True, "--power/--no-power", help="Sample Jetson board power when available."
        ),
        out: Path = typer.Option(
            None,
            "--out",
            help="Folder for bench.json and bench.png (default: the target "
            "directory for a build, else ./bench).",
        ),
        json_out: bool = typer.Option(False, "--json", help="Print the JSON report to stdout."),
    ) -> None:
        """Latency p50/p90/p99, throughput, peak memory (and Jetson power) per backend/precision.

        Cases: PyTorch eager FP32, PyTorch + fused DDC op, ONNX Runtime on every ONNX graph of the
        build, TensorRT on every engine; on a CUDA GPU also PyTorch FP16 / channels_last / CUDA graphs.
        Cases that cannot run here are listed with the reason. Writes bench.json and bench.png.
        """
        import json

        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
        from rich.table import Table

        from edgeseg._io import write_json
        from edgeseg.bench import BenchReport, machine_info, plan_cases, plot_results, run_benchmarks
        from edgeseg.power import detect_power_source

        batches = parse_int_list(batch, "--batch")
        if warmup < 0 or iters < 1:
            raise EdgesegError(f"--warmup must be >= 0 and --iters >= 1, got {warmup} and {iters}")
        cases, skipped, input_size = plan_cases(
            target, backends=backend or None, checkpoint=checkpoint, fused=fused, threads=threads
        )
        if input_size is None:
            raise EdgesegError(f"{target}: no card.json beside it to tell the input size")
        if not cases:
            raise EdgesegError(f"{target}: nothing to benchmark here ({skipped})")
        source = detect_power_source() if power else None
        try:
            with Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=console,
            ) as progress:
                task = progress.add_task("benchmarking", total=len(cases) * len(batches))
                results = run_benchmarks(
                    cases,
                    batches,
                    input_size,
                    warmup=warmup,
                    iters=iters,
                    power_source=source,
                    on_step=lambda what: progress.update(task, advance=1, description=what),
                )
        finally:
            if source is not None:
                source.close()  # stops the tegrastats process when that is the source
        report = BenchReport(
            str(target),
            machine_info(),
            {
                "batches": batches,
                "warmup": warmup,
                "iters": iters,
                "input_size": list(input_size),
                "power": source.kind if source else None,
            },
            results,
            skipped,
        )
        folder = out or (target if target.is_dir() else Path("bench"))
        write_json(folder / "bench.json", report.to_dict())
        if any(r.skipped is None for r in results):
            plot_results(results, folder / "bench.png")

        ran = [r for r in results if r.skipped is None]
        gpu_col = any(r.gpu_mem_mb is not None for r in ran)
        energy_col = any(r.energy_mj_per_frame is not None for r in ran)
        table = Table(title=f"edgeseg bench {target.name} ({input_size[0]}x{input_size[1]})")
        table.add_column("case", no_wrap=True)
        for col in ("dev", "N", "p50 ms", "p90 ms", "p99 ms", "fps", "RSS MiB"):
            table.add_column(col, justify="right", no_wrap=True)
        if gpu_col:
            table.add_column("GPU MiB", justify="right")
        if energy_col:
            table.add_column("mJ/frame", justify="right")
        for r in ran:
            lat = r.latency_ms
            row = [
                r.case,
                r.device,
                str(r.batch),
                f"{lat['p50']:.1f}",
                f"{lat['p90']:.1f}",
                f"{lat['p99']:.1f}",
                f"{r.throughput_fps:.1f}",
                f"{r.peak_rss_mb:.0f}{'*' if r.rss_scope == 'process' else ''}",
            ]
            if gpu_col:
                row.append("" if r.gpu_mem_mb is None else f"{r.gpu_mem_mb:.0f}")
            if energy_col:
                row.append("" if r.energy_mj_per_frame is None else f"{r.energy_mj_per_frame:.1f}")
            table.add_row(*row)
        console.print(table)
        for r in results:
            if r.skipped is not None:
                console.print(f"[yellow]skipped[/] {r.case} batch {r.batch}: {r.skipped}")
        for name, reason in skipped.items():
            console.print(f"[yellow]not run[/] {name}: {reason}")
        if any(r.rss_scope == "process" for r in results):
            console.print("* peak RSS of the whole process so far (the kernel refused a per-case reset)")
        console.print(f"wrote {folder / 'bench.json'}")
        if json_out:
            print(json.dumps(report.to_dict(), indent=2, default=str))
