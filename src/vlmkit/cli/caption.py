"""`vlmkit caption VIDEO|DIR...`: caption one video or a hundred thousand, resumably."""

from __future__ import annotations

import json
import shlex
import sys
import threading
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from vlmkit.backends.watch import LONG_BATCH_SECONDS
from vlmkit.cli.interrupts import FirstInterruptSets
from vlmkit.cli.options import (
    DeviceOpt,
    DtypeOpt,
    EncoderOpt,
    LlmOpt,
    MaxNewTokensOpt,
    OfflineOpt,
    ProjectorOpt,
    RegistryOpt,
    VlmOpt,
)
from vlmkit.cli.render import gib, stderr, stdout, warn
from vlmkit.cli.state import registry_from
from vlmkit.errors import RunStoppedError, UsageError
from vlmkit.prompts import DEFAULT_PROMPT

STOPPING_MESSAGE = (f"Stopping: the videos in flight finish, unless their batch has run over {LONG_BATCH_SECONDS:g} s: "
                    "then it stops at its next token and is left for the resume (Ctrl-C again to stop now)…")


class Engine(str, Enum):
    local = "local"
    ray = "ray"


class Format(str, Enum):
    text = "text"
    json = "json"
    jsonl = "jsonl"
    csv = "csv"
    srt = "srt"
    vtt = "vtt"


def caption(
    ctx: typer.Context,
    videos: Annotated[Optional[list[Path]], typer.Argument(help="Video files or directories (searched recursively).", show_default=False)] = None,
    manifest: Annotated[Optional[list[Path]], typer.Option("--list", help="A file of videos: one path per line, or JSONL with a \"video\" field.")] = None,
    vlm: VlmOpt = None,
    encoder: EncoderOpt = None,
    llm: LlmOpt = None,
    projector: ProjectorOpt = None,
    prompt: Annotated[str, typer.Option("--prompt", help="What to ask about each video.")] = DEFAULT_PROMPT,
    frames: Annotated[Optional[int], typer.Option("--frames", min=1, help="Frames per video (default: the model's).")] = None,
    fps: Annotated[Optional[float], typer.Option("--fps", min=0.001, help="Sample this many frames per second instead.")] = None,
    min_frames: Annotated[Optional[int], typer.Option("--min-frames", min=1, help="With --fps: at least this many (default 1).")] = None,
    max_frames: Annotated[Optional[int], typer.Option("--max-frames", min=1, help="With --fps: at most this many.")] = None,
    start: Annotated[Optional[float], typer.Option("--start", min=0, help="Start of the window, seconds.")] = None,
    end: Annotated[Optional[float], typer.Option("--end", min=0, help="End of the window, seconds.")] = None,
    segments: Annotated[Optional[float], typer.Option("--segments", min=0.1, help="Dense captions: one per window of this many seconds.")] = None,
    summary: Annotated[bool, typer.Option("--summary", help="With --segments: add a whole-video summary.")] = False,
    max_new_tokens: MaxNewTokensOpt = 128,
    temperature: Annotated[Optional[float], typer.Option("--temperature", min=0, help="Sample at this temperature (default: greedy).")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Random seed for sampling.")] = None,
    batch_size: Annotated[str, typer.Option("--batch-size", metavar="N|auto", help="Videos per generate call; auto: the largest batch the GPU's free memory fits by the estimate (on a CPU, the fastest measured).")] = "auto",
    workers: Annotated[int, typer.Option("--workers", min=1, help="Threads decoding upcoming videos.")] = 2,
    static_cache: Annotated[bool, typer.Option("--static-cache", help="Preallocated KV cache; on CUDA the decoding step is compiled.")] = False,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Append records here (.jsonl or .csv) as each video finishes; rerun to resume.")] = None,
    output_format: Annotated[Optional[Format], typer.Option("--format", help="text, json, jsonl, csv; srt/vtt write one subtitle file per video (with --segments) into --subtitles-dir.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Short for --format json.")] = False,
    subtitles_dir: Annotated[Optional[Path], typer.Option("--subtitles-dir", help="Where --format srt/vtt writes <video name>.srt (default: beside --output, else the current directory); a file vlmkit did not write for the same video is never replaced.", show_default=False)] = None,
    retry_errors: Annotated[bool, typer.Option("--retry-errors", help="When resuming, caption the videos that failed before again.")] = False,
    strip_prefix: Annotated[bool, typer.Option("--strip-prefix", help="Remove stock openings such as \"The video shows\".")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
    dtype: DtypeOpt = None,
    device: DeviceOpt = None,
    offline: OfflineOpt = False,
    engine: Annotated[Engine, typer.Option("--engine", help="local: this process; ray: a pool of Ray workers, one model each (pip install 'vlmkit[ray]').")] = Engine.local,
    ray_address: Annotated[Optional[str], typer.Option("--ray-address", help="With --engine ray: a running cluster (auto, HOST:6379, ray://HOST:10001). Default: RAY_ADDRESS, else a local Ray for this run.")] = None,
    ray_workers: Annotated[Optional[int], typer.Option("--ray-workers", min=1, help="With --engine ray: workers (one model each). Default: one per GPU, one without GPUs.")] = None,
    gpus_per_worker: Annotated[Optional[float], typer.Option("--gpus-per-worker", min=0, help="With --engine ray: GPUs per worker (default 1 where there are GPUs).")] = None,
    cpus_per_worker: Annotated[Optional[float], typer.Option("--cpus-per-worker", min=0.01, help="With --engine ray: CPUs per worker (default 1 with GPUs, else the CPUs shared out).")] = None,
    isolate_suspects: Annotated[bool, typer.Option("--isolate-suspects", help="With --engine ray: when a video kills its worker, caption the videos it held one at a time and record the killer as an error.")] = False,
    registry: RegistryOpt = None,
) -> None:
    """Caption videos. Default model: the end-to-end VLM `recommend` picks for this machine (named before loading)."""
    from vlmkit.extras import require_run_extra

    require_run_extra("`vlmkit caption`")
    from vlmkit.backends.base import GenerationSettings
    from vlmkit.batch import BatchOptions, local_engine
    from vlmkit.batch_size import parse_batch_size, plan_caption
    from vlmkit.captioning import (
        CaptionRun,
        SamplingOptions,
        check_models_named_for_ray,
        load_for_captioning,
        named_models,
        ray_engine,
        require_projector,
    )
    from vlmkit.cli.progress import ProgressReporter
    from vlmkit.gpu import parse_device
    from vlmkit.inputs import collect_videos, split_unreadable
    from vlmkit.model_choice import check_model_options, check_new_tokens_fit, default_choice

    output_format = _check_format(Format.json if as_json and not output_format else output_format, output, segments)
    if as_json and output_format is not Format.json:
        raise UsageError(f"--json and --format {output_format.value} both given", "--json is short for --format json.")
    _check_ignored_options(prompt=prompt, summary=summary, segments=segments, retry_errors=retry_errors,
                           output=output, fps=fps, min_frames=min_frames, max_frames=max_frames,
                           subtitles_dir=subtitles_dir, output_format=output_format)
    sampling = SamplingOptions(frames, fps, min_frames or 1, max_frames, start, end)
    if engine is Engine.local and (ray_address or ray_workers or gpus_per_worker is not None
                                   or cpus_per_worker is not None or isolate_suspects):
        raise UsageError("--ray-address, --ray-workers, --gpus-per-worker, --cpus-per-worker and --isolate-suspects "
                         "go with --engine ray", "Add --engine ray, or drop them.")
    sampling.validate()
    check_model_options(vlm=vlm, encoder=encoder, llm=llm, projector=projector)
    device = parse_device(device)
    asked_batch = parse_batch_size(batch_size)
    require_projector(encoder, llm, projector, registry_from(ctx, registry))
    if projector:
        from vlmkit.projector import check_projector_file

        check_projector_file(projector, encoder=encoder, llm=llm)
    paths, unreadable = split_unreadable(collect_videos(videos or [], manifest or [], warn=warn))
    for path, why in unreadable:
        warn(f"skipping {_readable(path)}: {why}")
    if not paths:
        raise UsageError("No videos to caption" + (": none of the inputs can be read" if unreadable else ""),
                         "Name video files or directories, or pass --list FILE.")
    models = named_models(registry_from(ctx, registry), vlm=vlm, encoder=encoder, llm=llm)
    if models is None:  # the default: say which model and why before minutes of loading
        chosen = default_choice(registry_from(ctx, registry), kind="vlm", frames=frames, device=device)
        stderr.print(f"Model  {chosen.label}: {chosen.reason}; name another with --vlm KEY", highlight=False)
        models, vlm = chosen.keys, chosen.keys["vlm"]
    check_new_tokens_fit(registry_from(ctx, registry), models, max_new_tokens)
    settings = GenerationSettings(max_new_tokens, temperature, seed, static_cache)
    ray_options = None
    if engine is Engine.ray:  # Ray installed and the model named: refused before anything starts
        from vlmkit.engines import load_ray_engine

        check_models_named_for_ray(models)
        ray_options = load_ray_engine().RayOptions(ray_address, ray_workers, gpus_per_worker, cpus_per_worker,
                                                   isolate_suspects)
    subtitles = output_format.value if output_format in (Format.srt, Format.vtt) else None
    job = CaptionRun(paths, prompt=prompt, output=output, retry_errors=retry_errors,
                     models=models if output else None, subtitles=subtitles, subtitle_dir=subtitles_dir)
    if output and job.skipped:
        stderr.print(f"Resuming {output}: {job.skipped} of {len(paths)} videos already recorded", highlight=False)

    records: list = []
    progress = ProgressReporter(total=len(job.todo), quiet=quiet)
    stop = threading.Event()

    def on_record(record) -> None:
        if not output:
            records.append(record)
        progress.advance(record)
        if record.video in job.subtitle_files:
            progress.note(f"wrote {_readable(str(job.subtitle_files[record.video]))}")

    try:
        result = job.summary()
        if job.todo:
            plan = plan_caption(asked_batch, videos=job.todo, frames=frames, max_frames=max_frames,
                                max_new_tokens=max_new_tokens, registry=registry_from(ctx, registry), vlm=vlm, encoder=encoder,
                                llm=llm, dtype=dtype, device=device)
            _print_batch_choice(plan.choice, quiet=quiet)
            options = BatchOptions(batch_size=plan.choice.size, workers=workers, segments=segments,
                                   summary=summary, strip_prefix=strip_prefix, on_tokens=progress.tokens)
            if engine is Engine.ray:  # each worker loads the named model; records carry its keys
                run_on = ray_engine(models, prompt, sampling, settings, options, ray_options, vlm=vlm, encoder=encoder,
                                    llm=llm, projector=projector, dtype=dtype, device=device, offline=offline,
                                    registry=registry_from(ctx, registry))
                progress.status, keys = run_on.status, models
            else:
                vlm = (plan.keys or {}).get("vlm") or vlm  # the default model, as planned for
                model = load_for_captioning(vlm=vlm, encoder=encoder, llm=llm, projector=projector, dtype=dtype,
                                            device=device, offline=offline, registry=registry_from(ctx, registry))
                run_on = local_engine(model.backend, prompt, sampling, settings, options,
                                      on_notice=lambda message: stderr.print(message, highlight=False))
                keys = model.backend.keys
            with FirstInterruptSets(stop, STOPPING_MESSAGE), progress:
                result = job.caption(run_on, models=keys, on_record=on_record, stop=stop)
            result.batch_choice = plan.choice.message
            result.estimate_bytes = plan.choice.estimate.total_bytes if plan.choice.estimate else None
    except KeyboardInterrupt:  # a second Ctrl-C: stop at once, keeping what is written
        stderr.print("Stopped. Records written so far are kept"
                     + (f"; resume with: {escape(_command())}" if output else "."),
                     highlight=False)
        raise typer.Exit(130) from None
    except RunStoppedError as exc:  # e.g. a Ray worker died on the same videos: what was written stays
        if output:
            exc.hint = f"{exc.hint or ''} Resume with: {_command()}".strip()
        raise
    finally:
        job.close()
    if not output:
        from vlmkit.captioning import in_input_order

        stdout.out(_render(in_input_order(records, paths), output_format or Format.text), end="", highlight=False)
    _print_summary(result, output, stopped=stop.is_set(), unreadable=len(unreadable))
    if result.failed or result.failed_before or unreadable or stop.is_set():
        raise typer.Exit(130 if stop.is_set() else 1)


def _check_ignored_options(*, prompt, summary, segments, retry_errors, output, fps, min_frames, max_frames,
                           subtitles_dir, output_format) -> None:
    """An option that would do nothing here is a mistake to point out, not to ignore."""
    if not prompt.strip():
        raise UsageError("--prompt is empty", "Ask something about each video, or leave --prompt out for the default.")
    if summary and not segments:
        raise UsageError("--summary needs --segments SECONDS", "The summary is made from the segments' captions.")
    if retry_errors and not output:
        raise UsageError("--retry-errors needs --output FILE",
                         "Only a run that records to --output knows which videos failed before.")
    if fps is None and (min_frames is not None or max_frames is not None):
        given = "--min-frames" if min_frames is not None else "--max-frames"
        raise UsageError(f"{given} needs --fps", "--min-frames/--max-frames bound --fps sampling; "
                         "with a fixed count, use --frames N.")
    if subtitles_dir and output_format not in (Format.srt, Format.vtt):
        raise UsageError("--subtitles-dir needs --format srt or vtt", "Subtitle files are written only then.")


def _readable(text: str) -> str:
    from vlmkit.records import readable

    return escape(readable(text))


def _check_format(output_format: Format | None, output: Path | None, segments: float | None) -> Format | None:
    if output_format in (Format.srt, Format.vtt) and not segments:
        raise UsageError(f"--format {output_format.value} needs --segments SECONDS",
                         "Subtitles need timed captions: add --segments 10, say.")
    if output:
        from vlmkit.captioning import check_output_name

        check_output_name(output)
    if output and output_format in (Format.jsonl, Format.csv) and output.suffix.lower() != f".{output_format.value}":
        raise UsageError(f"--format {output_format.value} does not match --output {output.name}",
                         f"Name the output FILE.{output_format.value}.")
    if output and output_format in (Format.text, Format.json):
        raise UsageError(f"--format {output_format.value} goes to the terminal, not to --output",
                         "Drop --output, or use a .jsonl/.csv output.")
    return output_format


def _render(records, output_format: Format) -> str:
    if output_format is Format.json:
        return json.dumps([r.to_dict() for r in records], indent=2) + "\n"
    if output_format is Format.text or output_format in (Format.srt, Format.vtt):
        from vlmkit.records import readable

        return "".join(f"{readable(r.video)}: {readable(r.caption or '')}\n" for r in records if r.ok)
    if output_format is Format.csv:
        from vlmkit.journal import CSV_FIELDS, csv_line

        return csv_line(CSV_FIELDS) + "".join(csv_line(r.to_row()) for r in records)
    return "".join(r.to_json() + "\n" for r in records)


def _print_summary(result, output: Path | None, *, stopped: bool, unreadable: int = 0) -> None:
    minutes, seconds = divmod(result.elapsed_seconds, 60)
    earlier = (f" ({result.failed_before} of them failed earlier: --retry-errors retries them)"
               if result.failed_before else "")
    stderr.print(f"Captioned {result.captioned}, skipped {result.skipped}{earlier}, failed {result.failed} "
                 f"in {int(minutes)}m{seconds:04.1f}s ({result.videos_per_minute:.1f} videos/min)", highlight=False)
    if result.workers:
        restarts = f", {result.worker_restarts} restarted after dying" if result.worker_restarts else ""
        stderr.print(f"{len(result.workers)} Ray worker(s){restarts}, ready after {result.startup_seconds:.1f}s: "
                     f"{'; '.join(result.workers)}", highlight=False)
    if unreadable:
        stderr.print(f"{unreadable} input(s) could not be read and were skipped (listed above)", highlight=False)
    if result.fewer_frames:
        stderr.print(f"{result.fewer_frames} video(s) had fewer distinct frames than asked for and were captioned "
                     "with those (their records say so)", highlight=False)
    if result.retried_oom:
        stderr.print(f"{result.retried_oom} video(s) ran out of GPU memory and were retried with half the frames "
                     "(their records say so)", highlight=False)
    if result.peak_allocated_bytes is not None:
        nvml = f", {gib(result.peak_nvml_used_bytes)} used on the GPU (NVML)" if result.peak_nvml_used_bytes else ""
        estimate = f"; estimated {gib(result.estimate_bytes)}" if result.estimate_bytes else ""
        stderr.print(f"GPU memory at batch {result.batch_size}: peak {gib(result.peak_allocated_bytes)} allocated "
                     f"(torch){nvml}{estimate}", highlight=False)
    if stopped:
        hint = f"Resume with: {_command()}" if output else "Add --output FILE.jsonl to make runs resumable."
        stderr.print(f"Interrupted. {escape(hint)}", highlight=False)


def _command() -> str:
    return shlex.join(["vlmkit", *sys.argv[1:]])


def _print_batch_choice(choice, *, quiet: bool) -> None:
    """Before loading: the batch size and, when it was asked for and cannot fit, why."""
    if choice.warning:
        warn(choice.warning)
    if not quiet:
        stderr.print(choice.message, highlight=False)
