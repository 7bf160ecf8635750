"""A zoo of tiny models: the real transformers architectures with tiny configs, built at test time.

No weights can be downloaded in CI, so each model vlmkit supports is rebuilt here with the same
classes, processors, tokenizer types and chat templates as its Hub repo (see
shared/reference/models.md), but with hidden sizes of 32-64 and 2 layers. Weights are random
(fixed seeds), so the models generate nonsense, deterministically.

    build_zoo(root)   writes every model into root/<name>/ and returns {name: directory}
    cached_zoo()      builds once into .zoo-cache/<key>/ (key: this file + library versions)
    zoo_dir           the session-scoped pytest fixture around cached_zoo()
    zoo_facts         fixture: {name: {params, hidden_size, ..., tokens_per_frame}}, from the build
    ZOO_FACTS         the same dict as a module attribute (reading it builds the zoo if needed)

torch and transformers are imported inside the functions that need them, as in vlmkit itself.
Import the fixtures into tests/conftest.py (`from zoo import zoo_dir, zoo_facts`) to share them.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

# --- Names vlmkit needs -------------------------------------------------------------------------

QWEN3 = "qwen3"
SIGLIP = "siglip"
CLIP = "clip"
DINOV3_VIT = "dinov3-vit"
DINOV3_CONVNEXT = "dinov3-convnext"
LLAVA_NEXT_VIDEO = "llava-next-video"
QWEN3_VL = "qwen3-vl"
QWEN3_OMNI = "qwen3-omni"

# The Qwen tokenizers (Qwen3, Qwen3-VL) share one set of special tokens, in the Hub order.
QWEN_ENDOFTEXT = "<|endoftext|>"
QWEN_IM_START = "<|im_start|>"
QWEN_IM_END = "<|im_end|>"
QWEN_VISION_START = "<|vision_start|>"
QWEN_VISION_END = "<|vision_end|>"
QWEN_IMAGE_PAD = "<|image_pad|>"
QWEN_VIDEO_PAD = "<|video_pad|>"
QWEN_THINK = "<think>"
QWEN_END_THINK = "</think>"
QWEN_SPECIAL_TOKENS = (
    QWEN_ENDOFTEXT,
    QWEN_IM_START,
    QWEN_IM_END,
    QWEN_VISION_START,
    QWEN_VISION_END,
    QWEN_IMAGE_PAD,
    QWEN_VIDEO_PAD,
)
# Qwen3 marks <think> and </think> as added but not special: decoding keeps them.
QWEN_THINK_TOKENS = (QWEN_THINK, QWEN_END_THINK)
# Qwen3-Omni adds audio tokens (after <|im_end|> on the Hub) and names its multimodal tokens in
# tokenizer_config.json, where Qwen3OmniMoeProcessor reads them (tokenizer.video_token, ...).
QWEN_AUDIO_PAD = "<|audio_pad|>"
QWEN_AUDIO_START = "<|audio_start|>"
QWEN_AUDIO_END = "<|audio_end|>"
QWEN_OMNI_SPECIAL_TOKENS = (
    QWEN_SPECIAL_TOKENS[:3] + (QWEN_AUDIO_PAD, QWEN_AUDIO_START, QWEN_AUDIO_END) + (QWEN_SPECIAL_TOKENS[3:])
)
QWEN_OMNI_NAMED_TOKENS = {
    "image_token": QWEN_IMAGE_PAD,
    "video_token": QWEN_VIDEO_PAD,
    "audio_token": QWEN_AUDIO_PAD,
    "vision_bos_token": QWEN_VISION_START,
    "vision_eos_token": QWEN_VISION_END,
    "audio_bos_token": QWEN_AUDIO_START,
    "audio_eos_token": QWEN_AUDIO_END,
}

# The composed path (vision encoder + projector + Qwen3) splices the projected visual features into
# the text embeddings at the positions of this token. It exists in the real Qwen3 tokenizer too
# (id 151656), so the same code runs against the Hub models.
COMPOSED_VISUAL_PLACEHOLDER = QWEN_VIDEO_PAD

LLAVA_VIDEO_TOKEN = "<video>"
LLAVA_IMAGE_TOKEN = "<image>"

# --- Sizes (the "tiny" in tiny models) ----------------------------------------------------------

SEED = 0
VISION_IMAGE_SIZE = 32  # SigLIP, CLIP, DINOv3 ViT and the vision towers of the VLMs
VISION_PATCH_SIZE = 8  # 32 / 8 = 4 x 4 = 16 patches per frame
CONVNEXT_IMAGE_SIZE = 64  # a ConvNeXt downsamples 32x: 64 px -> a 2 x 2 feature map
LLAVA_PATCH_SIZE = 4  # 32 / 4 = 8 x 8 patches, 2x2 average pooling -> 16 tokens per frame
QWEN3_VL_PATCH_SIZE = 8
QWEN3_VL_MERGE_SIZE = 2
QWEN3_VL_TEMPORAL_PATCH_SIZE = 2

# A small English corpus for the byte-level BPE tokenizers: the words the tests prompt with and a
# model's captions would use.
CORPUS = (
    "A red car drives down the street in the video.",
    "The blue sky is above the green trees.",
    "A man in a red shirt walks a dog in the park.",
    "The woman opens the door and looks at the camera.",
    "Two children play with a yellow ball on the grass.",
    "The video shows a cat sleeping on a white sofa.",
    "A person is cooking food in the kitchen.",
    "The camera pans across a city at night with bright lights.",
    "Describe the video. What happens in this video?",
    "Summarize the clip in one sentence.",
    "The bird flies over the water and lands on a rock.",
    "A black and white dog runs after a frisbee.",
    "There is a boat on the river, and people are waving.",
    "The first frame shows a table; the last frame shows a chair.",
    "You are a helpful assistant. Answer the question about the image.",
    "Numbers: 0 1 2 3 4 5 6 7 8 9 10 100 2024 seconds frames fps.",
    "Punctuation, quotes 'single' \"double\", (brackets) and: colons!",
    "USER: What is in the video? ASSISTANT: A red ball.",
    "system user assistant",
)
PRINTABLE_ASCII = [chr(code) for code in range(32, 127)]
# Learned tokens, at most (the corpus runs out of merges a little earlier); specials come on top.
QWEN_TOKENIZER_TRAINED_VOCAB = 600
LLAMA_TOKENIZER_TRAINED_VOCAB = 600

# --- Chat templates -----------------------------------------------------------------------------

# Qwen3's template (Qwen/Qwen3-*/tokenizer_config.json) without its tool-calling branches: ChatML
# turns, reasoning_content / <think> handling for past assistant turns, and an empty think block
# after the generation prompt when enable_thinking=False.
QWEN3_CHAT_TEMPLATE = """\
{%- if messages[0].role == 'system' %}
    {{- '<|im_start|>system\\n' + messages[0].content + '<|im_end|>\\n' }}
{%- endif %}
{%- set ns = namespace(last_query_index=messages|length - 1, found=false) %}
{%- for message in messages[::-1] %}
    {%- if not ns.found and message.role == 'user' %}
        {%- set ns.last_query_index = (messages|length - 1) - loop.index0 %}
        {%- set ns.found = true %}
    {%- endif %}
{%- endfor %}
{%- for message in messages %}
    {%- if message.content is string %}
        {%- set content = message.content %}
    {%- else %}
        {%- set content = '' %}
    {%- endif %}
    {%- if message.role == 'user' or (message.role == 'system' and not loop.first) %}
        {{- '<|im_start|>' + message.role + '\\n' + content + '<|im_end|>\\n' }}
    {%- elif message.role == 'assistant' %}
        {%- set reasoning_content = '' %}
        {%- if message.reasoning_content is string %}
            {%- set reasoning_content = message.reasoning_content %}
        {%- elif '</think>' in content %}
            {%- set reasoning_content = content.split('</think>')[0].rstrip('\\n') %}
            {%- set reasoning_content = reasoning_content.split('<think>')[-1].lstrip('\\n') %}
            {%- set content = content.split('</think>')[-1].lstrip('\\n') %}
        {%- endif %}
        {%- if loop.index0 > ns.last_query_index and (loop.last or reasoning_content) %}
            {{- '<|im_start|>assistant\\n<think>\\n' + reasoning_content.strip('\\n') }}
            {{- '\\n</think>\\n\\n' + content.lstrip('\\n') }}
        {%- else %}
            {{- '<|im_start|>assistant\\n' + content }}
        {%- endif %}
        {{- '<|im_end|>\\n' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\\n' }}
    {%- if enable_thinking is defined and enable_thinking is false %}
        {{- '<think>\\n\\n</think>\\n\\n' }}
    {%- endif %}
{%- endif %}
"""

# Qwen3-VL-*-Instruct's template without tools: content may be a string or a list of
# {"type": "text" | "image" | "video"} items; each image or video becomes one
# <|vision_start|><|image_pad|>/<|video_pad|><|vision_end|> that the processor expands.
QWEN3_VL_CHAT_TEMPLATE = """\
{%- set image_count = namespace(value=0) %}
{%- set video_count = namespace(value=0) %}
{%- for message in messages %}
    {{- '<|im_start|>' + message.role + '\\n' }}
    {%- if message.content is string %}
        {{- message.content }}
    {%- else %}
        {%- for item in message.content %}
            {%- if item.type == 'image' or 'image' in item or 'image_url' in item %}
                {%- set image_count.value = image_count.value + 1 %}
                {%- if add_vision_id %}{{- 'Picture ' ~ image_count.value ~ ': ' }}{%- endif %}
                {{- '<|vision_start|><|image_pad|><|vision_end|>' }}
            {%- elif item.type == 'video' or 'video' in item %}
                {%- set video_count.value = video_count.value + 1 %}
                {%- if add_vision_id %}{{- 'Video ' ~ video_count.value ~ ': ' }}{%- endif %}
                {{- '<|vision_start|><|video_pad|><|vision_end|>' }}
            {%- elif 'text' in item %}
                {{- item.text }}
            {%- endif %}
        {%- endfor %}
    {%- endif %}
    {{- '<|im_end|>\\n' }}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\\n' }}
{%- endif %}
"""

# Qwen3-Omni-30B-A3B-Instruct's template, reduced like the two above: Qwen3-VL's, plus audio items.
QWEN3_OMNI_CHAT_TEMPLATE = """\
{%- for message in messages %}
    {{- '<|im_start|>' + message.role + '\\n' }}
    {%- if message.content is string %}
        {{- message.content }}
    {%- else %}
        {%- for item in message.content %}
            {%- if item.type == 'image' or 'image' in item or 'image_url' in item %}
                {{- '<|vision_start|><|image_pad|><|vision_end|>' }}
            {%- elif item.type == 'video' or 'video' in item %}
                {{- '<|vision_start|><|video_pad|><|vision_end|>' }}
            {%- elif item.type == 'audio' or 'audio' in item %}
                {{- '<|audio_start|><|audio_pad|><|audio_end|>' }}
            {%- elif 'text' in item %}
                {{- item.text }}
            {%- endif %}
        {%- endfor %}
    {%- endif %}
    {{- '<|im_end|>\\n' }}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\\n' }}
{%- endif %}
"""

# llava-hf/LLaVA-NeXT-Video-7B-hf's template: "USER: <video>\\n{prompt} ASSISTANT:".
LLAVA_NEXT_VIDEO_CHAT_TEMPLATE = """\
{%- for message in messages %}
    {%- if message.role != 'system' %}{{- message.role.upper() + ': ' }}{%- endif %}
    {#- images first, then videos, then the text #}
    {%- for item in message.content | selectattr('type', 'equalto', 'image') %}
        {{- '<image>\\n' }}
    {%- endfor %}
    {%- for item in message.content | selectattr('type', 'equalto', 'video') %}
        {{- '<video>\\n' }}
    {%- endfor %}
    {%- for item in message.content | selectattr('type', 'equalto', 'text') %}
        {{- item.text + ' ' }}
    {%- endfor %}
{%- endfor %}
{%- if add_generation_prompt %}{{- 'ASSISTANT:' }}{%- endif %}
"""


# --- Tokenizers ---------------------------------------------------------------------------------


def _train_bpe(tokenizer: Any, vocab_size: int, special_tokens: list[str], alphabet: list[str]) -> tuple:
    """Train `tokenizer` (a tokenizers.Tokenizer with a BPE model) on CORPUS; return (vocab, merges)."""
    from tokenizers import trainers

    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=special_tokens, initial_alphabet=alphabet, show_progress=False
    )
    tokenizer.train_from_iterator(CORPUS, trainer)
    model = json.loads(tokenizer.to_str())["model"]
    return model["vocab"], [tuple(merge) for merge in model["merges"]]


def make_qwen_tokenizer(
    chat_template: str,
    special_tokens: tuple[str, ...] = QWEN_SPECIAL_TOKENS,
    named_tokens: dict[str, str] | None = None,
) -> Any:
    """A byte-level BPE tokenizer with Qwen2's pre-tokenizer and Qwen3's special tokens."""
    from tokenizers import AddedToken, Regex, Tokenizer, models, normalizers, pre_tokenizers
    from transformers import Qwen2Tokenizer
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    # The same pipeline Qwen2Tokenizer rebuilds around the saved vocab and merges.
    trainee = Tokenizer(models.BPE())
    trainee.normalizer = normalizers.NFC()
    trainee.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    vocab, merges = _train_bpe(
        trainee, QWEN_TOKENIZER_TRAINED_VOCAB, special_tokens=[], alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    # Qwen2Tokenizer's defaults (eos = pad = <|endoftext|>) add <|endoftext|> first, so the special
    # tokens get ids in the Hub order (except named_tokens, added first); Qwen3 then sets eos to
    # <|im_end|>, the end of a chat turn.
    tokenizer = Qwen2Tokenizer(
        vocab=vocab, merges=merges, unk_token=None, model_max_length=4096, **(named_tokens or {})
    )
    tokenizer.add_special_tokens({"extra_special_tokens": list(special_tokens[1:])})
    tokenizer.eos_token = QWEN_IM_END
    tokenizer.add_tokens([AddedToken(token, special=False, normalized=False) for token in QWEN_THINK_TOKENS])
    tokenizer.chat_template = chat_template
    return tokenizer


def make_llama_tokenizer() -> Any:
    """A Llama-style tokenizer (Metaspace BPE with byte fallback), plus LLaVA's <video> and <image>."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaTokenizer

    trainee = Tokenizer(models.BPE(byte_fallback=True))
    trainee.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=True)
    # Llama's layout: <unk> <s> </s>, then the 256 byte-fallback tokens, then the learned pieces.
    specials = ["<unk>", "<s>", "</s>"] + [f"<0x{byte:02X}>" for byte in range(256)]
    alphabet = sorted(set("".join(CORPUS)) | set(PRINTABLE_ASCII) | {"▁"})
    vocab, merges = _train_bpe(trainee, len(specials) + LLAMA_TOKENIZER_TRAINED_VOCAB, specials, alphabet)
    tokenizer = LlamaTokenizer(
        vocab=vocab,
        merges=merges,
        pad_token="<unk>",
        add_bos_token=True,
        extra_special_tokens=[LLAVA_VIDEO_TOKEN, LLAVA_IMAGE_TOKEN],
        model_max_length=4096,
    )
    return tokenizer


def _padded_vocab_size(tokenizer: Any, multiple: int = 64) -> int:
    """len(tokenizer) rounded up, as the Hub configs pad their embedding matrices."""
    return -(-len(tokenizer) // multiple) * multiple


# --- Models -------------------------------------------------------------------------------------


def _seeded() -> None:
    import torch

    torch.manual_seed(SEED)


def _count_params(model: Any) -> int:
    return sum(parameter.numel() for parameter in model.parameters())


def _facts(**values: Any) -> dict[str, Any]:
    """One ZOO_FACTS entry: every key present, None where it does not apply."""
    keys = (
        "architecture",  # the class vlmkit loads
        "params",  # counted on that class: for SigLIP and CLIP, the vision tower only
        "checkpoint_params",  # everything in model.safetensors
        "hidden_size",
        "num_layers",
        "num_heads",
        "num_kv_heads",
        "head_dim",
        "intermediate_size",
        "vocab_size",
        "max_position_embeddings",
        "num_experts",  # MoE only, as the next two
        "num_experts_per_tok",
        "moe_intermediate_size",
        "vision_params",
        "vision_hidden_size",
        "vision_layers",
        "image_size",
        "patch_size",
        "tokens_per_frame",  # visual tokens per input frame at image_size
        "temporal_patch_size",  # frames merged into one group of visual tokens
        "prefix_tokens",  # CLS / register tokens before the patch tokens in last_hidden_state
        "feature_dim",  # width of the vision tower's output (after Qwen's patch merger)
        "special_tokens",  # token -> id
    )
    unknown = set(values) - set(keys)
    if unknown:
        raise ValueError(f"unknown fact(s): {sorted(unknown)}")
    return {key: values.get(key) for key in keys}


def _text_facts(config: Any) -> dict[str, Any]:
    """The decoder-LLM numbers a registry entry needs, read from a text config."""
    heads = config.num_attention_heads
    return {
        "hidden_size": config.hidden_size,
        "num_layers": config.num_hidden_layers,
        "num_heads": heads,
        "num_kv_heads": getattr(config, "num_key_value_heads", None) or heads,
        "head_dim": getattr(config, "head_dim", None) or config.hidden_size // heads,
        "intermediate_size": config.intermediate_size,
        "vocab_size": config.vocab_size,
        "max_position_embeddings": config.max_position_embeddings,
        "num_experts": getattr(config, "num_experts", None),
        "num_experts_per_tok": getattr(config, "num_experts_per_tok", None),
        "moe_intermediate_size": getattr(config, "moe_intermediate_size", None),
    }


def _token_ids(tokenizer: Any, tokens: tuple[str, ...] | list[str]) -> dict[str, int]:
    return {token: tokenizer.convert_tokens_to_ids(token) for token in tokens}


def _greedy_generation_config(tokenizer: Any, eos_tokens: list[str]) -> Any:
    """The Hub configs sample; greedy decoding keeps the zoo's tests deterministic."""
    from transformers import GenerationConfig

    return GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=[tokenizer.convert_tokens_to_ids(token) for token in eos_tokens],
        pad_token_id=tokenizer.pad_token_id,
        do_sample=False,
    )


def build_qwen3(dest: Path) -> dict[str, Any]:
    """Qwen/Qwen3-0.6B in miniature: Qwen3ForCausalLM, GQA, tied embeddings, thinking template."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    tokenizer = make_qwen_tokenizer(QWEN3_CHAT_TEMPLATE)
    config = Qwen3Config(
        vocab_size=_padded_vocab_size(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        # Trained LLMs give confident logits; at the default 0.02 a random 64-wide LM's logits are
        # nearly flat whatever its input, so a projector trained against it could never steer it.
        initializer_range=0.2,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    _seeded()
    model = Qwen3ForCausalLM(config).eval()
    model.generation_config = _greedy_generation_config(tokenizer, [QWEN_IM_END, QWEN_ENDOFTEXT])
    model.save_pretrained(dest)
    tokenizer.save_pretrained(dest)
    params = _count_params(model)
    return _facts(
        architecture=type(model).__name__,
        params=params,
        checkpoint_params=params,
        **_text_facts(config),
        special_tokens=_token_ids(tokenizer, QWEN_SPECIAL_TOKENS + QWEN_THINK_TOKENS),
    )


def _tiny_vit_config(config_class: type, **overrides: Any) -> Any:
    """A 2-layer, 32-wide ViT: 32 px images in 8 px patches -> 16 patch tokens."""
    values = dict(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=VISION_IMAGE_SIZE,
        patch_size=VISION_PATCH_SIZE,
    )
    values.update(overrides)
    return config_class(**values)


def _vision_facts(config: Any, *, prefix_tokens: int) -> dict[str, Any]:
    image_size = config.image_size
    return {
        "hidden_size": config.hidden_size,
        "num_layers": config.num_hidden_layers,
        "num_heads": config.num_attention_heads,
        "num_kv_heads": config.num_attention_heads,  # plain multi-head attention
        "head_dim": config.hidden_size // config.num_attention_heads,
        "intermediate_size": config.intermediate_size,
        "image_size": image_size,
        "patch_size": config.patch_size,
        "tokens_per_frame": (image_size // config.patch_size) ** 2,
        "prefix_tokens": prefix_tokens,
        "feature_dim": config.hidden_size,
        "vision_hidden_size": config.hidden_size,
        "vision_layers": config.num_hidden_layers,
    }


def build_siglip(dest: Path) -> dict[str, Any]:
    """google/siglip-base-patch16-224 in miniature: a full SiglipModel (text + vision towers).

    vlmkit loads the vision tower alone with SiglipVisionModel.from_pretrained, as for the Hub repo.
    """
    from transformers import (
        SiglipConfig,
        SiglipImageProcessor,
        SiglipModel,
        SiglipTextConfig,
        SiglipVisionConfig,
    )

    vision_config = _tiny_vit_config(SiglipVisionConfig)
    text_config = SiglipTextConfig(
        vocab_size=128,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=16,
        projection_size=32,
        pad_token_id=1,  # SigLIP's "</s>", as on the Hub
        eos_token_id=1,
        bos_token_id=None,
    )
    config = SiglipConfig(text_config=text_config.to_dict(), vision_config=vision_config.to_dict())
    _seeded()
    model = SiglipModel(config).eval()
    model.save_pretrained(dest)
    SiglipImageProcessor(size={"height": VISION_IMAGE_SIZE, "width": VISION_IMAGE_SIZE}).save_pretrained(dest)
    vision_params = _count_params(model.vision_model)
    return _facts(
        architecture="SiglipVisionModel",
        params=vision_params,
        checkpoint_params=_count_params(model),
        vision_params=vision_params,
        **_vision_facts(vision_config, prefix_tokens=0),
    )


def build_clip(dest: Path) -> dict[str, Any]:
    """openai/clip-vit-large-patch14-336 in miniature: a full CLIPModel (text + vision towers)."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPTextConfig, CLIPVisionConfig

    vision_config = _tiny_vit_config(CLIPVisionConfig, projection_dim=32)
    text_config = CLIPTextConfig(
        vocab_size=128,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=16,
        projection_dim=32,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
    )
    config = CLIPConfig(
        text_config=text_config.to_dict(), vision_config=vision_config.to_dict(), projection_dim=32
    )
    _seeded()
    model = CLIPModel(config).eval()
    model.save_pretrained(dest)
    CLIPImageProcessor(
        size={"shortest_edge": VISION_IMAGE_SIZE},
        crop_size={"height": VISION_IMAGE_SIZE, "width": VISION_IMAGE_SIZE},
    ).save_pretrained(dest)
    vision_params = _count_params(model.vision_model)
    return _facts(
        architecture="CLIPVisionModel",
        params=vision_params,
        checkpoint_params=_count_params(model),
        vision_params=vision_params,
        **_vision_facts(vision_config, prefix_tokens=1),
    )


def build_dinov3_vit(dest: Path) -> dict[str, Any]:
    """facebook/dinov3-vits16-pretrain-lvd1689m in miniature: CLS + 4 registers + patch tokens."""
    from transformers import DINOv3ViTConfig, DINOv3ViTImageProcessor, DINOv3ViTModel

    config = _tiny_vit_config(DINOv3ViTConfig, num_register_tokens=4)
    _seeded()
    model = DINOv3ViTModel(config).eval()
    model.save_pretrained(dest)
    DINOv3ViTImageProcessor(size={"height": VISION_IMAGE_SIZE, "width": VISION_IMAGE_SIZE}).save_pretrained(
        dest
    )
    params = _count_params(model)
    return _facts(
        architecture=type(model).__name__,
        params=params,
        checkpoint_params=params,
        vision_params=params,
        **_vision_facts(config, prefix_tokens=1 + config.num_register_tokens),
    )


def build_dinov3_convnext(dest: Path) -> dict[str, Any]:
    """facebook/dinov3-convnext-tiny-pretrain-lvd1689m in miniature: 4 stages, 32x downsampling.

    last_hidden_state is [B, 1 + h*w, C]: a pooled "CLS" token, then the last stage's feature map.
    """
    from transformers import DINOv3ConvNextConfig, DINOv3ConvNextModel, DINOv3ViTImageProcessor

    config = DINOv3ConvNextConfig(
        hidden_sizes=[8, 16, 32, 64], depths=[1, 1, 1, 1], image_size=CONVNEXT_IMAGE_SIZE
    )
    _seeded()
    model = DINOv3ConvNextModel(config).eval()
    model.save_pretrained(dest)
    DINOv3ViTImageProcessor(
        size={"height": CONVNEXT_IMAGE_SIZE, "width": CONVNEXT_IMAGE_SIZE}
    ).save_pretrained(dest)
    stride = 4 * 2 ** (len(config.hidden_sizes) - 1)  # a 4x4 stem, then a 2x downsample per stage
    params = _count_params(model)
    return _facts(
        architecture=type(model).__name__,
        params=params,
        checkpoint_params=params,
        vision_params=params,
        hidden_size=config.hidden_sizes[-1],
        num_layers=sum(config.depths),
        image_size=CONVNEXT_IMAGE_SIZE,
        patch_size=stride,
        tokens_per_frame=(CONVNEXT_IMAGE_SIZE // stride) ** 2,
        prefix_tokens=1,
        feature_dim=config.hidden_sizes[-1],
        vision_hidden_size=config.hidden_sizes[-1],
        vision_layers=sum(config.depths),
    )


def build_llava_next_video(dest: Path) -> dict[str, Any]:
    """llava-hf/LLaVA-NeXT-Video-7B-hf in miniature: CLIP tower, 2x2 average pooling, Llama LM."""
    from transformers import (
        CLIPVisionConfig,
        LlamaConfig,
        LlavaNextImageProcessor,
        LlavaNextVideoConfig,
        LlavaNextVideoForConditionalGeneration,
        LlavaNextVideoProcessor,
        LlavaNextVideoVideoProcessor,
    )

    tokenizer = make_llama_tokenizer()
    text_config = LlamaConfig(
        vocab_size=_padded_vocab_size(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,  # Vicuna-7B has no GQA
        max_position_embeddings=2048,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    vision_config = _tiny_vit_config(CLIPVisionConfig, patch_size=LLAVA_PATCH_SIZE, projection_dim=32)
    stride = 2  # LlavaNextVideoConfig.spatial_pool_stride, the Hub value
    patches_per_side = VISION_IMAGE_SIZE // LLAVA_PATCH_SIZE
    tokens_per_frame = (patches_per_side // stride) ** 2
    image_size = VISION_IMAGE_SIZE
    config = LlavaNextVideoConfig(
        text_config=text_config.to_dict(),
        vision_config=vision_config.to_dict(),
        video_token_index=tokenizer.convert_tokens_to_ids(LLAVA_VIDEO_TOKEN),
        image_token_index=tokenizer.convert_tokens_to_ids(LLAVA_IMAGE_TOKEN),
        spatial_pool_stride=stride,
        # LLaVA-NeXT's any-resolution grids, scaled down from [[336, 672], [672, 336], [672, 672], ...]
        image_grid_pinpoints=[
            [image_size, 2 * image_size],
            [2 * image_size, image_size],
            [2 * image_size] * 2,
        ],
        image_seq_length=patches_per_side**2,
        video_seq_length=tokens_per_frame,
    )
    _seeded()
    model = LlavaNextVideoForConditionalGeneration(config).eval()
    model.generation_config = _greedy_generation_config(tokenizer, ["</s>"])
    model.save_pretrained(dest)
    size = {"shortest_edge": image_size}
    crop_size = {"height": image_size, "width": image_size}
    processor = LlavaNextVideoProcessor(
        video_processor=LlavaNextVideoVideoProcessor(size=size, crop_size=crop_size),
        image_processor=LlavaNextImageProcessor(
            size=size, crop_size=crop_size, image_grid_pinpoints=config.image_grid_pinpoints
        ),
        tokenizer=tokenizer,
        chat_template=LLAVA_NEXT_VIDEO_CHAT_TEMPLATE,
        patch_size=LLAVA_PATCH_SIZE,
        vision_feature_select_strategy=config.vision_feature_select_strategy,
        num_additional_image_tokens=1,  # CLIP's CLS token
    )
    processor.save_pretrained(dest)
    measured = _video_tokens_per_frame(processor, LLAVA_VIDEO_TOKEN, config.video_token_index)
    if measured != tokens_per_frame:
        raise RuntimeError(
            f"LLaVA-NeXT-Video: processor emits {measured} tokens per frame, not {tokens_per_frame}"
        )
    params = _count_params(model)
    return _facts(
        architecture=type(model).__name__,
        params=params,
        checkpoint_params=params,
        vision_params=_count_params(model.model.vision_tower),
        vision_hidden_size=config.vision_config.hidden_size,
        vision_layers=config.vision_config.num_hidden_layers,
        **_text_facts(model.config.text_config),
        image_size=image_size,
        patch_size=LLAVA_PATCH_SIZE,
        tokens_per_frame=tokens_per_frame,
        temporal_patch_size=1,
        feature_dim=config.vision_config.hidden_size,
        special_tokens=_token_ids(tokenizer, [LLAVA_VIDEO_TOKEN, LLAVA_IMAGE_TOKEN, "<s>", "</s>", "<unk>"]),
    )


def _qwen_text_config(tokenizer: Any) -> dict[str, Any]:
    """The text side of Qwen3-VL and the Qwen3-Omni thinker: Qwen3 with interleaved M-RoPE."""
    return dict(
        vocab_size=_padded_vocab_size(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=4096,
        # mrope_section splits the head_dim / 2 rotary frequencies over (time, height, width); the
        # Hub models use [24, 20, 20] of 64.
        rope_parameters={
            "rope_type": "default",
            "rope_theta": 5_000_000.0,
            "mrope_section": [4, 2, 2],
            "mrope_interleaved": True,
        },
    )


def _qwen_vision_config(out_hidden_size: int) -> dict[str, Any]:
    """Qwen3-VL's ViT: 2x2 spatial and 2-frame temporal patch merging, DeepStack features."""
    return dict(
        depth=2,
        hidden_size=32,
        intermediate_size=64,
        num_heads=2,
        patch_size=QWEN3_VL_PATCH_SIZE,
        spatial_merge_size=QWEN3_VL_MERGE_SIZE,
        temporal_patch_size=QWEN3_VL_TEMPORAL_PATCH_SIZE,
        out_hidden_size=out_hidden_size,
        num_position_embeddings=64,  # an 8 x 8 grid, interpolated to the input's patch grid
        deepstack_visual_indexes=[0],  # the Hub models add 3 intermediate layers' features to the LM
    )


def _qwen_vision_processor_kwargs() -> dict[str, Any]:
    factor = QWEN3_VL_PATCH_SIZE * QWEN3_VL_MERGE_SIZE  # frames are resized to multiples of this
    return dict(
        patch_size=QWEN3_VL_PATCH_SIZE,
        temporal_patch_size=QWEN3_VL_TEMPORAL_PATCH_SIZE,
        merge_size=QWEN3_VL_MERGE_SIZE,
        image_mean=[0.5, 0.5, 0.5],  # the Hub configs normalize images and video to [-1, 1]
        image_std=[0.5, 0.5, 0.5],
        size={"shortest_edge": factor * factor, "longest_edge": 64 * 64 * 16},  # min / max pixels
    )


def _video_tokens_per_frame(processor: Any, text: str, video_token_id: int, **call: Any) -> int | float:
    """Count what the processor really emits for a 2-frame video at VISION_IMAGE_SIZE.

    Qwen models emit tokens per group of 2 frames, so the count per frame can be a half.
    """
    import numpy as np

    video = np.zeros((2, VISION_IMAGE_SIZE, VISION_IMAGE_SIZE, 3), dtype=np.uint8)
    input_ids = processor(text=[text], videos=[video], return_tensors="pt", **call)["input_ids"]
    per_frame = int((input_ids == video_token_id).sum()) / len(video)
    return int(per_frame) if per_frame.is_integer() else per_frame


def build_qwen3_vl(dest: Path) -> dict[str, Any]:
    """Qwen/Qwen3-VL-2B-Instruct in miniature: ViT with 2x2 spatial and 2-frame temporal merging,
    DeepStack features, interleaved M-RoPE, Qwen3 LM; the processor samples 2 fps and writes
    a <t seconds> timestamp before each group of 2 frames.
    """
    from transformers import (
        Qwen2VLImageProcessor,
        Qwen3VLConfig,
        Qwen3VLForConditionalGeneration,
        Qwen3VLProcessor,
        Qwen3VLVideoProcessor,
    )

    tokenizer = make_qwen_tokenizer(QWEN3_VL_CHAT_TEMPLATE)
    text_config = _qwen_text_config(tokenizer)
    config = Qwen3VLConfig(
        text_config=text_config,
        vision_config=_qwen_vision_config(out_hidden_size=text_config["hidden_size"]),
        image_token_id=tokenizer.convert_tokens_to_ids(QWEN_IMAGE_PAD),
        video_token_id=tokenizer.convert_tokens_to_ids(QWEN_VIDEO_PAD),
        vision_start_token_id=tokenizer.convert_tokens_to_ids(QWEN_VISION_START),
        vision_end_token_id=tokenizer.convert_tokens_to_ids(QWEN_VISION_END),
        tie_word_embeddings=True,  # as the 2B and 4B models
    )
    _seeded()
    model = Qwen3VLForConditionalGeneration(config).eval()
    model.generation_config = _greedy_generation_config(tokenizer, [QWEN_IM_END, QWEN_ENDOFTEXT])
    # These random weights emit nothing but newlines, a caption that strips to nothing (recorded as an
    # "empty caption" error): suppressing the newline token makes them emit text, as a trained model does.
    model.generation_config.suppress_tokens = tokenizer.encode("\n")
    model.save_pretrained(dest)
    processor = Qwen3VLProcessor(
        image_processor=Qwen2VLImageProcessor(**_qwen_vision_processor_kwargs()),
        tokenizer=tokenizer,
        video_processor=Qwen3VLVideoProcessor(**_qwen_vision_processor_kwargs()),
        chat_template=QWEN3_VL_CHAT_TEMPLATE,
    )
    processor.save_pretrained(dest)
    tokens_per_frame = _video_tokens_per_frame(
        processor,
        f"{QWEN_VISION_START}{QWEN_VIDEO_PAD}{QWEN_VISION_END}",
        config.video_token_id,
        video_metadata=[{"fps": 2.0, "total_num_frames": 2, "frames_indices": [0, 1]}],
        do_sample_frames=False,
        cap_pixels_per_frame=True,
    )
    params = _count_params(model)
    return _facts(
        architecture=type(model).__name__,
        params=params,
        checkpoint_params=params,
        vision_params=_count_params(model.model.visual),
        vision_hidden_size=config.vision_config.hidden_size,
        vision_layers=config.vision_config.depth,
        **_text_facts(model.config.text_config),
        image_size=VISION_IMAGE_SIZE,
        patch_size=QWEN3_VL_PATCH_SIZE,
        tokens_per_frame=tokens_per_frame,
        temporal_patch_size=QWEN3_VL_TEMPORAL_PATCH_SIZE,
        feature_dim=config.vision_config.out_hidden_size,
        special_tokens=_token_ids(tokenizer, QWEN_SPECIAL_TOKENS),
    )


def build_qwen3_omni(dest: Path) -> dict[str, Any]:
    """Qwen/Qwen3-Omni-30B-A3B-Instruct in miniature: a Qwen3OmniMoeForConditionalGeneration
    checkpoint holding the thinker only (MoE LM with 4 experts, Qwen3-VL's ViT, an audio encoder),
    which vlmkit loads with Qwen3OmniMoeThinkerForConditionalGeneration.

    The Hub checkpoint also holds the talker and code2wav (speech output); the thinker class skips
    them on load, so enable_audio_output=False here only leaves out weights vlmkit never loads.
    """
    from transformers import (
        Qwen2VLImageProcessor,
        Qwen2VLVideoProcessor,
        Qwen3OmniMoeConfig,
        Qwen3OmniMoeForConditionalGeneration,
        Qwen3OmniMoeProcessor,
        WhisperFeatureExtractor,
    )

    tokenizer = make_qwen_tokenizer(
        QWEN3_OMNI_CHAT_TEMPLATE, special_tokens=QWEN_OMNI_SPECIAL_TOKENS, named_tokens=QWEN_OMNI_NAMED_TOKENS
    )
    token_id = tokenizer.convert_tokens_to_ids
    text_config = _qwen_text_config(tokenizer) | dict(
        moe_intermediate_size=32,
        num_experts=4,
        num_experts_per_tok=2,  # 128 experts, 8 active on the Hub
    )
    thinker_config = dict(
        text_config=text_config,
        vision_config=_qwen_vision_config(out_hidden_size=text_config["hidden_size"]),
        audio_config=dict(
            num_mel_bins=128,  # WhisperFeatureExtractor(feature_size=128)
            encoder_layers=2,
            encoder_attention_heads=2,
            encoder_ffn_dim=64,
            d_model=32,
            output_dim=text_config["hidden_size"],
            downsample_hidden_size=16,
        ),
        audio_token_id=token_id(QWEN_AUDIO_PAD),
        audio_start_token_id=token_id(QWEN_AUDIO_START),
        image_token_id=token_id(QWEN_IMAGE_PAD),
        video_token_id=token_id(QWEN_VIDEO_PAD),
        vision_start_token_id=token_id(QWEN_VISION_START),
        user_token_id=tokenizer("user", add_special_tokens=False).input_ids[0],
    )
    config = Qwen3OmniMoeConfig(
        thinker_config=thinker_config,
        enable_audio_output=False,
        im_start_token_id=token_id(QWEN_IM_START),
        im_end_token_id=token_id(QWEN_IM_END),
    )
    _seeded()
    model = Qwen3OmniMoeForConditionalGeneration(config).eval()
    model.generation_config = _greedy_generation_config(tokenizer, [QWEN_IM_END, QWEN_ENDOFTEXT])
    model.save_pretrained(dest)
    processor = Qwen3OmniMoeProcessor(
        image_processor=Qwen2VLImageProcessor(**_qwen_vision_processor_kwargs()),
        video_processor=Qwen2VLVideoProcessor(**_qwen_vision_processor_kwargs()),
        feature_extractor=WhisperFeatureExtractor(feature_size=128),
        tokenizer=tokenizer,
        chat_template=QWEN3_OMNI_CHAT_TEMPLATE,
    )
    processor.save_pretrained(dest)
    # Qwen3OmniMoeProcessor's own default video size (at least 128 * 32 * 32 pixels) overrides the
    # video processor's, as on the Hub: small frames are upscaled to at least 128 tokens per 2 frames.
    tokens_per_frame = _video_tokens_per_frame(
        processor,
        f"{QWEN_VISION_START}{QWEN_VIDEO_PAD}{QWEN_VISION_END}",
        thinker_config["video_token_id"],
        do_sample_frames=False,
        cap_pixels_per_frame=True,
    )
    thinker = model.thinker
    params = _count_params(thinker)
    return _facts(
        architecture=type(thinker).__name__,
        params=params,
        checkpoint_params=_count_params(model),
        vision_params=_count_params(thinker.model.visual),
        vision_hidden_size=thinker.config.vision_config.hidden_size,
        vision_layers=thinker.config.vision_config.depth,
        **_text_facts(thinker.config.text_config),
        image_size=VISION_IMAGE_SIZE,
        patch_size=QWEN3_VL_PATCH_SIZE,
        tokens_per_frame=tokens_per_frame,
        temporal_patch_size=QWEN3_VL_TEMPORAL_PATCH_SIZE,
        feature_dim=text_config["hidden_size"],
        special_tokens=_token_ids(tokenizer, QWEN_OMNI_SPECIAL_TOKENS),
    )


BUILDERS: dict[str, Callable[[Path], dict[str, Any]]] = {
    QWEN3: build_qwen3,
    SIGLIP: build_siglip,
    CLIP: build_clip,
    DINOV3_VIT: build_dinov3_vit,
    DINOV3_CONVNEXT: build_dinov3_convnext,
    LLAVA_NEXT_VIDEO: build_llava_next_video,
    QWEN3_VL: build_qwen3_vl,
    QWEN3_OMNI: build_qwen3_omni,
}
FACTS_FILE = "zoo_facts.json"


def build_zoo(root: Path) -> dict[str, Path]:
    """Write every tiny model into root/<name>/ and their facts into root/zoo_facts.json."""
    root.mkdir(parents=True, exist_ok=True)
    facts = {}
    for name, build in BUILDERS.items():
        facts[name] = build(root / name)
    (root / FACTS_FILE).write_text(json.dumps(facts, indent=2, sort_keys=True) + "\n")
    return zoo_paths(root)


def zoo_paths(root: Path) -> dict[str, Path]:
    return {name: root / name for name in BUILDERS}


def load_zoo_facts(root: Path) -> dict[str, dict[str, Any]]:
    return json.loads((root / FACTS_FILE).read_text())


# --- Cache --------------------------------------------------------------------------------------

DEFAULT_CACHE_ROOT = Path(__file__).resolve().parents[1] / ".zoo-cache"
ZOO_PREFIX = "zoo-"
PARTIAL_PREFIX = ".partial-"
BUILT_MARKER = "BUILT"  # holds the build time; a reused zoo keeps it


def cache_key() -> str:
    """Changes when this file or a library that writes the files changes."""
    from importlib.metadata import version

    digest = hashlib.sha256(Path(__file__).read_bytes())
    for package in ("transformers", "torch", "tokenizers"):
        digest.update(f"{package}=={version(package)}".encode())
    return digest.hexdigest()[:16]


def cached_zoo(cache_root: Path = DEFAULT_CACHE_ROOT, build: Callable[[Path], object] = build_zoo) -> Path:
    """The zoo directory for the current cache key, built on first use.

    The build goes into a temporary sibling that is renamed into place when complete, so a killed
    build never leaves a half zoo behind; when two processes race, the first rename wins.
    """
    final = cache_root / f"{ZOO_PREFIX}{cache_key()}"
    if final.is_dir():
        return final
    cache_root.mkdir(parents=True, exist_ok=True)
    _remove_stale_entries(cache_root)
    partial = Path(tempfile.mkdtemp(prefix=PARTIAL_PREFIX, dir=cache_root))
    try:
        build(partial)
        (partial / BUILT_MARKER).write_text(f"{time.time()}\n")
        partial.chmod(0o755)  # mkdtemp makes it private
        try:
            os.rename(partial, final)
        except OSError:
            if not final.is_dir():  # not a lost race: a real error
                raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return final


def _remove_stale_entries(cache_root: Path) -> None:
    """Delete what killed builds left behind, and zoos built for older sources or libraries.

    Only old ones: a recent partial build may still be running, and a recent zoo may still be in
    use by a test session that started before this file changed.
    """
    now = time.time()
    for entry in cache_root.iterdir():
        if entry.name.startswith(PARTIAL_PREFIX):
            max_age_s = 3600
        elif entry.name.startswith(ZOO_PREFIX):
            max_age_s = 7 * 24 * 3600
        else:
            continue
        if now - entry.stat().st_mtime > max_age_s:
            shutil.rmtree(entry, ignore_errors=True)


def cache_root() -> Path:
    """.zoo-cache/ at the repository root, or $VLMKIT_ZOO_CACHE."""
    return Path(os.environ.get("VLMKIT_ZOO_CACHE", DEFAULT_CACHE_ROOT))


@pytest.fixture(scope="session")
def zoo_dir() -> Path:
    """The built tiny-model zoo: zoo_dir / <name> is a model directory, as from a Hub snapshot."""
    return cached_zoo(cache_root())


@pytest.fixture(scope="session")
def zoo_facts(zoo_dir: Path) -> dict[str, dict[str, Any]]:
    return load_zoo_facts(zoo_dir)


def __getattr__(name: str) -> Any:
    """ZOO_FACTS is read from the cached zoo (built on first access), so importing this file stays cheap."""
    if name == "ZOO_FACTS":
        return load_zoo_facts(cached_zoo(cache_root()))
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
