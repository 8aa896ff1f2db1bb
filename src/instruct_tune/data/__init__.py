"""The data side: from sources to the prepared records, their analysis and the stratified split.

`sources` reads a local file, a hub dataset, a URL or the built-in generator; `formats` turns each format's rows into
normalised records; `cleaning` drops and counts; `prepare` runs the three; `eda` describes the prepared records;
`split` samples train/val/test by stratum. May import `tasks` (the built-in generator), `report.charts` and the
top-level modules (`params`, `io`, `errors`); never torch, a model or an LLM.
"""
