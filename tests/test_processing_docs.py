"""docs/processing.md lists every processing rule of DEFAULT_RULES, in their order, each with
its docstring's first paragraph (Socorro generates its rule docs from the docstrings too).

The list between BEGIN and END is generated: after changing a rule or its docstring, run
``.venv/bin/python -m tests.test_processing_docs`` from the repository root to rewrite it.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from workers.rule import Rule
from workers.rules import DEFAULT_RULES

DOC = Path(__file__).resolve().parent.parent / "docs" / "processing.md"
BEGIN = "<!-- generated from the docstrings of workers/rules.py DEFAULT_RULES by tests/test_processing_docs.py -->"
END = "<!-- end of the generated list of rules -->"


def summary(rule: Rule) -> str:
    """The first paragraph of the rule's docstring, dedented."""
    return inspect.cleandoc(type(rule).__doc__ or "").split("\n\n")[0]


def section(number: int, rule: Rule) -> str:
    """The rule's section in docs/processing.md: a heading with its place and name, then its summary."""
    return f"### {number}. {rule.name}\n\n{summary(rule)}\n"


def generated() -> str:
    """The list of rules as docs/processing.md holds it, markers included."""
    return "\n".join([BEGIN, "", *(section(n, r) for n, r in enumerate(DEFAULT_RULES, 1)), END])


def documented(text: str) -> str:
    """The generated list as it is in text now, markers included. Raises ValueError without them."""
    return text[text.index(BEGIN):text.index(END) + len(END)]


@pytest.mark.parametrize("number,rule", list(enumerate(DEFAULT_RULES, 1)), ids=lambda v: getattr(v, "name", str(v)))
def test_every_rule_has_its_docstring_in_the_docs(number: int, rule: Rule) -> None:
    assert summary(rule), f"{rule.name} has no docstring"
    assert section(number, rule) in documented(DOC.read_text()), (
        f"docs/processing.md does not say what {rule.name} does as its docstring does: "
        "run .venv/bin/python -m tests.test_processing_docs")


def test_the_docs_list_no_other_rule() -> None:
    assert documented(DOC.read_text()) == generated(), "run .venv/bin/python -m tests.test_processing_docs"


if __name__ == "__main__":
    text = DOC.read_text()
    DOC.write_text(text.replace(documented(text), generated()))
