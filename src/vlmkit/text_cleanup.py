"""Strip the stock openings video captioners put in front of almost every caption."""

from __future__ import annotations

import re

_STOCK_OPENING = re.compile(
    r"^\s*(?:in\s+)?(?:the|this)\s+(?:video|clip|footage|scene)\s*"
    r"(?:,\s*|(?:shows|depicts|features|captures|presents|displays|showcases|illustrates|is showing)\s+(?:that\s+)?)"
    r"|^\s*(?:the|this)\s+video\s+(?:begins|starts)\s+with\s+",
    re.IGNORECASE,
)


def strip_stock_opening(caption: str) -> str:
    """'The video shows a red car turning left.' -> 'A red car turning left.'"""
    stripped = _STOCK_OPENING.sub("", caption, count=1)
    if not stripped or stripped == caption:
        return caption
    return stripped[0].upper() + stripped[1:]
