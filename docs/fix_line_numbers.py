"""Move the docs' code references to the lines where their quoted code now is.

    python docs/fix_line_numbers.py        # rewrite docs/*.md in place; prints what moved and what is lost

A reference moves only when its quoted code occurs on exactly one line of its file; a quote that occurs
nowhere or on several lines is printed for a person to fix (tests/test_docs.py names them too).
"""
from __future__ import annotations

import re
from pathlib import Path

DOCS = Path(__file__).resolve().parent
CODE_REF = re.compile(r"\[([^\]]+)\]\(([^)\s#]+)#L(\d+)\): `([^`]+)`")


def fix(page: Path) -> list[str]:
    notes = []

    def moved(m: re.Match) -> str:
        target, line, code = m.group(2), int(m.group(3)), m.group(4).strip()
        lines = (page.parent / target).resolve().read_text(encoding="utf-8").splitlines()
        if 1 <= line <= len(lines) and code in lines[line - 1]:
            return m.group(0)
        found = [i + 1 for i, text in enumerate(lines) if code in text]
        if len(found) != 1:
            notes.append(f"{page.name}: `{code}` occurs on {len(found)} lines of {target}: fix it by hand")
            return m.group(0)
        notes.append(f"{page.name}: {target} line {line} -> {found[0]}")
        return m.group(0).replace(f"#L{line})", f"#L{found[0]})", 1)

    text = page.read_text(encoding="utf-8")
    new = CODE_REF.sub(moved, text)
    if new != text:
        page.write_text(new, encoding="utf-8")
    return notes


if __name__ == "__main__":
    for page in sorted(DOCS.glob("*.md")):
        for note in fix(page):
            print(note)
