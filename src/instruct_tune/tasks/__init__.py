"""The built-in verifiable tasks: the generator and the strict verification of a response.

The generator: `families` (the registry `FAMILIES` and the deterministic stream `generate_tasks`), its number
families (`numeric_families`), its word, list, letter and date families (`word_families`) and their fact tables
and word lists (`vocabulary`). The verification: `verify` (each family's rule, `extract_answer`, `strict_match`),
built from `extraction` (numbers, dates, quotes, words, option mentions) and `extractors` (one extractor per kind
of answer, the closed option sets); `matching` is the lenient rule kept for comparison.

Every record the generator writes carries an exact `answer`; `verify` extracts the answer a response commits to by
its family's rule and compares it. Imports only the standard library and `errors`: the data side and the scoring
side both use it, and neither needs a model. `verify` reads `vocabulary`, never the generator itself.
"""
