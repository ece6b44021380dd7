"""Files built from each format's grammar with hostile values (tests/grammar.py): every reader
path must end in a clean one-line ConverterError naming the file, or read consistently, within
the corpus worker's alarm and memory cap."""

from __future__ import annotations

import pytest

from tests import grammar


@pytest.fixture(scope="module")
def grammar_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("grammar")
    cases = grammar.generate(root)
    results = grammar.run(root, cases)
    print("\n" + grammar.summary(cases, results))
    return cases, results


def test_every_format_has_many_cases_and_they_are_deterministic(grammar_run, tmp_path):
    cases, _ = grammar_run
    per_reader: dict[str, int] = {}
    for m in cases:
        per_reader[m.original] = per_reader.get(m.original, 0) + 1
    assert set(per_reader) == {f"grammar-{k}" for k in grammar.GENERATORS}
    assert min(per_reader.values()) >= 30, per_reader
    assert grammar.corpus.digest(grammar.generate(tmp_path)) == grammar.corpus.digest(cases)


@pytest.mark.parametrize("key", list(grammar.GENERATORS))
def test_built_files_fail_cleanly_or_read_consistently(grammar_run, key):
    cases, results = grammar_run
    mine = [m for m in cases if m.original == f"grammar-{key}"]
    bad = grammar.corpus.failures(mine, results)
    assert not bad, f"{len(bad)} of {len(mine)} cases misbehave:\n" + "\n".join(bad[:30])
    assert {results[m.id]["outcome"] for m in mine} >= {"error"}
