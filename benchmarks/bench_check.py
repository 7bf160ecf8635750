"""`vlmkit check` against the design document's access-test loop, on a fake Hub with 200 ms latency.

    python benchmarks/bench_check.py [--runs 5] [--latency 0.2] [--vlmkit PATH]

20 models: the 2 gated DINOv3 ViTs (the token was never granted access) and 18 public repos.
Both sides are subprocesses, so both pay interpreter start-up and their imports:

  vlmkit       `vlmkit check --json` with HF_ENDPOINT, HF_HOME (empty), HF_TOKEN and
               VLMKIT_REGISTRY (a models.toml listing the 20, written as tests/test_check_cli.py does)
  design loop  the access test of shared/seed/model-approval-list.md: login(token=HF_TOKEN), then
               HfApi().model_info(repo) for each model in turn, printing [OK] on success. Only
               Colab's secrets store is replaced (the token comes from the environment) and the
               endpoint is passed explicitly.

The two alternate (loop, vlmkit, loop, vlmkit, ...), each run with a fresh HF_HOME. The correctness
table shows what each says about the gated repos: model_info answers for gated repos to everyone,
so the loop prints [OK] for models the token cannot download.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))  # the fake Hub and the registry writer of the tests

from bench_startup import default_vlmkit  # noqa: E402
from reporting import machine_summary, median, table  # noqa: E402

from fakehub import FakeHub  # noqa: E402
from test_check_cli import write_registry  # noqa: E402

TOKEN = "hf_benchbenchbenchbench0123"
TARGET_RATIO = 6.0
# huggingface_hub >= 2 fetches this registry before its first request (every thread that races to it does)
# and caches it in HF_HOME for a day; the fake Hub answers 404, so nothing is cached and every run pays it.
HARNESSES = "/api/agent-harnesses"
EMPTY_HARNESSES = '{"standardEnvVars": [], "harnesses": {}}'
GATED = ("facebook/dinov3-vitl16-pretrain-lvd1689m", "facebook/dinov3-vitb16-pretrain-lvd1689m")
PUBLIC = (  # the public repos of the design document, topped up with Qwen3-VL to reach 18
    "Qwen/Qwen3-0.6B",
    "Qwen/Qwen3-1.7B",
    "Qwen/Qwen3-4B",
    "Qwen/Qwen3-8B",
    "Qwen/Qwen3-14B",
    "Qwen/Qwen3-32B",
    "Qwen/Qwen3-30B-A3B",
    "Qwen/Qwen3-235B-A22B",
    "Qwen/Qwen3-Omni-30B-A3B-Instruct",
    "Qwen/Qwen3-VL-2B-Instruct",
    "Qwen/Qwen3-VL-8B-Instruct",
    "Qwen/Qwen3-VL-32B-Instruct",
    "llava-hf/LLaVA-NeXT-Video-7B-hf",
    "llava-hf/LLaVA-NeXT-Video-34B-hf",
    "llava-hf/llava-v1.6-mistral-7b-hf",
    "google/siglip-so400m-patch14-384",
    "google/siglip-base-patch16-224",
    "openai/clip-vit-large-patch14-336",
)

# The design document's loop, as written there (model-approval-list.md, "접근성 테스트 코드"), with
# the token read from the environment instead of Colab's userdata and the endpoint passed explicitly.
DESIGN_LOOP = """
import json, os, sys
from huggingface_hub import HfApi, login

login(token=os.environ['HF_TOKEN'])
api = HfApi(endpoint=os.environ['HF_ENDPOINT'])
MODELS = json.loads(sys.argv[1])

for model_id, needs_approval in MODELS.items():
    try:
        info = api.model_info(model_id)
        print(f"[OK] {model_id}")
    except Exception as e:
        if needs_approval:
            print(f"[NEED APPROVAL] {model_id}")
            print(f"    https://huggingface.co/{model_id}")
        else:
            print(f"[ERROR] {model_id}")
            print(f"    {e}")
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="timed runs of each side")
    parser.add_argument(
        "--latency", type=float, default=0.2, help="seconds the fake Hub adds to every request"
    )
    parser.add_argument("--vlmkit", default=default_vlmkit())
    parser.add_argument(
        "--warm-hf-home",
        action="store_true",
        help=f"seed each HF_HOME with huggingface_hub's cached {HARNESSES} answer, as after "
        "any Hub call in the last 24 h (both sides)",
    )
    args = parser.parse_args()
    print(machine_summary())

    with FakeHub() as hub, tempfile.TemporaryDirectory(prefix="vlmkit-bench-") as tmp:
        hub.latency = args.latency
        for repo in GATED:
            hub.add_repo(repo, files={"config.json": b"{}"}, gated="manual")  # never granted
        for repo in PUBLIC:
            hub.add_repo(repo, files={"config.json": b"{}"})
        hub.add_token(TOKEN, user="alice")
        # tests/test_check_cli.py's registry holds the two DINOv3 encoders; the 18 go in as LLMs
        llms = {repo.split("/")[1].lower().replace(".", "-"): repo for repo in PUBLIC}
        registry = write_registry(Path(tmp) / "models.toml", llms)
        models = {repo: True for repo in GATED} | {repo: False for repo in PUBLIC}

        base = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING_FACE", "VLMKIT_"))}
        base |= {"HF_ENDPOINT": hub.endpoint, "HF_TOKEN": TOKEN, "NO_COLOR": "1"}
        sides = {
            "design loop (login + 20 x model_info)": (
                [sys.executable, "-c", DESIGN_LOOP, json.dumps(models)],
                {},
            ),
            "vlmkit check --json": ([args.vlmkit, "check", "--json"], {"VLMKIT_REGISTRY": str(registry)}),
        }
        times: dict[str, list[float]] = {name: [] for name in sides}
        requests: dict[str, str] = {}
        outputs: dict[str, str] = {}
        for run in range(args.runs):
            for name, (argv, extra) in sides.items():
                with tempfile.TemporaryDirectory(prefix="hf-home-") as home:
                    if args.warm_hf_home:
                        (Path(home) / ".agent_harnesses.json").write_text(EMPTY_HARNESSES)
                    before = len(hub.requests)
                    started = time.perf_counter()
                    done = subprocess.run(
                        argv,
                        capture_output=True,
                        text=True,
                        env=base | extra | {"HF_HOME": home},
                        timeout=120,
                    )
                    times[name].append(time.perf_counter() - started)
                    paths = [path for _, path in hub.requests[before:]]
                    requests[name] = f"{len(paths)} ({sum(p == HARNESSES for p in paths)} to {HARNESSES})"
                outputs[name] = done.stdout
                if run == 0 and not done.stdout.strip():
                    sys.exit(f"{name} printed nothing (exit {done.returncode}):\n{done.stderr}")

    loop_name, vlmkit_name = list(sides)
    loop_median, vlmkit_median = median(times[loop_name]), median(times[vlmkit_name])
    print(
        f"\nfake Hub latency: {args.latency * 1000:.0f} ms per request; {args.runs} runs of each, alternating"
    )
    rows = [
        [name, f"{median(t):.2f}", " ".join(f"{x:.2f}" for x in t), requests[name]]
        for name, t in times.items()
    ]
    print(table(["side", "median wall s", "all runs s", "HTTP requests per run"], rows))
    ratio = loop_median / vlmkit_median
    verdict = "met" if ratio >= TARGET_RATIO else "MISSED"
    print(f"\nratio design loop / vlmkit: {ratio:.1f}x (target >= {TARGET_RATIO:.0f}x: {verdict})")

    loop_lines = {
        line.split("] ", 1)[1]: line.split("]", 1)[0] + "]"
        for line in outputs[loop_name].splitlines()
        if line.startswith("[")
    }
    doc = json.loads(outputs[vlmkit_name])
    statuses = {m["repo"]: m["status"] for m in doc["models"]}
    correct_rows = [
        [repo, "gated, never granted", loop_lines.get(repo, "?"), statuses.get(repo, "?")] for repo in GATED
    ]
    ok_loop = sum(v == "[OK]" for v in loop_lines.values())
    ok_vlmkit = sum(s == "ok" for s in statuses.values())
    correct_rows.append(["(all 20)", "18 downloadable", f"{ok_loop} x [OK]", f"{ok_vlmkit} x ok"])
    print("\nwhat each says")
    print(table(["repo", "truth", "design loop", "vlmkit check"], correct_rows))


if __name__ == "__main__":
    main()
