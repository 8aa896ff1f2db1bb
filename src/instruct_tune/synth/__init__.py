"""Instruction records written by an LLM from your documents, then checked by rules and an auditor LLM.

Reads documents, cuts passages, asks the generator and the auditor through the `llm` client (prompts as data in
`prompts/`). May import `llm`, `data.cleaning` and the top-level modules; never the judge or `lm`.
"""
