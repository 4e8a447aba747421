"""Issue 28, item 6: no module of ``service/`` or ``models/`` over 300 lines unless its docstring
says why ("Over 300 lines on purpose: ...")."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LIMIT = 300
REASON = "over 300 lines on purpose"


def oversized_without_reason(root: Path) -> list[str]:
    """The modules under ``root``'s service/ and models/ longer than :data:`LIMIT` lines whose
    docstring gives no reason, as ``path (lines)``."""
    out = []
    for package in ("service", "models"):
        for path in sorted((root / package).rglob("*.py")):
            text = path.read_text(encoding="utf-8")
            lines = len(text.splitlines())
            if lines <= LIMIT:
                continue
            docstring = ast.get_docstring(ast.parse(text)) or ""
            if REASON not in " ".join(docstring.lower().split()):
                out.append(f"{path.relative_to(root)} ({lines})")
    return out


def test_no_module_over_300_lines_without_a_reason() -> None:
    assert oversized_without_reason(ROOT) == []


def test_a_long_module_needs_its_reason(tmp_path: Path) -> None:
    (tmp_path / "service").mkdir()
    (tmp_path / "models").mkdir()
    body = "x = 1\n" * LIMIT
    (tmp_path / "service" / "short.py").write_text('"""Short."""\n' + "x = 1\n" * (LIMIT - 1))
    (tmp_path / "service" / "long.py").write_text('"""Long."""\n' + body)
    (tmp_path / "models" / "why.py").write_text(
        '"""Long.\n\nOver 300 lines\non purpose: one compiled loop."""\n' + body
    )
    assert oversized_without_reason(tmp_path) == ["service/long.py (301)"]
