"""The built-in verifiable tasks: the generator (`families`) and the strict verification of a response (`verify`).

Every record the generator writes carries an exact `answer`; `verify` extracts the answer a response commits to by
its family's rule and compares it. Imports only the standard library and `errors`: the data side and the scoring
side both use it, and neither needs a model.
"""
