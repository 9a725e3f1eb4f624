"""PII scanner on a labelled corpus of commune files: precision and recall in every format.

The corpus comes from ``bench.pii_corpus`` (seeded): xlsx, csv, docx, pdf, txt and zip files
are written here for two seeds; xls, ods, doc and odt are the committed LibreOffice
conversions of one seed (tests/data/pii_corpus, made by ``python -m bench.pii_corpus``),
whose manifest of true counts must still be what the generator says.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from bench.pii_corpus import (
    CONVERTED_FROM,
    DIRECT_FORMATS,
    FIXTURE_ROWS,
    FIXTURE_SEED,
    formats_for,
    make_documents,
    render,
    score,
    truth_in,
)
from canhgac_common.pii import scan_file

FIXTURES = Path(__file__).resolve().parent / "data" / "pii_corpus"
SEEDS = (11, 12)
ROWS = 24


def assert_good(fmt: str, pairs: list[tuple[Counter, dict[str, int]]]) -> None:
    figures = score(pairs)
    for kind in ("cccd", "phone"):
        assert figures[kind]["true"] >= 40, (fmt, kind)
        assert figures[kind]["precision"] >= 0.98, (fmt, kind, figures[kind])
        assert figures[kind]["recall"] >= 0.95, (fmt, kind, figures[kind])


@pytest.fixture(scope="module")
def direct_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list]:
    """Scan every document of the corpus in every directly written format."""
    out: dict[str, list] = {fmt: [] for fmt in DIRECT_FORMATS}
    directory = tmp_path_factory.mktemp("korpus")
    for seed in SEEDS:
        for doc in make_documents(seed, rows=ROWS):
            for fmt in DIRECT_FORMATS:
                if fmt not in formats_for(doc):
                    continue
                path = render(doc, fmt, directory)
                out[fmt].append((doc, scan_file(path)))
                path.unlink()
    return out


@pytest.mark.parametrize("fmt", DIRECT_FORMATS)
def test_precision_and_recall_in_written_formats(direct_results: dict, fmt: str) -> None:
    pairs = []
    for doc, result in direct_results[fmt]:
        assert result.error is None, (doc.name, fmt, result.error)
        if not doc.kind.startswith("near_miss"):
            pairs.append((truth_in(doc, fmt), result.pii_counts()))
    assert_good(fmt, pairs)


@pytest.mark.parametrize("fmt", DIRECT_FORMATS)
def test_near_misses_count_zero_in_written_formats(direct_results: dict, fmt: str) -> None:
    for doc, result in direct_results[fmt]:
        # Near misses alone, and the accounting exports (invoice numbers that would be IDs and
        # amounts that would be phones with a zero put back, tax codes) hold no identifier.
        if doc.kind.startswith(("near_miss", "ke_toan")):
            assert result.pii_counts() == {}, (doc.name, fmt)


def test_pdf_near_misses_in_sentences_count_zero(tmp_path: Path) -> None:
    # The labelled near misses written in sentences ("Quét mã QR: …", "STK: …") count zero
    # in a PDF too, where lines wrap away from their labels.
    for doc in make_documents(SEEDS[0], rows=ROWS):
        if doc.kind.startswith("near_miss"):
            doc.blocks = [block for block in doc.blocks if isinstance(block, str)]
            assert doc.blocks
            result = scan_file(render(doc, "pdf", tmp_path))
            assert result.error is None
            assert result.pii_counts() == {}, doc.name


def test_fixture_manifest_is_what_the_generator_makes() -> None:
    manifest = json.loads((FIXTURES / "manifest.json").read_text(encoding="utf-8"))
    assert (manifest["seed"], manifest["rows"]) == (FIXTURE_SEED, FIXTURE_ROWS)
    expected = {}
    for doc in make_documents(FIXTURE_SEED, rows=FIXTURE_ROWS):
        for fmt in CONVERTED_FROM:
            expected[f"{doc.name}.{fmt}"] = dict(sorted(truth_in(doc, fmt).items()))
    assert {name: info["truth"] for name, info in manifest["files"].items()} == expected
    assert all((FIXTURES / name).is_file() for name in expected)


@pytest.mark.parametrize("fmt", sorted(CONVERTED_FROM))
def test_precision_and_recall_in_converted_formats(fmt: str) -> None:
    manifest = json.loads((FIXTURES / "manifest.json").read_text(encoding="utf-8"))
    pairs = []
    for name, info in sorted(manifest["files"].items()):
        if info["format"] != fmt:
            continue
        result = scan_file(FIXTURES / name)
        assert result.error is None, (name, result.error)
        assert result.file_kind == fmt
        found = result.pii_counts()
        if info["document"].startswith("near_miss") or info["document"].startswith("ke_toan"):
            assert found == {}, name
        else:
            pairs.append((Counter(info["truth"]), found))
    assert_good(fmt, pairs)
