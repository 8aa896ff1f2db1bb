"""Scoring the generations: answer metrics (strict verification, lenient match, repetition) with paired intervals
(`answers`, `stats`), and the LLM judge (`judge`: its prompts as data in `prompts/`, requests, verdicts,
aggregation and validity).

May import `tasks` (verification), `llm` (the client) and `report.charts`; never torch or the `lm` package, so scoring
reruns without regenerating.
"""
