"""Mutation testing of the code whose bugs lose or corrupt data or mislead the user (issue 10).

mutmut (configured in pyproject's [tool.mutmut]) copies src/ and tests/ to mutants/, makes small
changes to the code ("mutants": `<` for `<=`, a dropped call, another constant) and runs the tests
that reach each changed function. A mutant the tests do not notice ("survived") is a change no
test guards against. The score is the share of mutants killed (a test failed or timed out).

Slow: about an hour on two cores for every group, so never part of .ci/run. Run it by hand, niced,
with the test and mutation extras installed (`pip install -e '.[test,mutation]'`):

    nice -n 15 python benchmarks/mutation.py                 # every group
    nice -n 15 python benchmarks/mutation.py journal memory  # some groups
    python benchmarks/mutation.py --report                   # the score of what has run so far
    nice -n 15 python benchmarks/mutation.py --survivors     # only last time's survivors, after adding tests
    nice -n 15 python benchmarks/mutation.py --recheck       # survivors against all the group's tests, directly

Results are kept in mutants/ between runs: a rerun tests only the mutants that changed.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "mutants"  # git-ignored; one mutmut project per group under it

# group -> (source file, mutant names to test, the fast tests that guard it). Mutant names are mutmut's:
# module.x_function__mutmut_N and module.xǁClassǁmethod__mutmut_N.
GROUPS = {
    "journal": ("src/vlmkit/journal.py", ["vlmkit.journal.*"], ["tests/test_journal.py"]),
    "memory": ("src/vlmkit/memory.py", ["vlmkit.memory.*"],
               ["tests/test_memory.py", "tests/test_memory_by_hand.py", "tests/test_planner.py"]),
    "planner": ("src/vlmkit/planner.py", ["vlmkit.planner.*"],
                ["tests/test_planner.py", "tests/test_planner_boundaries.py", "tests/test_memory.py"]),
    "registry": ("src/vlmkit/registry.py", ["vlmkit.registry.*"], ["tests/test_registry.py"]),
    "access": ("src/vlmkit/access.py", ["vlmkit.access.*"], ["tests/test_access.py", "tests/test_access_network.py"]),
    # frame selection: which times are aimed at and which decoded frame each one gets
    "frames": ("src/vlmkit/frames.py",
               ["vlmkit.frames.x_target_times__mutmut_*", "vlmkit.frames.x__window__mutmut_*",
                "vlmkit.frames.x__shown_frames__mutmut_*", "vlmkit.frames.x__every_frame__mutmut_*",
                "vlmkit.frames.xǁ_Cursorǁat__mutmut_*", "vlmkit.frames.xǁ_Cursorǁ_walk_to__mutmut_*",
                "vlmkit.frames.x_check_sampling_options__mutmut_*"],
               ["tests/test_frames.py", "tests/test_frames_conformance.py"]),
    # where the visual tokens go in the LLM's input
    "composed": ("src/vlmkit/backends/composed.py", ["vlmkit.backends.composed.xǁComposedBackendǁ_splice__mutmut_*"],
                 ["tests/test_splice.py"]),
    # the token and embedding sequence that _splice and training share: where each row's features go
    "sequence": ("src/vlmkit/backends/sequence.py", ["vlmkit.backends.sequence.*"],
                 ["tests/test_splice.py",
                  "tests/test_train.py::test_training_sequence_equals_the_caption_sequence_up_to_the_caption"]),
    # which output goes with which video: batching, preparing, splitting a failed batch
    "batch": ("src/vlmkit/batch.py",
              ["vlmkit.batch.x_run_batch__mutmut_*", "vlmkit.batch.x__batch__mutmut_*",
               "vlmkit.batch.x__prepare__mutmut_*", "vlmkit.batch.x__next_jobs__mutmut_*",
               "vlmkit.batch.x__generate__mutmut_*", "vlmkit.batch.x__generate_or_split__mutmut_*",
               "vlmkit.batch.x__in_chunks__mutmut_*", "vlmkit.batch.xǁ_BatchLimitǁlower__mutmut_*",
               "vlmkit.batch.x__job_tokens__mutmut_*"],
              [f"tests/test_caption_identity.py::test_{name}" for name in (
                  "every_caption_names_its_own_video", "a_batch_that_fails_is_retried_video_by_video",
                  "where_the_processors_run_and_how_many_videos_each_batch_holds",
                  "each_segment_caption_belongs_to_its_own_window", "a_stop_ends_the_run_between_batches",
                  "a_clip_too_long_for_the_context_is_an_error_and_the_others_keep_their_captions",
                  "out_of_memory_halves_the_batch_until_it_fits_and_says_so_once",
                  "a_batch_the_processors_reject_is_not_prepared_again_but_video_by_video",
                  "each_record_takes_its_share_of_the_batchs_generation_time",
                  "in_order_batches_stop_at_a_video_that_does_not_fit",
                  "grouping_takes_equal_token_counts_first_then_failed_videos_then_the_nearest",
                  "grouping_skips_a_video_that_does_not_fit_and_takes_the_next",
                  "a_video_that_still_fails_with_half_its_frames_says_why",
                  "on_a_gpu_the_processors_overlap_and_the_peaks_are_measured_on_that_gpu")]
              + [f"tests/test_batch_throughput.py::test_{name}" for name in (  # out-of-memory splits, grouping
                  "out_of_memory_splits_the_batch_and_lowers_the_size_once",
                  "a_single_video_out_of_memory_still_falls_back_to_fewer_frames",
                  "grouping_by_tokens_keeps_every_record")]
              + [f"tests/test_caption_first_hour.py::test_{name}" for name in (  # Ctrl-C during generation
                  "ctrl_c_during_a_long_batch_stops_at_the_next_token_and_leaves_it_for_the_resume",
                  "a_short_batch_finishes_after_ctrl_c")]),
    "end_to_end": ("src/vlmkit/backends/end_to_end.py",
                   ["vlmkit.backends.end_to_end.xǁEndToEndBackendǁprepare__mutmut_*",
                    "vlmkit.backends.end_to_end.xǁEndToEndBackendǁrun__mutmut_*"],
                   ["tests/test_caption_identity.py::test_end_to_end_results_come_back_in_input_order"]),
}
# groups whose tests load a tiny model in a fixture (not in mutmut's measured test time): pyproject's timeout
LOADS_MODELS = {"composed", "sequence", "batch", "end_to_end"}
DETECTED = {"killed", "timeout", "segfault"}  # a test noticed the change
NOT_RUN = {"not checked", "skipped", "check was interrupted by user"}


def project(group: str) -> Path:
    """A copy of the checkout whose [tool.mutmut] mutates one group's file and runs only its fast tests."""
    source, _, tests = GROUPS[group]
    work = WORK / group
    for name in ("src", "tests"):
        shutil.rmtree(work / name, ignore_errors=True)
        shutil.copytree(ROOT / name, work / name, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache"))
    shutil.copy2(ROOT / "models.toml", work / "models.toml")
    text = (ROOT / "pyproject.toml").read_text()
    shared = tomllib.loads(text)["tool"]["mutmut"]
    settings = shared | {"only_mutate": [source], "pytest_add_cli_args_test_selection": tests}
    if group not in LOADS_MODELS:  # pyproject's 30 s is for model loading; here it only makes hangs slow
        settings["timeout_constant"] = 5.0
    table = "\n".join(f"{key} = {json.dumps(value)}" for key, value in settings.items())
    (work / "pyproject.toml").write_text(text.split("[tool.mutmut]")[0] + "[tool.mutmut]\n" + table + "\n")
    # which tests reach which function: collected afresh (seconds), since mutmut 3.8 keeps using its old map
    # when tests were added, and never runs a new test against a mutant
    (work / "mutants" / "mutmut-stats.json").unlink(missing_ok=True)
    return work


def mutmut(work: Path, *args: str, capture: bool = False) -> subprocess.CompletedProcess:
    env = os.environ | {
        # the tests import the mutated copy, never the checkout (an editable install points at src/)
        "PYTHONPATH": str(work / "mutants" / "src"),
        # the tests' copies reuse the tiny-model zoo already built for the checkout
        "VLMKIT_ZOO_CACHE": os.environ.get("VLMKIT_ZOO_CACHE", str(ROOT / ".zoo-cache")),
    }
    return subprocess.run([sys.executable, "-m", "mutmut", *args], cwd=work, env=env, text=True,
                          capture_output=capture, check=False)


def statuses(group: str) -> dict[str, str]:
    """mutant name -> status, for the group's mutants run so far."""
    work = WORK / group
    if not (work / "mutants").is_dir():
        return {}
    out = mutmut(work, "results", "--all", "true", capture=True).stdout
    found = dict(line.strip().rsplit(": ", 1) for line in out.splitlines() if ": " in line)
    if (work / "recheck.json").exists():  # survivors that the group's tests, run directly, do kill
        found |= {name: status for name, status in json.loads((work / "recheck.json").read_text()).items()
                  if found.get(name) not in DETECTED}
    return {name: status for name, status in found.items() if any(fnmatch.fnmatch(name, p) for p in GROUPS[group][1])}


def recheck(group: str, workers: int = 2) -> None:
    """Run the group's tests against each survivor directly, as mutmut does (MUTANT_UNDER_TEST).

    mutmut 3.8 runs a mutant only against the tests its coverage map ties to the mutated function, and
    that map misses some tests added since (seen here: a test that fails against a mutant it reported as
    survived). A survivor the group's tests fail on is recorded as killed in mutants/GROUP/recheck.json.
    """
    work = WORK / group
    shutil.copytree(ROOT / "tests", work / "mutants" / "tests", dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("__pycache__"))  # today's tests
    checked = json.loads((work / "recheck.json").read_text()) if (work / "recheck.json").exists() else {}
    def run(name: str) -> int:
        env = os.environ | {"MUTANT_UNDER_TEST": name, "PYTHONPATH": str(work / "mutants" / "src"),
                            "VLMKIT_ZOO_CACHE": os.environ.get("VLMKIT_ZOO_CACHE", str(ROOT / ".zoo-cache"))}
        return subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-k",
                               "not wheel_ships", *GROUPS[group][2]], cwd=work / "mutants", env=env,
                              capture_output=True, text=True, check=False).returncode

    survivors = {name: status for name, status in statuses(group).items() if status not in DETECTED | NOT_RUN}
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for (name, status), code in zip(survivors.items(), pool.map(run, survivors)):
            checked[name] = "killed" if code == 1 else status
            print(f"{name}: {checked[name]}", flush=True)
            (work / "recheck.json").write_text(json.dumps(checked, indent=1))


def report(groups: list[str]) -> int:
    """A Markdown table of each group's score, then its surviving mutants; 1 if any group is under 90%."""
    print("| group | mutants | killed | survived | no tests | not run | score |")
    print("|---|---|---|---|---|---|---|")
    survivors: dict[str, list[str]] = {}
    total = Counter()
    for group in groups:
        every = statuses(group)
        names = list(every)
        counts = Counter("killed" if every[n] in DETECTED else every[n] for n in names)
        checked = len(names) - sum(counts[s] for s in NOT_RUN)
        total.update(counts | Counter(mutants=len(names), checked=checked))
        score = f"{counts['killed'] / checked:.1%}" if checked else "-"
        print(f"| {group} | {len(names)} | {counts['killed']} | {counts['survived']} | {counts['no tests']} | "
              f"{sum(counts[s] for s in NOT_RUN)} | {score} |")
        survivors[group] = [(n, every[n]) for n in names if every[n] not in DETECTED | NOT_RUN]
    score = total["killed"] / total["checked"] if total["checked"] else 0.0
    print(f"| all | {total['mutants']} | {total['killed']} | {total['survived']} | {total['no tests']} | "
          f"{sum(total[s] for s in NOT_RUN)} | {score:.1%} |")
    for group, names in survivors.items():
        for name, status in names:
            print(f"- {group}: `{name}` ({status})")
    return 0 if score >= 0.9 else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("groups", nargs="*", help=f"any of {', '.join(GROUPS)} (default: all)")
    parser.add_argument("--report", action="store_true", help="only print the score of what has run")
    parser.add_argument("--survivors", action="store_true",
                        help="test again only the mutants that survived last time (after adding tests)")
    parser.add_argument("--recheck", action="store_true",
                        help="run each group's tests against its survivors directly (see recheck)")
    parser.add_argument("--max-children", type=int, default=2,
                        help="mutants tested at once, also by --recheck (default 2)")
    args = parser.parse_args()
    groups = args.groups or list(GROUPS)
    if unknown := set(groups) - set(GROUPS):
        parser.error(f"unknown group(s) {', '.join(sorted(unknown))}; choose from {', '.join(GROUPS)}")
    if args.recheck:
        for group in groups:
            recheck(group, args.max_children)
    elif not args.report:
        for group in groups:
            names = GROUPS[group][1]
            if args.survivors:
                names = [n for n, status in statuses(group).items() if status not in DETECTED | NOT_RUN]
                if not names:
                    continue
            print(f"== {group}", flush=True)
            work = project(group)
            if mutmut(work, "run", "--max-children", str(args.max_children), *names).returncode:
                # mutmut 3.8's first run in a fresh project stops after collecting its stats (forkserver)
                mutmut(work, "run", "--max-children", str(args.max_children), *names)
    return report(groups)


if __name__ == "__main__":
    sys.exit(main())
