"""PII detection for files: counts of citizens' identifiers by kind, never the values.

- ``detectors``: pure text functions (``detect``, ``detect_detailed``, ``score_cccd``).
- ``scanners``: ``scan_file`` for text, CSV, Excel, Word, PDF and ZIP, within time and size
  limits, never raising on a bad file.
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
