"""Prompt text: untrusted text inside a prompt, which `neutralise` makes unable to open or close the `<<<...>>>`
delimiter blocks that fence it off, and the prompt texts themselves, kept as data in YAML files beside the code that
sends them (`load_prompts`, `fill`). Used by the judge and the `synthesize` stage's generator and auditor."""

from __future__ import annotations

import functools
import re
import unicodedata
from pathlib import Path
from typing import Any

import yaml

# Characters that NFKC folds into `<` or `>` (fullwidth, small forms, ...): mapped to them, and nothing else
# in the text is normalised (NFKC would also turn "2³" into "23").
_BRACKET_LOOKALIKES = {ord(c): unicodedata.normalize("NFKC", c) for c in map(chr, range(0x80, 0x10000))
                       if unicodedata.normalize("NFKC", c) in ("<", ">")}
# A run of two or more angle brackets, with spaces or invisible format characters (zero-width space,
# word joiner, soft hyphen, ...) between them.
_INVISIBLE = ("\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e\u2060-\u206f"
              "\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufff8\U0001bca0-\U0001bca3\U0001d173-\U0001d17a"
              "\U000e0000-\U000e0fff\x00-\x08\x0e-\x1f\x7f-\x9f")  # Unicode's default-ignorables, controls
_ANGLES = re.compile(rf"[<>](?:[\s{_INVISIBLE}]*[<>])+")
# Chat templates' special-token markers (ChatML `<|im_start|>`, Llama 3 `<|eot_id|>`, Gemma `<start_of_turn>`,
# Llama 2 `<s>`/`</s>`, Mistral `[INST]`): a server that renders the template to text and tokenizes it with special
# tokens on would read them as real turn boundaries. A space after the opening `<` or `[` (or before `|>`) keeps
# them readable and makes them ordinary text.
_SPECIAL = re.compile(r"<(?=\|)|(?<=\|)>|<(?=/?(?:s|bos|eos|unk|pad|start_of_turn|end_of_turn)>)|\[(?=/?INST\])",
                      re.IGNORECASE)


def neutralise(text: str) -> str:
    """Untrusted text made unable to open or close a delimiter block.

    Look-alikes of `<` and `>` become them; then every run of two or more angle brackets, with spaces or
    invisible characters between them, collapses to its first bracket. The delimiters all contain `<<<`
    or `>>>`, and after this no two angle brackets stand together anywhere in the data. Special-token markers
    (`<|im_start|>`, `</s>`, `[INST]`, ...) get a space that makes them plain text (`< |im_start| >`).
    """
    text = _ANGLES.sub(lambda m: m.group(0)[0], text.translate(_BRACKET_LOOKALIKES))
    return _SPECIAL.sub(lambda m: "< " if m.group() == "<" else " >" if m.group() == ">" else "[ ", text)


@functools.cache
def load_prompts(path: Path) -> dict[str, Any]:
    """The prompt texts in a YAML file beside the code that sends them (read once per process): a mapping from
    names to texts, each exactly the text the model reads (block scalars `|-`, no trailing newline)."""
    with open(path, encoding="utf-8") as f:
        data = yaml.safe_load(f)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of prompt names to texts")
    return data


def fill(template: str, **values: Any) -> str:
    """`template` with each `{name}` of `values` replaced by its value; any other brace (a JSON reply form, a
    slot filled later) is left as it is."""
    for name, value in values.items():
        template = template.replace("{" + name + "}", str(value))
    return template
