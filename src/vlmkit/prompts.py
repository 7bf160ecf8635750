"""Prompts vlmkit sends to models: one place, so the CLI can show them without importing model code."""

DEFAULT_PROMPT = "Describe what happens in this video in one or two sentences."
SUMMARY_PROMPT = ("These are captions of consecutive segments of one video, with their times:\n{segments}\n"
                  "Write one short paragraph that summarises the whole video.")
