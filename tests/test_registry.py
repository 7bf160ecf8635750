"""The shipped registry is valid and true to the reference; malformed ones fail with one clear error."""

from __future__ import annotations

from pathlib import Path

import pytest
import tomllib

from vlmkit.errors import RegistryError, UnknownModelError
from vlmkit.registry import default_registry_path, load_registry

ROOT = Path(__file__).resolve().parents[1]
REQUIRED_KEYS = {
    "encoders": ["siglip-base", "siglip-so400m", "clip-vit-l-336", "dinov3-vits16", "dinov3-vitb16", "dinov3-vitl16",
                 "dinov3-vith16plus", "dinov3-vit7b16", "dinov3-convnext-tiny", "dinov3-convnext-small",
                 "dinov3-convnext-base", "dinov3-convnext-large"],
    "llms": ["qwen3-0.6b", "qwen3-1.7b", "qwen3-4b", "qwen3-8b", "qwen3-14b", "qwen3-32b", "qwen3-30b-a3b",
             "qwen3-235b-a22b", "qwen3-4b-instruct-2507", "qwen3-30b-a3b-instruct-2507"],
    "vlms": ["llava-next-video-7b", "llava-next-video-34b", "llava-v1.6-mistral-7b", "qwen3-vl-8b",
             "qwen3-vl-2b", "qwen3-vl-4b", "qwen3-vl-32b", "qwen3-omni-30b-a3b"],
}
# Repo ids from the design document that do not exist on the Hub (shared/reference/models.md).
NONEXISTENT = {
    "facebook/dinov3-vith16-pretrain-lvd1689m": "facebook/dinov3-vith16plus-pretrain-lvd1689m",
    "Qwen/Qwen3-0.6B-Instruct": "Qwen/Qwen3-0.6B",
    "Qwen/Qwen3-8B-Instruct": "Qwen/Qwen3-8B",
    "Qwen/Qwen3-32B-Instruct": "Qwen/Qwen3-32B",
    "Qwen/Qwen3-4B-Instruct": "Qwen/Qwen3-4B",
    "Qwen/Qwen3-Omni": "Qwen/Qwen3-Omni-30B-A3B-Instruct",
}


@pytest.fixture(scope="module")
def registry():
    return load_registry(ROOT / "models.toml")


def test_required_keys_exist(registry):
    for section, keys in REQUIRED_KEYS.items():
        assert set(keys) <= set(getattr(registry, section)), section


def test_no_entry_uses_a_nonexistent_repo_and_each_is_an_alias(registry):
    repos = {m.repo for m in registry.all_models()}
    for wrong, right in NONEXISTENT.items():
        assert wrong not in repos
        assert registry.model(wrong).repo == right


def test_dense_qwen3_params_match_the_architecture(registry):
    """params must agree with layers/hidden/heads/mlp: catches a typo in either."""
    for llm in registry.llms.values():
        if llm.family != "qwen3":
            continue
        h, d = llm.hidden_size, llm.head_dim
        layer = h * llm.heads * d * 2 + 2 * h * llm.kv_heads * d + 3 * h * llm.intermediate_size
        tied, untied = (llm.vocab_size * h * n + llm.layers * layer for n in (1, 2))
        assert min(abs(llm.params - tied) / tied, abs(llm.params - untied) / untied) < 0.01, llm.key


def test_tiers_match_the_design_document(registry):
    pairs = {t.gpu: (t.encoder, t.llm) for t in registry.tiers}
    assert pairs["T4"] == ("siglip-base", "qwen3-4b")
    assert pairs["L4"] == ("dinov3-vitb16", "qwen3-8b")
    assert pairs["A100-40GB"] == ("dinov3-vitl16", "qwen3-14b")
    assert pairs["H100"] == ("dinov3-vith16plus", "qwen3-32b")


def test_gpus_listed(registry):
    assert {"T4", "L4", "A10G", "RTX-4090", "A100-40GB", "A100-80GB", "H100", "H200"} <= set(registry.gpus)
    assert registry.gpu("t4").bf16 is False and registry.gpu("H100").capability == (9, 0)


def test_dinov3_is_gated_and_qwen_is_not(registry):
    assert all(e.gated for e in registry.encoders.values() if e.family.startswith("dinov3"))
    assert not any(m.gated for m in registry.llms.values())


@pytest.mark.timeout(900)  # pip builds the wheel in a fresh environment
def test_the_wheel_ships_the_top_level_registry(tmp_path):
    """Built as pip builds it: the installed package must carry models.toml, byte for byte."""
    import subprocess
    import sys
    import zipfile

    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    (wheel,) = tmp_path.glob("vlmkit-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        assert archive.read("vlmkit/models.toml") == (ROOT / "models.toml").read_bytes()


def test_the_default_registry_is_found_from_a_checkout():
    assert default_registry_path().read_text() == (ROOT / "models.toml").read_text()


def test_unknown_key_suggests_close_ones(registry):
    with pytest.raises(UnknownModelError) as info:
        registry.llm("qwen3-8")
    assert "qwen3-8b" in info.value.hint


def test_kind_mismatch_is_explained(registry):
    with pytest.raises(UnknownModelError, match="it is a llm"):
        registry.encoder("qwen3-8b")


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "models.toml"
    path.write_text(text)
    return path


MINIMAL_LLM = """
[llms.tiny]
repo = "a/b"
family = "qwen3"
params = 10
gated = false
license = "apache-2.0"
layers = 2
hidden_size = 8
heads = 2
kv_heads = 1
head_dim = 4
intermediate_size = 16
vocab_size = 100
max_context = 512
"""

MINIMAL_ENCODER = """
[encoders.tiny]
repo = "a/e"
family = "siglip"
params = 10
gated = false
license = "apache-2.0"
image_size = 32
patch_size = 16
hidden_size = 8
layers = 2
tokens_per_frame = 4
"""


@pytest.mark.parametrize("text, where, what", [
    ("[llms.x\nrepo = 1", "invalid TOML", "line"),
    (MINIMAL_LLM.replace("layers = 2\n", ""), "[llms.tiny]", "missing field 'layers'"),
    (MINIMAL_LLM.replace("layers = 2", 'layers = "2"'), "[llms.tiny]", "field 'layers' must be a non-negative integer"),
    (MINIMAL_LLM.replace("gated = false", "gated = 1"), "[llms.tiny]", "field 'gated' must be true or false"),
    (MINIMAL_LLM.replace("layers = 2", "layerz = 2"), "[llms.tiny]", "unknown field 'layerz'"),
    (MINIMAL_LLM.replace('family = "qwen3"', 'family = "gpt"'), "[llms.tiny]", "field 'family'"),
    (MINIMAL_LLM + MINIMAL_LLM.replace("[llms.tiny]", "[vlms.tiny]"), "[vlms.tiny]", "missing field"),
    (MINIMAL_LLM + MINIMAL_LLM.replace("[llms.tiny]", "[llms.other]").replace('license = "apache-2.0"',
     'license = "x"\naliases = ["TINY"]'), "[llms.other]", "name 'TINY' is already used by [llms.tiny]"),
    # one key in two tables: `--encoder tiny` and `--llm tiny` would name different models
    (MINIMAL_ENCODER + MINIMAL_LLM, "[llms.tiny]", "name 'tiny' is already used by [encoders.tiny]"),
    (MINIMAL_ENCODER.replace("[encoders.tiny]", "[encoders.Tiny]") + MINIMAL_LLM, "[llms.tiny]",
     "name 'tiny' is already used by [encoders.Tiny]"),
    (MINIMAL_LLM + '[[tiers]]\ngpu = "T4"\nencoder = "e"\nllm = "tiny"\n', "[[tiers]] #1", "unknown key 'T4'"),
    (MINIMAL_LLM.replace("[llms.tiny]", "[llms.qwen3-0.6b]"), "[llms.qwen3-0]", "must be quoted"),
])
def test_malformed_registry_names_file_entry_and_field(tmp_path, text, where, what):
    path = _write(tmp_path, text)
    with pytest.raises(RegistryError) as info:
        load_registry(path)
    full = f"{info.value.message} {info.value.hint}"
    assert str(path) in full and where in full and what in full
    assert info.value.exit_code == 2


def test_missing_registry_file(tmp_path):
    with pytest.raises(RegistryError, match="not found"):
        load_registry(tmp_path / "nope.toml")


def test_local_repo_is_relative_to_the_registry_file(tmp_path):
    (tmp_path / "models").mkdir()
    path = _write(tmp_path, MINIMAL_LLM.replace('repo = "a/b"', 'repo = "./models"'))
    entry = load_registry(path).llm("tiny")
    assert entry.repo == str(tmp_path / "models") and entry.is_local


def test_env_variable_selects_the_registry(tmp_path, monkeypatch):
    monkeypatch.setenv("VLMKIT_REGISTRY", str(_write(tmp_path, MINIMAL_LLM)))
    assert list(load_registry().llms) == ["tiny"]


def test_toml_is_plain_data():
    """The registry parses with the standard library alone."""
    assert tomllib.loads((ROOT / "models.toml").read_text())["llms"]["qwen3-8b"]["repo"] == "Qwen/Qwen3-8B"


GPU = '\n[gpus.X]\nmemory_mib = 1000\ncompute_capability = "8.0"\nbf16 = true\n'


@pytest.mark.parametrize("text, what", [
    ("", "defines no models"),
    (MINIMAL_LLM + GPU.replace('"8.0"', '"eight"'), "field 'compute_capability' must look like"),
    (MINIMAL_LLM + GPU.replace("1000", "0"), "field 'memory_mib' must be positive"),
    (MINIMAL_LLM + GPU.replace("bf16 = true", 'bf16 = true\naliases = ["A100"]')
     + GPU.replace("gpus.X", "gpus.Y").replace("bf16 = true", 'bf16 = true\naliases = ["a100"]'),
     "name 'a100' is already used by [gpus.X]"),
])
def test_gpu_tables_and_empty_registries_are_checked(tmp_path, text, what):
    with pytest.raises(RegistryError, match=what.replace("[", r"\[").replace("]", r"\]")):
        load_registry(_write(tmp_path, text))


@pytest.mark.parametrize("line, what", [
    ("layers = -1", "field 'layers' must be a non-negative integer, got -1"),
    ("layers = true", "field 'layers' must be a non-negative integer, got True"),  # a bool is not a number
    ('layers = 2\naliases = ["ok", 3]', "field 'aliases' must be a list of strings"),
    ('layers = 2\nrevision = 5', "field 'revision' must be a string, got 5"),
])
def test_field_types_are_checked(tmp_path, line, what):
    with pytest.raises(RegistryError) as info:
        load_registry(_write(tmp_path, MINIMAL_LLM.replace("layers = 2", line)))
    assert what in info.value.message and "[llms.tiny]" in info.value.message
    assert info.value.hint == f"Fix `{what.split(chr(39))[1]}` in [llms.tiny]."


def test_values_read_back_as_written(tmp_path):
    text = MINIMAL_LLM.replace("layers = 2", 'layers = 0\naliases = ["T", "t2"]\nrevision = "abc"')
    entry = load_registry(_write(tmp_path, text)).llm("t2")
    assert (entry.key, entry.layers, entry.aliases, entry.revision, entry.gated) == ("tiny", 0, ("T", "t2"), "abc",
                                                                                       False)
    assert (entry.kind, entry.safetensors, entry.active_params, entry.is_local) == ("llm", True, None, False)


def test_home_relative_repo_and_registry_lookups(tmp_path, monkeypatch, registry):
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "m").mkdir()
    entry = load_registry(_write(tmp_path, MINIMAL_LLM.replace('repo = "a/b"', 'repo = "~/m"'))).llm("tiny")
    assert entry.repo == str(tmp_path / "m") and entry.is_local
    assert registry.gpu("rtx 4090").name == "RTX-4090" and registry.gpu("A100-80GB").memory_bytes == 81920 * 2**20
    assert registry.tier("L4").vlm == "llava-next-video-7b" and registry.tier("nope") is None
    assert registry.model("QWEN/qwen3-8B").key == "qwen3-8b"  # a repo id, any case
    with pytest.raises(UnknownModelError) as info:
        registry.gpu("V100")
    assert info.value.hint == f"Known GPUs: {', '.join(registry.gpus)}; or plan for any card with --vram GB."
    assert info.value.hint.startswith("Known GPUs: T4, L4, ")


@pytest.mark.parametrize("text, what", [
    ("[models.x]\nrepo = 1\n", "unknown top-level table(s) ['models']"),
    ('tiers = 3\n' + MINIMAL_LLM, "'tiers' must be an array of tables"),
    (MINIMAL_LLM.replace("[llms.tiny]", "[llms]\ntiny = 3\n[llms.x]"), "[llms.tiny] must be a table, got int"),
])
def test_tables_of_the_wrong_shape(tmp_path, text, what):
    with pytest.raises(RegistryError) as info:
        load_registry(_write(tmp_path, text))
    assert what in info.value.message


@pytest.mark.parametrize("text, where, got, name", [
    ("encoders = 3\n" + MINIMAL_LLM, "[encoders]", "int", "encoders"),
    (MINIMAL_LLM.replace("[llms.tiny]", "[llms]\ntiny = 3\n[llms.x]"), "[llms.tiny]", "int", "tiny"),
    ('gpus = "T4"\n' + MINIMAL_LLM, "[gpus]", "str", "gpus"),
    ("[gpus]\nT4 = 1\n" + MINIMAL_LLM, "[gpus.T4]", "int", "T4"),
])
def test_a_value_where_a_table_belongs_names_the_file_the_table_and_the_fix(tmp_path, text, where, got, name):
    path = _write(tmp_path, text)
    with pytest.raises(RegistryError) as info:
        load_registry(path)
    assert info.value.message == f"{path}: {where} must be a table, got {got}"
    assert info.value.hint == f"Write it as a [section] with key = value lines ({name})."


def test_a_dotted_key_left_unquoted_gets_the_quoting_fix(tmp_path):
    path = _write(tmp_path, MINIMAL_LLM.replace("[llms.tiny]", "[llms.qwen3-0.6b]"))
    with pytest.raises(RegistryError) as info:
        load_registry(path)
    assert info.value.message == f"{path}: [llms.qwen3-0]: unknown field '6b'"
    assert info.value.hint == 'A key containing "." must be quoted, as in [llms."qwen3-0.6b"].'


@pytest.mark.parametrize("kind, name, message, close", [
    ("llm", "qwen3-8", "Unknown llm 'qwen3-8'", "qwen3-8b, qwen3-4b, qwen3-32b"),  # LLMs only
    (None, "qwen3-8", "Unknown model 'qwen3-8'", "qwen3-8b, qwen3-4b, qwen3-vl-8b"),  # any kind
    ("encoder", "dinov3-vitl1", "Unknown encoder 'dinov3-vitl1'", "dinov3-vitl16, dinov3-vits16, dinov3-vitb16"),
    ("vlm", "qwen3-vl", "Unknown vlm 'qwen3-vl'", "qwen3-vl-8b, qwen3-vl-4b, qwen3-vl-2b"),
    # names only half alike (difflib ratio 0.5 to 0.6) are still suggested
    ("encoder", "clip-large", "Unknown encoder 'clip-large'", "siglip-base, clip-vit-l-336"),
    ("vlm", "llava7b", "Unknown vlm 'llava7b'", "llava-next-video-7b, llava-v1.6-mistral-7b"),
])
def test_an_unknown_name_suggests_three_of_its_kind(registry, kind, name, message, close):
    lookup = getattr(registry, kind) if kind else registry.model
    with pytest.raises(UnknownModelError) as info:
        lookup(name)
    assert info.value.message == message
    assert info.value.hint == f"Did you mean {close}? See `vlmkit models` for the keys this registry knows."


def test_each_lookup_keeps_to_its_kind(registry, tmp_path):
    for lookup, other in [(registry.llm, "llava-next-video-7b"), (registry.vlm, "qwen3-8b"),
                          (registry.encoder, "qwen3-8b")]:
        with pytest.raises(UnknownModelError, match="it is a"):
            lookup(other)
    assert registry.vlm("llava-next-video-7b").kind == "vlm" and registry.encoder("siglip-base").kind == "encoder"
    with pytest.raises(UnknownModelError) as info:
        registry.llm("zzzz-nothing-like-it")
    assert info.value.hint == "See `vlmkit models` for the keys this registry knows."
    with pytest.raises(UnknownModelError) as info:
        load_registry(_write(tmp_path, MINIMAL_LLM)).gpu("T4")
    assert info.value.hint == "This registry lists no GPUs: plan for any card with --vram GB."


@pytest.mark.parametrize("field, hint", [("layerz", "Did you mean 'layers'?"), ("colour", "Remove it.")])
def test_an_unknown_field_is_named_with_a_fix(tmp_path, field, hint):
    with pytest.raises(RegistryError) as info:
        load_registry(_write(tmp_path, MINIMAL_LLM.replace("layers = 2", f"layers = 2\n{field} = 1")))
    assert info.value.message.endswith(f"[llms.tiny]: unknown field '{field}'") and info.value.hint == hint


TIER = '[[tiers]]\ngpu = "X"\nencoder = "e"\nllm = "tiny"\n'
ENCODER_E = MINIMAL_ENCODER.replace("[encoders.tiny]", "[encoders.e]")


@pytest.mark.parametrize("tier, what", [
    (TIER.replace('gpu = "X"', 'gpu = "Y"'), "field 'gpu' names unknown key 'Y'"),
    (TIER.replace('encoder = "e"', 'encoder = "f"'), "field 'encoder' names unknown key 'f'"),
    (TIER.replace('llm = "tiny"', 'llm = "big"'), "field 'llm' names unknown key 'big'"),
    (TIER + 'vlm = "v"\n', "field 'vlm' names unknown key 'v'"),
])
def test_a_tier_names_only_known_keys(tmp_path, tier, what):
    with pytest.raises(RegistryError) as info:
        load_registry(_write(tmp_path, ENCODER_E + MINIMAL_LLM + GPU + tier))
    gpu = tier.split('"')[1]
    assert info.value.message == f"{tmp_path / 'models.toml'}: [[tiers]] #1 (gpu = \"{gpu}\"): {what}"


def test_a_tier_without_a_vlm_and_a_one_mib_gpu_are_valid(tmp_path):
    registry = load_registry(_write(tmp_path, ENCODER_E + MINIMAL_LLM + GPU.replace("1000", "1") + TIER))
    assert registry.tier("X").vlm is None and registry.gpu("X").memory_bytes == 2**20


def test_gpu_errors_name_the_file(tmp_path):
    path = _write(tmp_path, MINIMAL_LLM + GPU.replace("1000", "0"))
    with pytest.raises(RegistryError) as info:
        load_registry(path)
    assert info.value.message == f"{path}: [gpus.X]: field 'memory_mib' must be positive"


@pytest.mark.parametrize("text, message, hint", [
    ("tiers = [1]\n" + MINIMAL_LLM, "[[tiers]] #1 must be a table, got int",
     "Write it as a [section] with key = value lines (tier)."),
    ("gpus = 3\n" + MINIMAL_LLM, "[gpus] must be a table, got int",
     "Write it as a [section] with key = value lines (gpus)."),
    ("gpus = {X = 3}\n" + MINIMAL_LLM, "[gpus.X] must be a table, got int",
     "Write it as a [section] with key = value lines (X)."),
    (MINIMAL_LLM + GPU + '[[tiers]]\ngpu = "X"\nencoder = "e"\nllm = "tiny"\n[[tiers]]\ngpu = 1\n',
     "[[tiers]] #2: field 'gpu' must be a string, got 1", "Fix `gpu` in [[tiers]] #2."),
])
def test_gpu_and_tier_tables_are_located_exactly(tmp_path, text, message, hint):
    path = _write(tmp_path, text)
    with pytest.raises(RegistryError) as info:
        load_registry(path)
    assert (info.value.message, info.value.hint) == (f"{path}: {message}", hint)
