"""The tables Jupyter shows for the API's results (`_repr_html_`), without a kernel.

tests/test_notebook.py sees them in a real notebook; these pin what a table must say when things
go wrong: an error record, nothing that fits, text that is not HTML.
"""

from __future__ import annotations

from vlmkit.access import AccessStatus, ModelAccess, TokenReport
from vlmkit.checking import CheckReport
from vlmkit.environment import PackageVersions
from vlmkit.gpu import GpuProbe
from vlmkit.planner import recommend
from vlmkit.records import CaptionRecord, Captions, RunSummary
from vlmkit.registry import load_registry


def record(video: str, status: str = "ok", caption: str | None = "A red square moves.", error: str | None = None):
    return CaptionRecord(video=video, caption=caption, models={"vlm": "qwen3-vl-4b"}, timestamps=[0.0, 1.5],
                         prompt="Describe.", new_tokens=5, elapsed_seconds=1.25, status=status, error=error)


def test_captions_table_shows_errors_and_counts_them():
    records = Captions([record("a.mp4"), record("b<1>.mp4", "error", None, "b<1>.mp4: no decodable frames")])
    html = records._repr_html_()
    assert isinstance(records, list)
    assert "A red square moves." in html
    assert "b&lt;1&gt;.mp4: no decodable frames" in html and "<1>" not in html  # escaped, not markup
    assert "Captioned 1, failed 1 in 2.5 s." in html
    assert "Captioned 1, failed 0" in records[0]._repr_html_()
    assert ">error</span>" in html and "Status." not in html


def test_run_summary_says_what_was_skipped_and_retried():
    html = RunSummary(captioned=2, failed=1, skipped=3, elapsed_seconds=30.0, retried_oom=1,
                      failed_before=1)._repr_html_()
    assert "Captioned 2, skipped 3 (1 of them failed earlier: retry_errors=True retries them), failed 1" in html
    assert "(4.0 videos/min)" in html and "1 video(s) ran out of GPU memory" in html  # captioned videos only
    assert "Interrupted" not in html and "Interrupted" in RunSummary(interrupted=True)._repr_html_()
    assert "failed earlier" not in RunSummary(captioned=1, skipped=3)._repr_html_()


def test_check_table_links_only_gated_models_still_to_approve():
    token = TokenReport(present=True, source="colab", masked="hf_ab…wxyz", user="alice", valid=True, role="read",
                        can_read_gated=True, detail="Logged in as alice with a read token from the Colab secret.")

    def access(key, status, url):
        return ModelAccess(key, f"org/{key}", "encoder", url is not None, status, f"detail of {key}", url, False)

    report = CheckReport(token, PackageVersions("3.12.0", None, None, None, "1.3.0"),
                         GpuProbe(reason="no NVIDIA driver found"),
                         (access("granted", AccessStatus.OK, "https://huggingface.co/org/granted"),
                          access("asked", AccessStatus.NEEDS_APPROVAL, "https://huggingface.co/org/asked"),
                          access("public", AccessStatus.OK, None)))
    html = report._repr_html_()
    assert 'href="https://huggingface.co/org/asked"' in html
    assert 'href="https://huggingface.co/org/granted"' not in html  # approved: nothing left to request
    assert "hf_ab…wxyz" in html and "torch not installed" in html and "none: no NVIDIA driver found" in html
    assert "2 of 3 models can be downloaded." in html


def test_plan_table_says_when_nothing_fits():
    plan = recommend(registry=load_registry(), vram_gb=0.5)
    assert plan.choice is None
    html = plan._repr_html_()
    assert "nothing fits" in html and "Recommended" not in html
    assert html.count("does not fit") >= 14  # every candidate row says so


def test_plan_table_gives_the_largest_frame_count():
    plan = recommend(registry=load_registry(), gpu="L4")
    html = plan._repr_html_()
    assert f"<b>{plan.choice.label}</b>" in html
    assert f"largest frame count <b>{plan.choice.max_frames}</b>" in html
    assert f"largest frame count <b>{plan.vlm_choice.max_frames}</b>" in html
