"""The model side: loading models and tokenizers (`modeling`), prompt templates (`templates`), fine-tuning
(`training`, with its examples and labels in `examples` and its resume state in `checkpoints`), batched generation
(`generation`) and talking to a trained model (`chat`).

Everything that imports torch or transformers lives here. May import `bundled`, `report.charts` (the loss chart) and
the top-level modules; never the judge, the LLM client or the scoring code, so a change to scoring never reruns
training or generation.
"""
