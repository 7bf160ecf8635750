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

Results are kept in mutants/ between runs: a rerun tests only the mutants that changed.
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# group -> mutant names (mutmut's: module.x_function__mutmut_N, module.xǁClassǁmethod__mutmut_N)
GROUPS = {
    "journal": ["vlmkit.journal.*"],
    "memory": ["vlmkit.memory.*"],
    "planner": ["vlmkit.planner.*"],
    "registry": ["vlmkit.registry.*"],
    "access": ["vlmkit.access.*"],
    # frame selection: which times are aimed at and which decoded frame each one gets
    "frames": ["vlmkit.frames.x_target_times__mutmut_*", "vlmkit.frames.x__nearest_frames__mutmut_*",
               "vlmkit.frames.x__nearest__mutmut_*", "vlmkit.frames.x_check_sampling_options__mutmut_*"],
    # where the visual tokens go in the LLM's input
    "composed": ["vlmkit.backends.composed.xǁComposedBackendǁ_splice__mutmut_*"],
    # which output goes with which video: batching, preparing, splitting a failed batch
    "batch": ["vlmkit.batch.x_run_batch__mutmut_*", "vlmkit.batch.x__batch__mutmut_*",
              "vlmkit.batch.x__prepare__mutmut_*", "vlmkit.batch.x__next_jobs__mutmut_*",
              "vlmkit.batch.x__generate__mutmut_*", "vlmkit.batch.x__generate_or_split__mutmut_*"],
    "end_to_end": ["vlmkit.backends.end_to_end.xǁEndToEndBackendǁprepare__mutmut_*",
                   "vlmkit.backends.end_to_end.xǁEndToEndBackendǁrun__mutmut_*"],
}
DETECTED = {"killed", "timeout", "segfault"}  # a test noticed the change
NOT_RUN = {"not checked", "skipped", "check was interrupted by user"}


def mutmut(*args: str, capture: bool = False) -> subprocess.CompletedProcess:
    env = os.environ | {
        # the tests import the mutated copy, never the checkout (an editable install points at src/)
        "PYTHONPATH": str(ROOT / "mutants" / "src"),
        # the tests' copy in mutants/ reuses the tiny-model zoo already built for the checkout
        "VLMKIT_ZOO_CACHE": os.environ.get("VLMKIT_ZOO_CACHE", str(ROOT / ".zoo-cache")),
    }
    return subprocess.run([sys.executable, "-m", "mutmut", *args], cwd=ROOT, env=env, text=True,
                          capture_output=capture, check=False)


def statuses() -> dict[str, str]:
    """mutant name -> status, for every mutant generated so far."""
    out = mutmut("results", "--all", "true", capture=True).stdout
    return dict(line.strip().rsplit(": ", 1) for line in out.splitlines() if ": " in line)


def report(groups: list[str]) -> int:
    """A Markdown table of each group's score, then its surviving mutants; 1 if any group is under 90%."""
    every = statuses()
    print("| group | mutants | killed | survived | no tests | not run | score |")
    print("|---|---|---|---|---|---|---|")
    survivors: dict[str, list[str]] = {}
    total = Counter()
    for group in groups:
        names = [n for n in every if any(fnmatch.fnmatch(n, p) for p in GROUPS[group])]
        counts = Counter("killed" if every[n] in DETECTED else every[n] for n in names)
        checked = len(names) - sum(counts[s] for s in NOT_RUN)
        total.update(counts | Counter(mutants=len(names), checked=checked))
        score = f"{counts['killed'] / checked:.1%}" if checked else "-"
        print(f"| {group} | {len(names)} | {counts['killed']} | {counts['survived']} | {counts['no tests']} | "
              f"{sum(counts[s] for s in NOT_RUN)} | {score} |")
        survivors[group] = [n for n in names if every[n] not in DETECTED | NOT_RUN]
    score = total["killed"] / total["checked"] if total["checked"] else 0.0
    print(f"| all | {total['mutants']} | {total['killed']} | {total['survived']} | {total['no tests']} | "
          f"{sum(total[s] for s in NOT_RUN)} | {score:.1%} |")
    for group, names in survivors.items():
        for name in names:
            print(f"- {group}: `{name}` ({every[name]})")
    return 0 if score >= 0.9 else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("groups", nargs="*", help=f"any of {', '.join(GROUPS)} (default: all)")
    parser.add_argument("--report", action="store_true", help="only print the score of what has run")
    parser.add_argument("--max-children", type=int, default=2, help="mutants tested at once (default 2)")
    args = parser.parse_args()
    groups = args.groups or list(GROUPS)
    if unknown := set(groups) - set(GROUPS):
        parser.error(f"unknown group(s) {', '.join(sorted(unknown))}; choose from {', '.join(GROUPS)}")
    if not args.report:
        for group in groups:
            print(f"== {group}", flush=True)
            mutmut("run", "--max-children", str(args.max_children), *GROUPS[group])
    return report(groups)


if __name__ == "__main__":
    sys.exit(main())
