"""``edgeseg export-triton`` and ``edgeseg export-deepstream``: serving configs from a build."""

from __future__ import annotations

from pathlib import Path

import typer

from edgeseg.cli._common import EXIT_CODES_HELP, console, parse_int_list


def register(app: typer.Typer) -> None:
    @app.command("export-triton", epilog=EXIT_CODES_HELP)
    def export_triton_cmd(
        build: Path = typer.Option(..., "--build", help="Build directory (engines/<name>)."),
        repo: Path = typer.Option(..., "--repo", help="Triton model repository root (created if missing)."),
        name: str = typer.Option(None, help="Model name in Triton (default: the build directory's name)."),
        max_batch: int = typer.Option(
            None,
            "--max-batch",
            help="max_batch_size (default: engine profile max, else 8; static-batch graphs get 0).",
        ),
        backend: str = typer.Option(
            "auto",
            help="tensorrt (model.plan; needs an engine in the build), onnxruntime (model.onnx), or auto.",
        ),
        precision: str = typer.Option(None, help="fp32, fp16 or int8 (default: the build's own)."),
        preferred: str = typer.Option(None, help="Dynamic batcher preferred batch sizes, e.g. 2,4."),
        queue_delay_us: int = typer.Option(100, help="Dynamic batcher max_queue_delay_microseconds."),
        instances: int = typer.Option(1, help="Model instances per GPU (instance_group count)."),
    ) -> None:
        """Write <repo>/<name>/config.pbtxt and 1/model.plan or 1/model.onnx for Triton Inference Server."""
        from edgeseg.serve import export_triton

        result = export_triton(
            build,
            repo,
            name=name,
            backend=backend,
            precision=precision,
            max_batch=max_batch,
            preferred_batch=parse_int_list(preferred, "--preferred") if preferred else None,
            queue_delay_us=queue_delay_us,
            instances=instances,
        )
        console.print(
            f"wrote {result.config_path} and {result.model_path} "
            f"({result.platform}, {result.precision}, max_batch_size {result.config['max_batch_size']})"
        )
        for note in result.notes:
            console.print(f"note: {note}")

    @app.command("export-deepstream", epilog=EXIT_CODES_HELP)
    def export_deepstream_cmd(
        build: Path = typer.Option(..., "--build", help="Build directory (engines/<name>)."),
        out: Path = typer.Option(..., "--out", help="Folder for the nvinfer config, graph and labels."),
        name: str = typer.Option(None, help="Base name of the files (default: the build directory's name)."),
        precision: str = typer.Option(None, help="fp32, fp16 or int8 (default: the build's own)."),
        batch_size: int = typer.Option(
            None, help="nvinfer batch-size (default: the graph's static batch, else 1)."
        ),
        gie_unique_id: int = typer.Option(1, help="nvinfer gie-unique-id."),
        threshold: float = typer.Option(0.0, help="segmentation-threshold on class probabilities, 0..1."),
    ) -> None:
        """Write a DeepStream Gst-nvinfer config (network-type=2), its ONNX graph and labels.txt.

        nvinfer normalises with one scale for all channels; the card's per-channel std is folded into
        the exported graph exactly (a leading per-channel Mul), and a softmax is appended because
        nvinfer's segmentation parser compares FP32 scores against a non-negative threshold.
        """
        from edgeseg.serve import export_deepstream

        result = export_deepstream(
            build,
            out,
            name=name,
            precision=precision,
            batch_size=batch_size,
            gie_unique_id=gie_unique_id,
            threshold=threshold,
        )
        console.print(f"wrote {result.config_path}, {result.onnx_path.name} and {result.labels_path.name}")
        for note in result.notes:
            console.print(f"note: {note}")
