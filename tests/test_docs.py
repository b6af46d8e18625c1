"""The pages in docs/ point into the code by line: each pointer must still land on the line it quotes.

A code reference is written

    [`LSTM cell`](../pillars/models/rnn.py#L44): `c = f * c + i * g`

and holds when the file exists, has that line, and the line contains the quoted code (stripped). The
commands the pages show must name real subcommands, options, tasks and experiments; their links must
reach existing files, and the PNG files they name must be ones the code writes.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest

import pillars.experiments
import pillars.tasks
from pillars.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = sorted(p for p in DOCS.glob("*.md") if p.name != "README.md")
MIN_REFERENCES = 5
PENDING_SUBCOMMANDS: set[str] = set()    # subcommands accepted before the parser has them

CODE_REF = re.compile(r"\[([^\]]+)\]\(([^)\s#]+)#L(\d+)\): `([^`]+)`")
LINE_LINK = re.compile(r"\[([^\]]+)\]\(([^)\s#]+)#L(\d+)\)")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)
INLINE_CODE = re.compile(r"`([^`\n]+)`")


def docs() -> list[Path]:
    return sorted(DOCS.glob("*.md"))


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def code_reference_errors(text: str, name: str, base: Path = DOCS) -> list[str]:
    """What is wrong with each code reference of a page (`text`, shown as `name`, links relative to `base`)."""
    errors = []
    for m in LINE_LINK.finditer(text):
        if not CODE_REF.match(text, m.start()):
            errors.append(f"{name}: {m.group(0)} points at a line but is not followed by ': `CODE`' quoting it")
    for m in CODE_REF.finditer(text):
        label, target, line, code = m.group(1), m.group(2), int(m.group(3)), m.group(4).strip()
        ref = f"[{label}]({target}#L{line}): `{code}`"
        path = (base / target).resolve()
        if not path.is_file():
            errors.append(f"{name}: {ref}: no file {rel(path)}")
            continue
        lines = path.read_text(encoding="utf-8").splitlines()
        if 1 <= line <= len(lines) and code in lines[line - 1]:
            continue
        found = [i + 1 for i, text_line in enumerate(lines) if code in text_line]
        problem = (f"line {line} reads {lines[line - 1].strip()!r}" if 1 <= line <= len(lines)
                   else f"{rel(path)} has {len(lines)} lines")
        now = (f"the code is now at line {', '.join(map(str, found))}" if found
               else f"the code occurs nowhere in {rel(path)}")
        errors.append(f"{name}: {ref}: {problem}; {now}")
    return errors


def test_code_references_land_on_the_lines_they_quote():
    errors = [e for page in docs() for e in code_reference_errors(page.read_text(encoding="utf-8"), rel(page))]
    assert not errors, "\n".join(errors) + "\n(python docs/fix_line_numbers.py moves the references whose code moved)"


def test_every_pillar_page_has_code_references_and_is_in_the_index():
    assert len(PAGES) >= 4, f"expected a page per pillar in {rel(DOCS)}, found {[p.name for p in PAGES]}"
    index = (DOCS / "README.md").read_text(encoding="utf-8")
    indexed = {(DOCS / target).resolve() for target in LINK.findall(index)}
    for page in PAGES:
        count = len(CODE_REF.findall(page.read_text(encoding="utf-8")))
        assert count >= MIN_REFERENCES, f"{rel(page)}: {count} code references, fewer than {MIN_REFERENCES}"
        assert page.resolve() in indexed, f"{rel(page)} is not linked from docs/README.md"


def test_relative_links_reach_existing_files():
    errors = []
    for page in docs():
        for target in LINK.findall(page.read_text(encoding="utf-8")):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue
            path = (DOCS / target.split("#")[0]).resolve()
            if not path.exists():
                errors.append(f"{rel(page)}: link ({target}): no such file {rel(path)}")
    assert not errors, "\n".join(errors)


def commands(text: str) -> list[str]:
    """Every `pillars ...` and `python ...` command of a page: in inline code, or a line of a fenced block."""
    fenced = [ln.strip() for block in FENCE.findall(text) for ln in block.splitlines()[1:-1]]
    spans = INLINE_CODE.findall(FENCE.sub("", text))
    return [part.strip() for cmd in fenced + spans for part in cmd.split("&&")
            if part.strip().startswith(("pillars ", "python "))]


def command_errors(cmd: str, parser: argparse.ArgumentParser, subcommands: set[str]) -> list[str]:
    argv = shlex.split(cmd, comments=True)
    task_files = []
    while argv and re.match(r"^[A-Z_]+=", argv[0]):   # VARIABLE=value pillars ...
        name, _, value = argv.pop(0).partition("=")
        task_files += value.split(":") if name == "PILLARS_TASKS" else []
    while len(argv) > 2 and argv[1] == "--tasks":   # pillars --tasks FILE ...: the global option
        task_files.append(argv[2])
        del argv[1:3]
    for path in task_files:
        if not (ROOT / path).is_file():
            return [f"no task file {path}"]
        pillars.tasks.load_file(ROOT / path)
    if argv[0] == "python":
        script = next((a for a in argv[1:] if a.endswith(".py")), None)
        return [] if script is None or (ROOT / script).is_file() else [f"no script {script}"]
    if len(argv) < 2 or argv[1] not in subcommands | PENDING_SUBCOMMANDS:
        return [f"no subcommand {argv[1] if len(argv) > 1 else ''!r} (there are: {', '.join(sorted(subcommands))})"]
    if argv[1] not in subcommands:
        return []
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            args = parser.parse_args(argv[1:])
    except SystemExit:
        return [f"the command line rejects it: {stderr.getvalue().strip().splitlines()[-1]}"]
    tasks, errors = pillars.tasks.all_tasks(), []
    for key in ("task", "keys"):     # pillars train TASK, pillars list --keys TASK
        value = getattr(args, key, None)
        if value and value not in tasks:
            errors.append(f"no task {value!r}")
    if argv[1] == "experiment" and args.name not in pillars.experiments.EXPERIMENTS:
        errors.append(f"no experiment {args.name!r} (there are: {', '.join(pillars.experiments.EXPERIMENTS)})")
    run = Path(getattr(args, "run_dir", None) or getattr(args, "resume", None) or "")
    if run.parent.name == "runs" and not run.name.isupper():   # runs/TASK or runs/TASK-2; RUN_DIR is a placeholder
        if run.name not in tasks and re.sub(r"-\d+$", "", run.name) not in tasks:
            errors.append(f"{run} is not the run folder of a task")
    return errors


def test_commands_name_real_subcommands_options_and_tasks():
    parser = build_parser()
    subcommands = {name for action in parser._actions if isinstance(action, argparse._SubParsersAction)
                   for name in action.choices}
    errors, seen = [], 0
    for page in docs():
        for cmd in commands(page.read_text(encoding="utf-8")):
            seen += 1
            errors += [f"{rel(page)}: `{cmd}`: {e}" for e in command_errors(cmd, parser, subcommands)]
    assert seen, "no commands found in docs/"
    assert not errors, "\n".join(errors)


def test_figures_named_are_written_by_the_code():
    source = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "pillars").rglob("*.py"))
    errors = []
    for page in docs():
        for span in INLINE_CODE.findall(page.read_text(encoding="utf-8")):
            if span.endswith(".png") and " " not in span and Path(span).name not in source:
                errors.append(f"{rel(page)}: `{span}`: no code in pillars/ writes {Path(span).name}")
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize("change", ["another line", "past the end"])
def test_a_wrong_line_number_is_caught_and_the_right_one_named(change):
    page = PAGES[0]
    text = page.read_text(encoding="utf-8")
    m = next(m for m in CODE_REF.finditer(text)                   # a reference whose code occurs once
             if (DOCS / m.group(2)).read_text(encoding="utf-8").count(m.group(4).strip()) == 1)
    line = int(m.group(3))
    wrong = line + 1 if change == "another line" else 100_000
    corrupted = text[:m.start(3)] + str(wrong) + text[m.end(3):]    # a copy; the page itself is untouched
    errors = code_reference_errors(corrupted, f"copy of {rel(page)}")
    assert len(errors) == 1, errors
    assert errors[0].startswith(f"copy of {rel(page)}: [{m.group(1)}]({m.group(2)}#L{wrong})"), errors[0]
    assert errors[0].endswith(f"the code is now at line {line}"), errors[0]
