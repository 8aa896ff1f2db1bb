"""The judge's rubric: what is scored and on which scale. The judge grades by it, the report shows it."""

from __future__ import annotations

CRITERIA = ("factual_correctness", "instruction_adherence", "clarity_usefulness")
MAX_SCORE = 5
MAX_TOTAL = MAX_SCORE * len(CRITERIA)
