"""notebooks/00_setup_and_access_test.ipynb, run top to bottom in a real Jupyter kernel (nbclient).

The kernel is this venv's python, with the fake Hub as HF_ENDPOINT and a registry that adds the tiny
zoo to the shipped models.toml: the design document's repos are checked against the fake Hub, and on
this GPU-less machine the recommended (smallest) models are the zoo's local ones, so captioning runs
without a download. The install cell is tagged `skip-execution`, which nbclient skips.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from fakehub import FakeHub
from zoo_registry import zoo_registry_text

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOK = Path(__file__).parents[1] / "notebooks" / "00_setup_and_access_test.ipynb"
SHIPPED_REGISTRY = Path(__file__).parents[1] / "models.toml"
TOKEN = "hf_notebooknotebooknotebook42"
KERNEL = "vlmkit-test-python"
CELL_TIMEOUT = 120


def test_notebook_is_valid_and_stored_without_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code)
    installs = [c for c in code if "%pip install" in c.source]
    assert len(installs) == 1 and "skip-execution" in installs[0].metadata.get("tags", [])
    assert "vlmkit[run]" in installs[0].source


def test_readme_links_the_notebook_for_colab():
    root = NOTEBOOK.parents[1]
    path = NOTEBOOK.relative_to(root).as_posix()
    assert f"https://colab.research.google.com/github/OWNER/REPO/blob/main/{path}" in (root / "README.md").read_text()


@pytest.fixture
def kernel_env(fake_hub: FakeHub, hf_home, zoo_dir, tmp_path, fake_gpu):
    """The design document's repos on the fake Hub: one DINOv3 request pending, one never made."""
    for repo, gated in [("facebook/dinov3-vitl16-pretrain-lvd1689m", "manual"),
                        ("facebook/dinov3-vitb16-pretrain-lvd1689m", "manual"),
                        ("Qwen/Qwen3-8B", False), ("llava-hf/LLaVA-NeXT-Video-7B-hf", False),
                        ("google/siglip-so400m-patch14-384", False)]:
        fake_hub.add_repo(repo, files={"config.json": b"{}"}, gated=gated)
    fake_hub.add_token(TOKEN, user="alice")
    fake_hub.set_access("facebook/dinov3-vitl16-pretrain-lvd1689m", "alice", "pending")
    registry = tmp_path / "models.toml"
    registry.write_text(SHIPPED_REGISTRY.read_text() + "\n" + zoo_registry_text(zoo_dir))
    fake_gpu()  # this process plans as the kernel does: without a GPU
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING_FACE", "VLMKIT_"))}
    return clean | {"HF_ENDPOINT": fake_hub.endpoint, "HF_HOME": str(hf_home), "HF_TOKEN": TOKEN,
                    "VLMKIT_REGISTRY": str(registry), "PYTHONPATH": _pythonpath()}


def _pythonpath() -> str:
    """The vlmkit this test imports, first: a checkout's src/ wins over an installed copy."""
    import vlmkit

    src = str(Path(vlmkit.__file__).parents[1])
    return os.pathsep.join([src, *filter(None, [os.environ.get("PYTHONPATH")])])


@pytest.fixture
def kernel_manager(tmp_path):
    """A kernel spec for this interpreter, in a folder of its own: nothing installed user-wide."""
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    spec_dir = tmp_path / "kernels" / KERNEL
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "vlmkit test", "language": "python"}))
    specs = KernelSpecManager(kernel_dirs=[str(tmp_path / "kernels")])
    return KernelManager(kernel_name=KERNEL, kernel_spec_manager=specs)


def test_notebook_runs_top_to_bottom(kernel_env, kernel_manager, zoo_dir, tmp_path):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    workdir = tmp_path / "content"  # the notebook's working directory, as /content on Colab
    workdir.mkdir()
    client = nbclient.NotebookClient(nb, km=kernel_manager, timeout=CELL_TIMEOUT, allow_errors=False,
                                     resources={"metadata": {"path": str(workdir)}})
    with client.setup_kernel(env=kernel_env):
        for index, cell in enumerate(nb.cells):
            client.execute_cell(cell, index)  # raises CellExecutionError with the traceback on any error
        composed_cell = nb.cells[-1]
        skipped = _text(composed_cell)
        pair = _save_projector_for_recommended_pair(workdir / "runs" / "demo" / "projector.safetensors", kernel_env)
        client.execute_cell(composed_cell, len(nb.cells) - 1)  # now that a projector exists

    install = next(c for c in nb.cells if "skip-execution" in c.metadata.get("tags", []))
    assert install.execution_count is None and not install.outputs

    everything = "\n".join(_text(c) for c in nb.cells if c.cell_type == "code")
    assert TOKEN not in everything and TOKEN[3:] not in everything  # never printed, not even in a table

    check = _text(_cell_with(nb, "vlmkit.check(models=MODELS)"))
    assert "alice" in check
    for repo, status in [("facebook/dinov3-vitl16-pretrain-lvd1689m", "pending"),
                         ("facebook/dinov3-vitb16-pretrain-lvd1689m", "needs_approval"),
                         ("Qwen/Qwen3-8B", "ok"), ("llava-hf/LLaVA-NeXT-Video-7B-hf", "ok"),
                         ("google/siglip-so400m-patch14-384", "ok")]:
        row = next(r for r in check.split("<tr>") if f"<td style='text-align:left'>{repo}</td>" in r)
        assert f">{status}</span>" in row, (repo, status, row)
    assert 'href="https://huggingface.co/facebook/dinov3-vitb16-pretrain-lvd1689m"' in check
    assert "3 of 5 models can be downloaded" in check

    checklist = _text(_cell_with(nb, "체크리스트")).splitlines()
    assert any(line.startswith("- ✅ **Hugging Face account") and "alice" in line for line in checklist)
    dinov3 = next(line for line in checklist if "DINOv3" in line)
    assert dinov3.startswith("- ⬜") and "dinov3-vitb16-pretrain-lvd1689m" in dinov3
    assert "dinov3-vitl16: pending" in dinov3
    assert any(line.startswith("- ⬜ **Access confirmed") for line in checklist)

    plan = _text(_cell_with(nb, "plan = vlmkit.recommend()"))
    assert "no GPU: planning for the CPU" in plan and "largest frame count" in plan
    t4 = _text(_cell_with(nb, 'recommend(gpu="T4")'))
    assert "No GPU attached" in t4 and "T4" in t4 and "siglip-base + qwen3-4b" in t4

    captions = _text(_cell_with(nb, "def caption_or_skip"))
    assert "Captioning" in captions and "sample.mp4" in captions
    assert "Captioned 1, failed 0" in captions

    assert "Skipped: no projector" in skipped and "vlmkit train --encoder" in skipped
    composed = _text(composed_cell)
    assert f"{pair} and the projector" in composed and "Captioned 1, failed 0" in composed


def _save_projector_for_recommended_pair(path: Path, env: dict) -> str:
    """A random projector for the pair the kernel was recommended: enough to take the composed path."""
    from vlmkit.planner import recommend
    from vlmkit.projector import Projector, ProjectorInfo, save_projector
    from vlmkit.registry import load_registry

    registry = load_registry(env["VLMKIT_REGISTRY"])
    pair = recommend(registry=registry).choice
    encoder_dim, llm_dim = registry.encoders[pair.encoder].hidden_size, registry.llms[pair.llm].hidden_size
    path.parent.mkdir(parents=True)
    save_projector(Projector(encoder_dim, llm_dim), ProjectorInfo(pair.encoder, pair.llm, encoder_dim, llm_dim), path)
    return pair.label


def _cell_with(nb, source: str):
    return next(c for c in nb.cells if c.cell_type == "code" and source in c.source)


def _text(cell) -> str:
    """Everything a cell showed: streams, and each display's richest form (HTML, Markdown, text)."""
    parts = []
    for output in cell.outputs:
        if output.output_type == "stream":
            parts.append(output.text)
        elif output.output_type in ("display_data", "execute_result"):
            data = output.data
            parts.append(data.get("text/html") or data.get("text/markdown") or data.get("text/plain", ""))
        elif output.output_type == "error":
            parts.append("\n".join(output.traceback))
    return "\n".join(parts)
