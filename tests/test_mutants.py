"""scripts/mutants.sh (run by hand) finds each mutation's text under kb/ by content: a
refactor that rewrites a mutated line leaves the mutation reporting NOT APPLIED. Two did
so unnoticed (api-fold-ignored, api-empty-query-lists-nothing); this keeps the table
applicable to the code as it is."""

from __future__ import annotations

from conftest import REPO


def test_every_mutation_of_the_table_applies_to_exactly_one_place() -> None:
    script = (REPO / "scripts" / "mutants.sh").read_text(encoding="utf-8")
    table = script.split("<<'EOF'\n", 1)[1].split("\nEOF\n", 1)[0].splitlines()
    sources = [p.read_text(encoding="utf-8") for p in (REPO / "kb").rglob("*.py")]
    assert len(table) > 40
    names = [row.split("|", 1)[0] for row in table]
    assert len(set(names)) == len(names)
    for row in table:
        name, old, new, tests = row.split("|", 3)
        assert old != new and tests.startswith("tests/"), name
        assert sum(text.count(old) for text in sources) == 1, name
