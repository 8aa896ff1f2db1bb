"""Token-level matching shared by verification, the answer metrics and the judge: `normalise_tokens` and the
lenient rule `lenient_match` (the answer's tokens anywhere in the response).

Its own module so that the judge (which checks that a copied answer occurs in the response) and the repetition
metric use it without depending on the per-family verification rules in `verify`.
"""

from __future__ import annotations

import re
import unicodedata


_TOKEN = re.compile(r"(?<!\w)-?\d+(?:\.\d+)?|[^\W_]+")


def normalise_tokens(text: str) -> list[str]:
    """Text as a sequence of comparable tokens, for exact-match accuracy.

    NFKC, case-folded; a token is a number (digits with an optional decimal part, and a leading minus
    when it does not follow a letter or digit, so `2024-01-05` gives 2024, 01, 05) or a run of letters
    and digits; everything else (spaces, punctuation, quotes, underscores) only separates tokens.
    So `"Paris."` and `paris` match, `1,234` is 1 234 (and does not match `1234`), `3.50` does not match `3.5`.
    """
    return _TOKEN.findall(unicodedata.normalize("NFKC", text).casefold())


def lenient_match(answer: str, response: str) -> bool:
    """The normalised answer occurs in the normalised response as a contiguous token sequence (the old rule).

    An answer with no tokens (only punctuation) falls back to a case-folded substring test.
    """
    target, tokens = normalise_tokens(answer), normalise_tokens(response)
    if not target:
        return bool(answer.strip()) and answer.strip().casefold() in response.casefold()
    k = len(target)
    return any(tokens[i : i + k] == target for i in range(len(tokens) - k + 1))
