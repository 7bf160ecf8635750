"""`bench_gpu.py --caption`: vlmkit's default batch choice against the plain batch-1 loop (issue 13).

For LLaVA-NeXT-Video-7B and Qwen3-VL-8B architectures with random weights, 8 frames and exactly
`--new-tokens` new tokens per video, over `--videos` random videos (a pool of 16 distinct ones):

- plain: the model card's loop, one video at a time (processor -> generate), on a few videos;
- default: the batch size `--batch-size auto` picks (vlmkit.batch_size, from the estimate and the
  free memory NVML reports before the model is built), run through vlmkit's batching with its
  out-of-memory split (vlmkit.batch.generate_in_batches);
- default + static cache: the same with GenerationSettings(static_cache=True); the first batch,
  which pays for torch.compile, is timed apart.

Each row has videos/min, and for the vlmkit rows the estimate the batch was chosen by beside
torch's peak allocation and NVML's used memory. Every case stops at its share of `--budget-s`
and reports the videos it finished, so the command ends in time.
"""

from __future__ import annotations

import time

POOL = 16  # distinct random videos, cycled up to --videos


def build_qwen3_vl(tiny: bool, device: str, dtype, registry, build_on_device, import_zoo, prompt: str):
    """Qwen/Qwen3-VL-8B-Instruct's config.json (random weights), or the test zoo's tiny config."""
    import torch
    from transformers import (
        GenerationConfig,
        Qwen2VLImageProcessor,
        Qwen3VLConfig,
        Qwen3VLForConditionalGeneration,
        Qwen3VLProcessor,
        Qwen3VLVideoProcessor,
    )

    from vlmkit.backends.end_to_end import EndToEndBackend
    from vlmkit.visual_tokens import QWEN3_VL_VIDEO

    zoo = import_zoo()
    entry = registry.vlm("qwen3-vl-8b")
    tokenizer = zoo.make_qwen_tokenizer(zoo.QWEN3_VL_CHAT_TEMPLATE)
    if tiny:
        text = zoo._qwen_text_config(tokenizer)
        vision = zoo._qwen_vision_config(out_hidden_size=text["hidden_size"])
        processor_kwargs = zoo._qwen_vision_processor_kwargs()
    else:
        text = dict(vocab_size=entry.vocab_size, hidden_size=entry.hidden_size,
                    intermediate_size=entry.intermediate_size, num_hidden_layers=entry.layers,
                    num_attention_heads=entry.heads, num_key_value_heads=entry.kv_heads, head_dim=entry.head_dim,
                    max_position_embeddings=entry.max_context, rms_norm_eps=1e-6,
                    rope_parameters={"rope_type": "default", "rope_theta": 5_000_000.0,
                                     "mrope_section": [24, 20, 20], "mrope_interleaved": True})
        vision = dict(depth=27, hidden_size=1152, intermediate_size=4304, num_heads=16, patch_size=16,
                      spatial_merge_size=2, temporal_patch_size=2, out_hidden_size=entry.hidden_size,
                      num_position_embeddings=2304, deepstack_visual_indexes=[8, 16, 24],
                      hidden_act="gelu_pytorch_tanh")
        processor_kwargs = dict(  # video_preprocessor_config.json's published settings
            patch_size=16, temporal_patch_size=2, merge_size=2, image_mean=[0.5] * 3, image_std=[0.5] * 3,
            size={"shortest_edge": QWEN3_VL_VIDEO.min_pixels, "longest_edge": QWEN3_VL_VIDEO.max_pixels})
    ids = {name: tokenizer.convert_tokens_to_ids(token) for name, token in [
        ("image_token_id", zoo.QWEN_IMAGE_PAD), ("video_token_id", zoo.QWEN_VIDEO_PAD),
        ("vision_start_token_id", zoo.QWEN_VISION_START), ("vision_end_token_id", zoo.QWEN_VISION_END)]}
    config = Qwen3VLConfig(text_config=text, vision_config=vision, tie_word_embeddings=tiny, **ids)
    model = build_on_device(Qwen3VLForConditionalGeneration, config, device, dtype)
    eos = [tokenizer.convert_tokens_to_ids(t) for t in (zoo.QWEN_IM_END, zoo.QWEN_ENDOFTEXT)]
    model.generation_config = GenerationConfig(do_sample=False, eos_token_id=eos, pad_token_id=tokenizer.pad_token_id)
    processor = Qwen3VLProcessor(image_processor=Qwen2VLImageProcessor(**processor_kwargs), tokenizer=tokenizer,
                                 video_processor=Qwen3VLVideoProcessor(**processor_kwargs),
                                 chat_template=zoo.QWEN3_VL_CHAT_TEMPLATE)
    backend = EndToEndBackend(model, processor, entry, dtype=dtype, device=device)

    @torch.inference_mode()
    def plain(video, new_tokens: int) -> int:
        """The model card's loop: chat template, processor (its own 2 fps sampling off), generate."""
        conversation = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": prompt}]}]
        text_in = processor.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)
        count = len(video.frames)
        metadata = [{"fps": 1.0, "total_num_frames": count, "frames_indices": list(range(count))}]
        inputs = processor(text=[text_in], videos=[video.frames], video_metadata=metadata, do_sample_frames=False,
                           cap_pixels_per_frame=True, return_tensors="pt").to(device, dtype)
        out = model.generate(**inputs, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False)
        return out.shape[1] - inputs["input_ids"].shape[1]

    return backend, plain, sum(p.numel() for p in model.parameters()), entry


def caption_cases(name: str, build, entry, *, gpu, args, results: dict, save, case_seconds: float,
                  random_videos, prompt: str) -> None:
    """plain loop, vlmkit default, vlmkit default + static cache, for one architecture."""
    import torch

    from vlmkit.backends.base import GenerationSettings
    from vlmkit.batch import generate_in_batches
    from vlmkit.batch_size import choose_batch_size

    n, frames = args.new_tokens, args.frames
    device, dtype_name = gpu.device, ("float32" if gpu.device == "cpu" else "bfloat16")
    gpu.reset()
    # tiny models: the registry's real-size entry would size the batch for the real model
    choice = choose_batch_size("auto", models=() if args.tiny else (entry,), frames=frames, max_new_tokens=n,
                               dtype=dtype_name, device="cpu" if args.tiny else device, videos=args.videos,
                               resolution=tuple(args.frame_size))
    print(f"{name}: vlmkit's default is {choice.message}", flush=True)
    started = time.perf_counter()
    backend, plain, params = build()
    results["models"].append({"name": name, "params": params, "registry_params": entry.params,
                              "build_s": round(time.perf_counter() - started, 1), "batch_choice": choice.message})
    save()
    pool = random_videos(min(POOL, args.videos), frames, *args.frame_size)
    videos = [pool[i % len(pool)] for i in range(args.videos)]
    rows = results.setdefault("caption", [])

    def record(path: str, done: int, seconds: float, extra: dict) -> None:
        row = {"model": name, "path": path, "videos": done, "seconds": round(seconds, 2),
               "videos_per_min": 60 * done / seconds if seconds else None, **extra}
        rows.append(row)
        save()
        print(f"  {name:20} {path:30} {done:>4} videos {row['videos_per_min'] or 0:8.1f} videos/min", flush=True)

    # warm-up (kernels, allocator), then the plain batch-1 loop
    backend.generate(videos[:1], prompt, GenerationSettings(max_new_tokens=2))
    plain(videos[0], 2)
    gpu.sync()
    deadline = time.perf_counter() + case_seconds / 3
    done, started = 0, time.perf_counter()
    while done < args.plain_videos and time.perf_counter() < deadline:
        plain(videos[done], n)
        done += 1
    gpu.sync()
    record("plain transformers loop, batch 1", done, time.perf_counter() - started, {"batch": 1})

    backend.model.generation_config.min_new_tokens = n  # exactly n new tokens in the vlmkit paths
    for path, static in [("vlmkit default", False), ("vlmkit default + static cache", True)]:
        settings = GenerationSettings(max_new_tokens=n, static_cache=static)
        gpu.reset()
        extra: dict = {"batch": choice.size, "estimate_bytes": choice.estimate.total_bytes if choice.estimate else None}
        if static:  # the first batch compiles: timed apart
            first = time.perf_counter()
            generate_in_batches(backend, videos[:choice.size], prompt, settings, choice.size)
            gpu.sync()
            extra["first_batch_with_compile_s"] = round(time.perf_counter() - first, 1)
        deadline = time.perf_counter() + case_seconds / 3
        done, size, started = 0, choice.size, time.perf_counter()
        while done < len(videos) and time.perf_counter() < deadline:
            chunk = videos[done:done + size]
            outputs, size = generate_in_batches(backend, chunk, prompt, settings, size)
            failed = [o for o in outputs if isinstance(o, Exception)]
            if failed:
                extra["failed"] = f"{len(failed)}: {type(failed[0]).__name__}: {failed[0]}"[:300]
            done += len(chunk)
        gpu.sync()
        extra |= {"batch_at_end": size} | ({"peak_allocated_bytes": torch.cuda.max_memory_allocated(device),
                                            "nvml_process_bytes": gpu.process_bytes()[0]} if gpu.cuda else {})
        record(path, done, time.perf_counter() - started, extra)
    backend.model.generation_config.min_new_tokens = None


def caption_table(results: dict) -> str:
    from reporting import table

    plain = {r["model"]: r for r in results.get("caption", []) if r["path"].startswith("plain")}
    rows = []
    for r in results.get("caption", []):
        anchor = plain.get(r["model"])
        ratio = (f"{r['videos_per_min'] / anchor['videos_per_min']:.1f}x"
                 if anchor and anchor.get("videos_per_min") and r.get("videos_per_min") else "-")
        gib = [f"{r[key] / 2**30:.1f}" if r.get(key) else "-"
               for key in ("estimate_bytes", "peak_allocated_bytes", "nvml_process_bytes")]
        rows.append([r["model"], r["path"], r.get("batch", "-"), r["videos"], f"{r['videos_per_min'] or 0:.1f}",
                     ratio, *gib])
    return table(["model", "path", "batch", "videos", "videos/min", "vs plain", "estimate GiB",
                  "torch peak GiB", "NVML GiB"], rows)
