"""One client for every LLM call (the judge and the synthesizer): backends (a GGUF in-process through
llama-cpp-python, or any OpenAI-compatible server), the judge model's assembly from registry pieces (`models`), the
answer cache and the pool that fills it (`cache`), the one ask-for-JSON / retry / parse loop (`client`), untrusted
text made inert inside prompts (`prompt_text`) and API-key rules (`api_keys`).

Imports neither torch nor transformers nor the `lm` package: a change to training code never reruns the judge.
"""
