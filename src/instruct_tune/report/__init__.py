"""What a person reads: REPORT.md (`build`), text from data made inert in Markdown (`markdown`), PNG charts
(`charts`, used by the stages that draw them) and DVC plot pages that work offline (`offline_plots`).

Reads metrics and plots files only; imports `tasks.verify` for the rules it lists, never a model.
"""
