"""``edgeseg video``: segment a video file, RTSP stream or camera, pipelined, into a video file."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from edgeseg.cli._common import EXIT_CODES_HELP, console, interrupted

if TYPE_CHECKING:
    from edgeseg.runtime import Segmenter
    from edgeseg.video import StreamStats, VideoWriter


def register(app: typer.Typer) -> None:
    @app.command("video", epilog=EXIT_CODES_HELP)
    def video(
        source: str = typer.Argument(..., help="Video file, rtsp://... URL or camera device (/dev/video0)."),
        build: Path = typer.Option(
            ..., "--build", help="Build directory (engines/<name>), .engine/.onnx or .pt."
        ),
        out: Path = typer.Option(None, "--out", help="Output video (.mp4, .mkv...). Omit to only measure."),
        overlay: bool = typer.Option(
            False,
            "--overlay",
            help="Write the frame with class colours blended in (default: the colour-coded class map alone).",
        ),
        alpha: float = typer.Option(0.5, help="Overlay opacity of the class colours, 0..1."),
        every: int = typer.Option(
            1, "--every", help="Segment every N-th frame; frames between reuse the mask."
        ),
        batch: int = typer.Option(1, "--batch", help="Frames per backend call."),
        backend: str = typer.Option("auto", help="auto, tensorrt, onnxruntime or torch."),
        precision: str = typer.Option(None, help="fp32, fp16 or int8 (default: the build's own)."),
        codec: str = typer.Option(None, help="FFmpeg encoder (default: libx264, else mpeg4)."),
        preset: str = typer.Option(
            None,
            help="x264 preset, ultrafast ... veryslow (default: superfast): faster = less CPU, larger file.",
        ),
        queue_size: int = typer.Option(8, help="Capacity of each inter-stage queue."),
        json_out: bool = typer.Option(False, "--json", help="Print the stream statistics as JSON to stdout."),
    ) -> None:
        """Segment a video file, RTSP stream or camera into a video file, pipelined across threads.

        Decode, preprocess, batched inference, postprocess/overlay and encode each run in their own
        thread. The output keeps the input's size and frame rate. Live inputs drop the oldest frame when the
        pipeline falls behind; corrupt frames are skipped and counted. Ctrl-C or SIGTERM stops reading,
        finishes the frames in flight and closes the output file properly, a playable file of the
        frames done so far (exit 130 / 143); a second signal abandons the frames in flight.
        """
        import json

        from rich.table import Table

        writer: list[VideoWriter] = []  # filled by the sink thread with the one writer, on the first frame
        try:
            seg, stats = _run(source, build, out, overlay, alpha, every, batch, backend, precision, codec,
                              preset, queue_size, writer)
        except KeyboardInterrupt:  # before the stream ran, or while the output file was being closed
            raise interrupted(_kept(out, writer)) from None

        table = Table(title=f"edgeseg video ({seg.info.get('backend')} {seg.info.get('precision')})")
        table.add_column("frames in", justify="right")
        for col in ("out", "skipped", "dropped", "inferred", "FPS", "inference-only FPS"):
            table.add_column(col, justify="right")
        table.add_row(
            str(stats.frames_in),
            str(stats.frames_out),
            str(stats.skipped),
            str(stats.dropped),
            str(stats.inferred),
            f"{stats.fps:.2f}",
            f"{stats.infer_fps:.2f}",
        )
        console.print(table)
        if stats.stage_s:
            busy = " · ".join(f"{k} {v:.2f}" for k, v in stats.stage_s.items())
            console.print(
                f"busy seconds per stage (the largest bounds the FPS): {busy}; wall {stats.elapsed_s:.2f}"
            )
        for warning in stats.warnings[:5]:
            console.print(f"[yellow]{warning}[/]")
        if writer and not stats.interrupted:
            w = writer[0]
            console.print(
                f"wrote {out} ({w.frames_written} frames, {w.width}x{w.height} @ {float(w.fps):.3f} fps)"
            )
        if json_out:
            print(
                json.dumps(
                    {**stats.to_dict(), "output": str(out) if out else None, "segmenter": seg.describe()},
                    indent=2,
                    default=str,
                )
            )
        if stats.interrupted:
            raise interrupted(_kept(out, writer))


def _kept(out: Path | None, writer: list[VideoWriter]) -> str:
    """The one line after Ctrl-C / SIGTERM: what became of the output file."""
    if out is None:
        return "no output was requested"
    if not writer:
        return f"no frame was done; {out} was not written"
    w = writer[0]
    if w.finalized:
        return f"{out} holds the {w.frames_written} frames done so far (a complete, playable file)"
    return f"the unfinished output was removed; {out} was not written"


def _run(
    source: str,
    build: Path,
    out: Path | None,
    overlay: bool,
    alpha: float,
    every: int,
    batch: int,
    backend: str,
    precision: str | None,
    codec: str | None,
    preset: str | None,
    queue_size: int,
    writer: list[VideoWriter],
) -> tuple[Segmenter, StreamStats]:
    """Open the model and the source, stream through the pipeline, close the output properly."""
    import time

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from edgeseg.runtime import Segmenter
    from edgeseg.video import FrameResult, Pipeline, VideoSource, VideoWriter
    from edgeseg.video.sinks import DEFAULT_PRESET

    with Segmenter.load(build, backend, precision=precision, max_batch=batch) as seg:
        if seg.device.type == "cpu" and seg.info.get("backend") != "torch":
            import torch

            # Pre/postprocessing run in their own pipeline threads beside the backend's thread
            # pool; torch's intra-op threads on top only contend for the same cores (measured on
            # 2 cores: postprocessing 4 ms with one thread, 20-200 ms with two).
            torch.set_num_threads(1)
        src = VideoSource(source)
        pipeline = Pipeline(
            seg,
            batch=batch,
            render="overlay" if overlay else "mask",
            alpha=alpha,
            every=every,
            queue_size=queue_size,
        )

        def sink(item: FrameResult) -> None:
            if out is None:
                return
            if not writer:
                h, w = item.image.shape[:2]
                preset_name = preset or DEFAULT_PRESET
                writer.append(VideoWriter(out, w, h, fps=src.fps, codec=codec, preset=preset_name))
            writer[0].write(item.image)

        with Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[fps]:.1f} fps"),
            console=console,
        ) as bar:
            task = bar.add_task(f"segmenting {Path(source).name}", total=src.frame_count, fps=0.0)
            started = time.perf_counter()

            def on_frame(item: FrameResult, stats: StreamStats) -> None:
                elapsed = time.perf_counter() - started
                bar.update(task, completed=stats.frames_out, fps=stats.frames_out / max(elapsed, 1e-9))

            try:
                stats = pipeline.run(src, sink=sink, on_frame=on_frame)
            except KeyboardInterrupt:
                if not pipeline.stats.interrupted:
                    raise  # before the stream ran
                # A second signal abandoned the frames in flight: what was delivered is still
                # reported (table, --json) like after one signal.
                stats = pipeline.stats
            finally:
                if writer:
                    # Flushes the encoder and writes the trailer; interrupted itself, it removes the
                    # unfinished file instead (VideoWriter.close), so no .partial file is left.
                    writer[0].close()
    return seg, stats
