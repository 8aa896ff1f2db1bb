"""What dvc.yaml promises about each stage, checked against the code, so nobody has to keep it in their head.

For every stage in dvc.yaml (a new stage is checked as soon as it is declared):
- its `src/` deps are exactly the modules its script imports, directly or through other modules (a function's
  import counts: it runs when the stage calls it), so a code change reruns exactly the stages it can affect;
- its `params` are exactly the params.yaml sections and keys its script reads from `load_params()`;
- its `cmd` is `python stages/<stage>.py --name PATH ...`, and those paths and its deps and outs name the same
  files: each path argument is a dep or an out (or inside or around one), except git-ignored scratch state
  (checkpoints, caches) that is deliberately neither, and each dep and out is passed to the script (or, for a
  local data source, named by the params it reads).
Failures name the stage and the entry that is missing or extra (for a missing module, the import chain).
"""

from __future__ import annotations

import ast
import dataclasses
import subprocess
from collections import deque
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from dvc_stages import REPO, stage_command, stage_paths, stages
from instruct_tune.params import Params, load_params, params_from_dict, to_dict

PACKAGE = "instruct_tune"
SRC = REPO / "src"
STAGES = list(stages())


# ---------------------------------------------------------------- imports


def _module_file(module: str) -> Path:
    parts = module.split(".")
    return SRC.joinpath(*parts, "__init__.py") if (SRC.joinpath(*parts)).is_dir() else SRC.joinpath(*parts[:-1],
                                                                                                      f"{parts[-1]}.py")


def _skipped(node: ast.If) -> bool:
    """`if __name__ == "__main__":` (runs only as a script) and `if TYPE_CHECKING:` (never runs)."""
    test = ast.unparse(node.test)
    return test in ("__name__ == '__main__'", "TYPE_CHECKING", "typing.TYPE_CHECKING")


def package_imports(path: Path) -> set[str]:
    """The package's modules that `path` imports anywhere in its code, with the packages they sit in (a package's
    __init__ runs on any import of one of its modules)."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _skipped(child):
                for other in child.orelse:
                    visit(other)
                continue
            if isinstance(child, ast.Import):
                found.update(a.name for a in child.names if a.name.split(".")[0] == PACKAGE)
            elif isinstance(child, ast.ImportFrom) and child.module and child.module.split(".")[0] == PACKAGE:
                assert child.level == 0, f"{path}: relative import; use `from {PACKAGE}...`"
                found.add(child.module)
                found.update(f"{child.module}.{a.name}" for a in child.names
                             if _module_file(f"{child.module}.{a.name}").exists())
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8"), str(path)))
    # A module's packages run their __init__ first: `instruct_tune.lm.training` imports `instruct_tune.lm` and
    # `instruct_tune`.
    return found | {".".join(m.split(".")[:i]) for m in found for i in range(1, m.count(".") + 1)}


def import_closure(script: Path) -> dict[str, list[str]]:
    """Every package module `script` ends up importing, each with the chain of imports that reaches it."""
    chains: dict[str, list[str]] = {}
    queue = deque((m, [str(script.relative_to(REPO)), m]) for m in sorted(package_imports(script)))
    while queue:
        module, chain = queue.popleft()
        if module in chains:
            continue
        chains[module] = chain
        queue.extend((m, [*chain, m]) for m in sorted(package_imports(_module_file(module))))
    return chains


def data_files(module: str) -> list[str]:
    """The data files a module reads at run time, as its module-level `PROMPT_FILES = [...]` names them (paths
    relative to the module's folder), relative to the repository."""
    path = _module_file(module)
    for node in ast.parse(path.read_text(encoding="utf-8"), str(path)).body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and "PROMPT_FILES" in ast.unparse(node).split("=")[0]:
            return [str((path.parent / name).relative_to(REPO)) for name in ast.literal_eval(node.value)]
    return []


def _entries(items: list[Any] | None) -> list[str]:
    """Paths of a deps/outs/metrics list (an entry is a path, or a mapping from a path to its options)."""
    return [next(iter(item)) if isinstance(item, dict) else item for item in items or []]


@pytest.mark.parametrize("stage", STAGES)
def test_src_deps_are_exactly_the_modules_the_stage_imports(stage: str) -> None:
    spec = stages()[stage]
    script = REPO / stage_command(stage)[1]
    deps = _entries(spec.get("deps"))
    assert str(script.relative_to(REPO)) in deps, f"stage {stage!r}: its script {script.relative_to(REPO)} is not a dep"
    closure = import_closure(script)
    imported = {str(_module_file(m).relative_to(REPO)): chain for m, chain in closure.items()}
    read = {f: [*chain, f"reads {f}"] for m, chain in closure.items() for f in data_files(m)}
    declared = {d for d in deps if d.startswith("src/")}
    problems = [f"stage {stage!r}: {path} is imported ({' -> '.join(chain)}) but not in its deps"
                for path, chain in sorted(imported.items()) if path not in declared]
    problems += [f"stage {stage!r}: {path} is read ({' -> '.join(chain)}) but not in its deps"
                 for path, chain in sorted(read.items()) if path not in declared]
    problems += [f"stage {stage!r}: {path} is in its deps but its script never imports or reads it"
                 for path in sorted(declared - set(imported) - set(read))]
    assert not problems, "\n".join(problems)


def test_data_files_are_named_by_the_modules_that_read_them() -> None:
    """A module that loads a data file names it in PROMPT_FILES, so the stages that import it depend on the file."""
    assert data_files("instruct_tune.evaluate.judge_prompts") == ["src/instruct_tune/evaluate/prompts/judge.yaml"]
    assert data_files("instruct_tune.synth.examples") == ["src/instruct_tune/synth/prompts/synth.yaml"]
    for module in ("instruct_tune.evaluate.judge_prompts", "instruct_tune.synth.examples"):
        assert all((REPO / f).is_file() for f in data_files(module))
    loaded = {str(p.relative_to(REPO)) for p in SRC.rglob("*.yaml")}
    named = {f for p in SRC.rglob("*.py") for f in data_files(".".join(p.relative_to(SRC).with_suffix("").parts))}
    assert loaded == named, "every data file under src/ is named by the PROMPT_FILES of the module that reads it"


def test_the_import_closure_sees_lazy_imports_and_skips_main_blocks() -> None:
    closure = import_closure(REPO / "stages" / "judge.py")
    # llm/models.py finds the bundled GGUF inside a function: that import counts.
    assert closure["instruct_tune.bundled"][-2:] == ["instruct_tune.llm.models", "instruct_tune.bundled"]
    assert "instruct_tune.cli" in closure  # imported by the stage itself
    report = import_closure(REPO / "stages" / "report.py")
    assert "instruct_tune.evaluate.judge" not in report and "instruct_tune.evaluate.rubric" in report
    # evaluate/head_to_head.py imports the judge under `if __name__ == "__main__":` only for run_stage
    assert "instruct_tune.cli" not in {m for m in package_imports(SRC / PACKAGE / "evaluate" / "head_to_head.py")}


def test_the_layout_keeps_its_boundaries() -> None:
    """The reasons for the folders: scoring never reruns inference, the LLM client never loads the training side."""
    def closure(stage: str) -> set[str]:
        return set(import_closure(REPO / "stages" / f"{stage}.py"))

    assert not {m for m in closure("generate") if m.startswith(("instruct_tune.evaluate", "instruct_tune.tasks"))}
    for stage in ("judge", "synthesize", "evaluate"):
        assert not {m for m in closure(stage) if m.startswith("instruct_tune.lm")}, stage
    assert not {m for m in closure("evaluate") if m.startswith("instruct_tune.llm.") and m != "instruct_tune.llm.api_keys"}
    assert "instruct_tune.tasks.verify" not in closure("judge")  # the judge reads the evaluate stage's verification


# ---------------------------------------------------------------- params


def _parents(tree: ast.AST) -> dict[ast.AST, ast.AST]:
    return {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}


def _attribute_chain(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> tuple[list[str], ast.AST]:
    """The attribute names read off `node` (`node.a.b` -> [a, b]) and the outermost expression."""
    chain: list[str] = []
    while isinstance(parents.get(node), ast.Attribute) and parents[node].value is node:
        node = parents[node]
        chain.append(node.attr)
    return chain, node


def params_read(script: Path) -> set[str]:
    """The params a stage script reads, as `section` (the section passed on whole) or `section.key`."""
    tree = ast.parse(script.read_text(encoding="utf-8"), str(script))
    parents = _parents(tree)
    reads: set[str] = set()
    for call in ast.walk(tree):
        if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "load_params"):
            continue
        assert not call.args and not call.keywords, f"{script}: load_params() reads params.yaml, DVC's default file"
        prefix, outer = _attribute_chain(call, parents)
        uses = [prefix]
        holder = parents.get(outer)
        if isinstance(holder, ast.Assign) and len(holder.targets) == 1 and isinstance(holder.targets[0], ast.Name):
            name = holder.targets[0].id
            uses = [prefix + _attribute_chain(n, parents)[0] for n in ast.walk(tree)
                    if isinstance(n, ast.Name) and n.id == name and isinstance(n.ctx, ast.Load)]
        for chain in uses:
            assert chain, (f"{script}: the whole params object is passed on; pass its sections, so that what the "
                           f"stage reads is visible here")
            reads.add(".".join(chain[:2]))
    return reads


@pytest.mark.parametrize("stage", STAGES)
def test_params_are_exactly_what_the_stage_reads(stage: str) -> None:
    declared = set(stages()[stage].get("params") or [])
    reads = params_read(REPO / stage_command(stage)[1])

    def covers(entry: str, read: str) -> bool:
        return read == entry or read.startswith(f"{entry}.")

    problems = [f"stage {stage!r}: reads params `{r}` but its params do not list it (or its section)"
                for r in sorted(reads) if not any(covers(d, r) for d in declared)]
    problems += [f"stage {stage!r}: lists params `{d}` but never reads it"
                 for d in sorted(declared) if not any(covers(d, r) for r in reads)]
    assert not problems, "\n".join(problems)


def test_declared_params_exist() -> None:
    for stage, spec in stages().items():
        for entry in spec.get("params") or []:
            node: Any = Params()
            for key in entry.split("."):
                assert dataclasses.is_dataclass(node) and key in {f.name for f in dataclasses.fields(node)}, \
                    f"stage {stage!r}: params `{entry}` is not a key of params.yaml"
                node = getattr(node, key)


# ---------------------------------------------------------------- paths


def _related(a: str, b: str) -> bool:
    """The same path, or one inside the other."""
    pa, pb = PurePosixPath(a), PurePosixPath(b)
    return pa == pb or pa in pb.parents or pb in pa.parents


def _git_ignored(path: str) -> bool:
    return subprocess.run(["git", "check-ignore", "-q", path], cwd=REPO).returncode == 0


def _strings(tree: Any) -> set[str]:
    if isinstance(tree, dict):
        return set().union(*map(_strings, tree.values()))
    if isinstance(tree, list):
        return set().union(*map(_strings, tree))
    return {tree} if isinstance(tree, str) else set()


def path_problems(stage: str, spec: dict[str, Any], args: dict[str, str], params: Params) -> list[str]:
    """How the cmd's `--name PATH` arguments and the stage's deps and outs fail to name the same files. A dep may
    also be named by the params the stage reads (a local source's `uri` under `data.sources`)."""
    named_by_params = set().union(*(_strings(to_dict(getattr(params, entry.split(".")[0])))
                                    for entry in spec.get("params") or []))
    deps = [d for d in _entries(spec.get("deps")) if not d.startswith(("src/", "stages/"))]
    outs = _entries(spec.get("outs")) + _entries(spec.get("metrics")) + _entries(spec.get("plots"))
    problems = [f"stage {stage!r}: {f} is a dep or an out but no --option in its cmd names it"
                for f in deps + outs if not any(_related(f, a) for a in args.values())
                and not (f in deps and any(_related(f, p) for p in named_by_params))]
    for option, path in args.items():
        if not any(_related(path, f) for f in deps + outs) and not _git_ignored(path):
            problems.append(f"stage {stage!r}: --{option.replace('_', '-')} {path} is neither a dep nor an out, nor "
                            f"git-ignored scratch state")
    return problems


@pytest.mark.parametrize("stage", STAGES)
def test_cmd_paths_and_deps_and_outs_name_the_same_files(stage: str) -> None:
    script = stage_command(stage)[1]
    assert Path(script) == REPO / "stages" / f"{stage}.py", f"stage {stage!r}: cmd must run stages/{stage}.py"
    problems = path_problems(stage, stages()[stage], stage_paths(stage), load_params(REPO / "params.yaml"))
    assert not problems, "\n".join(problems)


def test_a_local_source_named_in_params_may_be_a_dep_of_prepare() -> None:
    """README ("Your data"): a local source file is added to the prepare stage's deps, so DVC reruns it when the file
    changes; the script reads it through `data.sources`, not its cmd."""
    params = params_from_dict({"data": {"sources": [{"uri": "data/raw/in.jsonl"}]}})
    spec = {**stages()["prepare"], "deps": [*stages()["prepare"]["deps"], "data/raw"]}
    assert path_problems("prepare", spec, stage_paths("prepare"), params) == []
    spec = {**spec, "deps": [*spec["deps"], "data/other.jsonl"]}
    assert path_problems("prepare", spec, stage_paths("prepare"), params) == [
        "stage 'prepare': data/other.jsonl is a dep or an out but no --option in its cmd names it"]


def test_cli_defaults_are_the_pipeline_paths() -> None:
    from instruct_tune.evaluate import judge
    from instruct_tune.lm import chat

    assert chat.DEFAULT_MODEL == stage_paths("train")["model_dir"]
    assert judge.DEFAULT_CACHE == stage_paths("judge")["cache"]
