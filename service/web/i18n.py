"""Maintain the message catalogs: extract from code and templates, merge, compile.

Usage from the repository root:
    python -m service.web.i18n update    # babel.cfg → messages.pot → merge into each .po
    python -m service.web.i18n compile   # .po → .mo (commit both)
    python -m service.web.i18n check     # exit 1 if a message lacks a translation
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from babel.messages.pofile import read_po

ROOT = Path(__file__).resolve().parents[2]
TRANSLATIONS = ROOT / "service" / "translations"
BABEL_CFG = ROOT / "babel.cfg"
TARGET_LANGUAGES = ("en",)  # Vietnamese is the source language and needs no catalog
# Lazy strings in forms and label tables use these names besides Babel's defaults (_, gettext…).
KEYWORDS = ("_l", "lazy_gettext")


def pybabel() -> list[str]:
    """Return the argv prefix that runs this interpreter's pybabel."""
    candidate = Path(sys.executable).with_name("pybabel")
    if candidate.exists():
        return [str(candidate)]
    return [sys.executable, "-c", "import sys; from babel.messages.frontend import main; sys.exit(main())"]


def extract(pot: Path) -> None:
    """Extract every translatable string into a .pot file (no locations: stable diffs)."""
    keywords = [arg for word in KEYWORDS for arg in ("-k", word)]
    subprocess.run(
        [*pybabel(), "extract", "-F", str(BABEL_CFG), *keywords, "--no-location", "--sort-output",
         "--project", "Canh Gac", "--version", "0.1", "--copyright-holder", "Canh Gac", "--msgid-bugs-address", "",
         "-o", str(pot), "."],
        cwd=ROOT, check=True, capture_output=True, text=True,
    )


def po_path(lang: str) -> Path:
    """Return the .po file of a language."""
    return TRANSLATIONS / lang / "LC_MESSAGES" / "messages.po"


def update() -> None:
    """Extract and merge new strings into each language's catalog."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        pot = Path(tmp) / "messages.pot"
        extract(pot)
        for lang in TARGET_LANGUAGES:
            subprocess.run(
                [*pybabel(), "update", "--init-missing", "-i", str(pot), "-d", str(TRANSLATIONS),
                 "-l", lang, "--ignore-obsolete", "--no-fuzzy-matching", "--no-wrap",
                 "--ignore-pot-creation-date"],
                cwd=ROOT, check=True, capture_output=True, text=True,
            )


def compile_catalogs() -> None:
    """Compile every .po into its .mo."""
    subprocess.run([*pybabel(), "compile", "-d", str(TRANSLATIONS), "--statistics"],
                   cwd=ROOT, check=True)


def untranslated(lang: str) -> list[str]:
    """Return the msgids of a catalog that have no (or only a fuzzy) translation."""
    with po_path(lang).open("rb") as fh:
        catalog = read_po(fh)
    return [str(m.id) for m in catalog if m.id and (not m.string or m.fuzzy)]


def main(argv: list[str]) -> int:
    """Run one of: update, compile, check."""
    command = argv[0] if argv else "check"
    if command == "update":
        update()
    elif command == "compile":
        compile_catalogs()
    elif command == "check":
        missing = {lang: untranslated(lang) for lang in TARGET_LANGUAGES}
        for lang, ids in missing.items():
            for msgid in ids:
                print(f"{lang}: untranslated: {msgid}")
        return 1 if any(missing.values()) else 0
    else:
        print(__doc__)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
