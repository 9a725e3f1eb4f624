"""Benchmark the PII scanner: speed per format against its parser alone, and corpus quality.

- ``speed(rows)``: a poor-household list (``bench.pii_corpus.ho_ngheo``) written in each
  format; ``scan_file`` timed (best of 3) against the format's parser alone in the same run,
  reading the same file: python-calamine iterating every row (xlsx, xls, ods), ``csv.reader``
  over the decoded text (csv), decoding alone (txt), python-docx loading the document and
  reading every paragraph and cell (docx), the OLE2 piece-table reader (doc), lxml parsing
  ``content.xml`` (odt), pypdf extracting every page's text (pdf), inflating every member
  and reading it with its parser (zip of an xlsx, a docx and a csv). Figures: MB/s of the file as stored, and ``ratio`` = scan time ÷ parser time.
  xls, ods, doc and odt are converted from the xlsx/docx with LibreOffice when ``soffice`` is
  installed, else left out.
- ``quality(seeds)``: precision and recall by kind and format on the labelled corpus
  (``bench.pii_corpus``), the converted fixtures included, near-miss documents apart.
"""

from __future__ import annotations

import io
import json
import random
import shutil
import subprocess
import tempfile
import time
import zipfile
from collections import Counter
from pathlib import Path

from bench import pii_corpus
from canhgac_common.pii import scan_file

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "data" / "pii_corpus"
# Rows per format: documents and PDFs are slow to write, and commune files of them are small.
_ROWS = {"xlsx": 20_000, "csv": 20_000, "txt": 20_000, "docx": 2_000, "pdf": 300, "zip": 4_000}


def _best(fn, repeats: int = 3) -> float:
    """Return the least CPU time of this process over the repeats.

    CPU time, not wall time: the machines are shared and loaded (load 8-10 on 2 cores while
    this was measured), which stretches wall time at random; both sides of a ratio are timed
    the same way, and every parser and the scan run in this one thread.
    """
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        fn()
        best = min(best, time.process_time() - start)
    return best


def _parse_sheet(path: Path) -> None:
    import python_calamine

    workbook = python_calamine.CalamineWorkbook.from_path(str(path))
    for index in range(len(workbook.sheet_names)):
        for _row in workbook.get_sheet_by_index(index).iter_rows():
            pass
    workbook.close()


def _parse_csv(path: Path) -> None:
    import csv

    with open(path, encoding="utf-8-sig", newline="") as f:
        for _row in csv.reader(f):
            pass


def _parse_txt(path: Path) -> None:
    path.read_bytes().decode("utf-8")


def _parse_docx(path: Path) -> None:
    import docx

    document = docx.Document(str(path))
    for paragraph in document.paragraphs:
        _ = paragraph.text
    for table in document.tables:
        for row in table.rows:
            for cell in row.cells:
                _ = cell.text


def _parse_doc(path: Path) -> None:
    from canhgac_common.pii.documents import read_doc_text

    with open(path, "rb") as f:
        read_doc_text(f, max_chars=1 << 30)


def _parse_odt(path: Path) -> None:
    from lxml import etree

    with zipfile.ZipFile(path) as archive, archive.open("content.xml") as content:
        etree.parse(content, etree.XMLParser(resolve_entities=False, no_network=True))


def _parse_pdf(path: Path) -> None:
    import pypdf

    for page in pypdf.PdfReader(str(path)).pages:
        page.extract_text()


def _parse_zip(path: Path) -> None:
    import csv

    import docx
    import python_calamine

    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            data = archive.read(info)
            if info.filename.endswith(".xlsx"):
                workbook = python_calamine.CalamineWorkbook.from_filelike(io.BytesIO(data))
                for index in range(len(workbook.sheet_names)):
                    for _row in workbook.get_sheet_by_index(index).iter_rows():
                        pass
            elif info.filename.endswith(".docx"):
                document = docx.Document(io.BytesIO(data))
                for table in document.tables:
                    for row in table.rows:
                        for cell in row.cells:
                            _ = cell.text
            elif info.filename.endswith(".csv"):
                for _row in csv.reader(io.StringIO(data.decode("utf-8-sig"))):
                    pass


PARSERS = {
    "xlsx": _parse_sheet, "xls": _parse_sheet, "ods": _parse_sheet, "csv": _parse_csv,
    "txt": _parse_txt, "docx": _parse_docx, "doc": _parse_doc, "odt": _parse_odt,
    "pdf": _parse_pdf, "zip": _parse_zip,
}  # fmt: skip


def _convert(source: Path, fmt: str, directory: Path) -> Path | None:
    soffice = shutil.which("soffice")
    if soffice is None:
        return None
    subprocess.run(  # fixed arguments: the local LibreOffice converting our own file
        [soffice, f"-env:UserInstallation={(directory / 'profile').as_uri()}", "--headless",
         "--convert-to", fmt, "--outdir", str(directory), str(source)],
        check=True, capture_output=True, timeout=600,
    )
    return directory / f"{source.stem}.{fmt}"


def speed(scale: float = 1.0, repeats: int = 3) -> dict:
    """Return MB/s of the scan and of the parser alone per format, and their ratio."""
    figures: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as name:
        directory = Path(name)
        files: dict[str, Path] = {}
        for fmt, rows in _ROWS.items():
            doc = pii_corpus.ho_ngheo(random.Random(7), max(50, int(rows * scale)))
            doc.name = f"ho-ngheo-{fmt}"
            files[fmt] = pii_corpus.render(doc, fmt, directory)
        for fmt, source in pii_corpus.CONVERTED_FROM.items():
            converted = _convert(files[source], fmt, directory)
            if converted is not None:
                files[fmt] = converted
        for fmt, path in files.items():
            size_mb = path.stat().st_size / 1e6
            result = scan_file(path, max_seconds=600)
            scan_s = _best(lambda path=path: scan_file(path, max_seconds=600), repeats)
            parse_s = _best(lambda path=path, fmt=fmt: PARSERS[fmt](path), repeats)
            figures[fmt] = {
                "size_mb": round(size_mb, 2),
                "scan_mb_per_s": round(size_mb / scan_s, 2),
                "parser_mb_per_s": round(size_mb / parse_s, 2),
                "ratio": round(scan_s / parse_s, 2),
                "counts": result.pii_counts(),
                "is_truncated": result.is_truncated,
            }
    return figures


def quality(seeds: tuple[int, ...] = (1, 2, 3), rows: int = 40) -> dict:
    """Return precision and recall by format and kind on the labelled corpus."""
    pairs: dict[str, list] = {fmt: [] for fmt in pii_corpus.FORMATS}
    near: dict[str, Counter] = {fmt: Counter() for fmt in pii_corpus.FORMATS}
    errors = 0
    with tempfile.TemporaryDirectory() as name:
        directory = Path(name)
        for seed in seeds:
            for doc in pii_corpus.make_documents(seed, rows=rows):
                for fmt in pii_corpus.DIRECT_FORMATS:
                    if fmt not in pii_corpus.formats_for(doc):
                        continue
                    path = pii_corpus.render(doc, fmt, directory)
                    result = scan_file(path)
                    errors += result.error is not None
                    if doc.kind.startswith("near_miss"):
                        near[fmt][doc.kind.partition(":")[2]] += result.total
                    else:
                        pairs[fmt].append((pii_corpus.truth_in(doc, fmt), result.pii_counts()))
                    path.unlink()
    manifest = json.loads((FIXTURES / "manifest.json").read_text(encoding="utf-8"))
    for file_name, info in manifest["files"].items():
        result = scan_file(FIXTURES / file_name)
        errors += result.error is not None
        if info["document"].startswith("near_miss"):
            near[info["format"]][info["document"].partition(":")[2]] += result.total
        else:
            pairs[info["format"]].append((Counter(info["truth"]), result.pii_counts()))
    return {
        "errors": errors,
        "by_format": {fmt: pii_corpus.score(p) for fmt, p in pairs.items() if p},
        "near_miss_counted": {fmt: dict(c) for fmt, c in near.items() if sum(c.values())},
    }


def run(quick: bool = False) -> dict:
    """Run both parts (quick: smaller files, one seed)."""
    return {
        "speed": speed(scale=0.1 if quick else 1.0, repeats=1 if quick else 3),
        "quality": quality(seeds=(1,) if quick else (1, 2, 3)),
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=1, ensure_ascii=False))
