"""PII detection for files: counts of citizens' identifiers by kind, never the values.

- ``detectors``: pure text functions (``detect``, ``detect_detailed``, ``score_cccd``), with
  context words and structural scores.
- ``tables``: columns of spreadsheets, CSV and document tables judged by header or values.
- ``documents``: text of legacy Word (.doc) and OpenDocument text (.odt) files.
- ``scanners``: ``scan_file`` for text, CSV, spreadsheets (xlsx, xls, ods), Word (docx, doc),
  odt, PDF and ZIP, within time and size limits, never raising on a bad file (an unreadable
  file is ``ScanResult.is_unreadable``, never clean).
- ``fingerprint``: ``content_fingerprint`` (same content after a "Save As") and ``file_sha256``.

Matched values are never returned, stored or logged: only counts, kinds and confidences.
"""

from canhgac_common.pii.detectors import KINDS, PiiReport, detect, detect_detailed, score_cccd
from canhgac_common.pii.fingerprint import content_fingerprint, file_sha256
from canhgac_common.pii.scanners import ScanResult, scan_file

__all__ = [
    "KINDS",
    "PiiReport",
    "ScanResult",
    "content_fingerprint",
    "detect",
    "detect_detailed",
    "file_sha256",
    "scan_file",
    "score_cccd",
]
