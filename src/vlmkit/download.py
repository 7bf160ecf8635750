"""Fetch only what loading needs (configs, tokenizer, processor, safetensors) from the Hub or its cache."""

from __future__ import annotations

from pathlib import Path

from vlmkit.access import AccessTarget, check_hub_endpoint, explain_hub_error
from vlmkit.errors import ModelLoadError
from vlmkit.registry import Model

# Weights only as safetensors: never pickled *.bin / *.pt / *.h5 / *.msgpack.
NEEDED_FILES = ["*.json", "*.safetensors", "*.txt", "*.model", "*.jinja", "*.tiktoken", "tokenizer*"]


def fetch_model(entry: Model, *, offline: bool = False, token: str | None = None,
                endpoint: str | None = None) -> Path:
    """The local directory holding `entry`'s files: its own path, or a Hub snapshot."""
    if entry.is_local:
        path = Path(entry.repo).expanduser()
        if not (path / "config.json").is_file():
            raise ModelLoadError(f"{entry.key}: {path} holds no saved model (config.json is missing)",
                                 "Point `repo` at a directory written by save_pretrained.")
        return _with_safetensors(entry, path)
    check_hub_endpoint()
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        path = snapshot_download(entry.repo, revision=entry.revision, allow_patterns=NEEDED_FILES, token=token,
                                 endpoint=endpoint, local_files_only=offline)
    except LocalEntryNotFoundError:
        from huggingface_hub import constants

        if constants.HF_HUB_OFFLINE and not offline:
            raise ModelLoadError(f"{entry.key} ({entry.repo}) is not in the local Hugging Face cache, "
                                 "and HF_HUB_OFFLINE is set", "Unset HF_HUB_OFFLINE to download it.") from None
        if offline:
            raise ModelLoadError(f"{entry.key} ({entry.repo}) is not in the local Hugging Face cache",
                                 "Run `vlmkit load` with the network once without --offline to download it.") from None
        raise ModelLoadError(f"Cannot download {entry.repo}: the Hub is unreachable and it is not cached",
                             "Check the network, or set HF_ENDPOINT to a mirror.") from None
    except Exception as error:  # noqa: BLE001 - every Hub failure becomes one clear message
        verdict = explain_hub_error(error, AccessTarget(entry.key, entry.repo, entry.kind, entry.gated),
                                    endpoint or _default_endpoint(), token)
        raise ModelLoadError(f"Cannot download {entry.key} ({entry.repo}): {verdict.status.value}",
                             verdict.detail) from None
    return _with_safetensors(entry, Path(path))


def _with_safetensors(entry: Model, path: Path) -> Path:
    if not any(path.glob("*.safetensors")):
        raise ModelLoadError(f"{entry.key} ({entry.repo}) ships no safetensors weights",
                             "vlmkit loads only safetensors (pickled .bin weights can run code); "
                             "convert the weights or pick another model.")
    return path


def _default_endpoint() -> str:
    from huggingface_hub import constants

    return constants.ENDPOINT
