"""Rules of the code's layout that a reviewer would otherwise check by hand, by reading it."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).parent.parent


def sources(folder: str) -> dict[str, str]:
    return {str(path.relative_to(ROOT)): path.read_text() for path in (ROOT / folder).rglob("*.py")}


def test_no_error_is_built_from_the_base_class() -> None:
    # WrapperError says nothing of what went wrong: each error is one of its subclasses.
    built = {
        path
        for path, text in sources("wrapper").items()
        if path != "wrapper/errors.py" and re.search(r"\bWrapperError\(", text)
    }
    assert built == set()


def test_no_test_module_imports_another() -> None:
    # Shared helpers live in conftest.py or a plain module named for its role.
    importing = {
        path
        for folder in ("tests", "bench", "examples")
        for path, text in sources(folder).items()
        if re.search(r"^\s*(from|import)\s+(tests)?\.?test_\w+", text, re.MULTILINE)
    }
    assert importing == set()


def test_only_the_backend_package_imports_the_sdk() -> None:
    importers = set()
    for path, text in sources("wrapper").items():
        for node in ast.walk(ast.parse(text)):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            if any(name.split(".")[0] == "claude_agent_sdk" for name in names):
                importers.add(str(Path(path).parent))
    assert importers == {"wrapper/claude"}
