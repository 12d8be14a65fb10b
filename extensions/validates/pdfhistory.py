"""An index of a PDF's cross-reference history, so that one lookup is not a walk over all revisions.

pyHanko answers "in which revision did this object last change?" (``XRefCache.get_last_change``)
by walking the cross-reference sections from the newest one back, for every object every
historical view reads. The difference analysis reads a handful of objects per revision, so
a PDF with N incremental updates costs N² section lookups: 500 / 1,500 / 4,000 updates took
0.7 / 5.8 / 70 s. :func:`index_history` computes the answer for every object once (one pass
over the sections) and answers each lookup from a dict, with the same result and the same
``KeyError`` for an object no section resolves: every key a section can resolve comes from
one of its entries, and each candidate is confirmed with the section's own ``try_resolve``.

It replaces the method on this reader's ``XRefCache`` instance only. If pyHanko's internals
are not what this expects (pyproject pins pyHanko 0.38.x), the reader keeps its own lookup.

:class:`ReviewOnce` is the difference analysis done once per pair of revisions: pyHanko's
policy compares the signed revision with each later one, and the same pairs come back for
the signature itself, for each document time-stamp (validated on its own) and in the
long-term process's proof-of-existence index: a PDF with 25 signatures and time-stamps
analysed each pair three times (two thirds of its 30 s).
"""

from __future__ import annotations

import logging
from typing import Any

from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.reader import HistoricalResolver, PdfFileReader
from pyhanko.sign.diff_analysis import DEFAULT_DIFF_POLICY, DiffResult, StandardDiffPolicy, SuspiciousModification

log = logging.getLogger("extensions.validates")


def _candidates(data: Any) -> set[tuple[int, int]]:
    """Every (id, generation) a cross-reference section could resolve, hybrid section included."""
    keys = {(idnum, 0) for idnum in data.xrefs_in_objstm}
    keys |= {(idnum, gen) for idnum, (gen, _offset) in data.standard_xrefs.items()}
    keys |= {(idnum, next_gen - 1) for idnum, next_gen in data.freed.items()}
    if data.hybrid is not None:
        keys |= _candidates(data.hybrid.xref_data)
    return keys


def _last_changes(reader: PdfFileReader) -> dict[tuple[int, int], int]:
    xrefs = reader.xrefs
    last: dict[tuple[int, int], int] = {}
    for revision in range(xrefs.total_revisions):
        data = xrefs.get_xref_data(revision)
        for idnum, gen in _candidates(data):
            try:
                data.try_resolve(generic.Reference(idnum, gen))
            except KeyError:
                continue
            last[(idnum, gen)] = revision
    return last


def index_history(reader: PdfFileReader) -> None:
    """Make ``reader.xrefs.get_last_change`` a dict lookup (same answers, same ``KeyError``)."""
    try:
        last = _last_changes(reader)
    except (AttributeError, TypeError, ValueError):  # another pyHanko layout: keep the library's walk
        log.warning("pyHanko's cross-reference layout changed: PDF history lookups stay linear")
        return

    def get_last_change(ref: generic.Reference | generic.IndirectObject) -> int:
        return last[(ref.idnum, ref.generation)]

    reader.xrefs.get_last_change = get_last_change  # type: ignore[method-assign]


class ReviewOnce(StandardDiffPolicy):
    """pyHanko's default difference analysis, each (base revision, revision, MDP settings) judged
    once; for one document (the key has no document in it: one instance per validation request)."""

    def __init__(self) -> None:
        base = DEFAULT_DIFF_POLICY
        super().__init__(base.global_rules, base.form_rule, base.reject_object_freeing,
                         base.ignore_orphaned_objects, base.ignore_identical_objects)
        self._seen: dict[tuple[Any, ...], DiffResult | SuspiciousModification] = {}

    def apply(self, old: HistoricalResolver, new: HistoricalResolver, field_mdp_spec: Any = None,
              doc_mdp: Any = None) -> DiffResult:
        key = (old.revision, new.revision, repr(field_mdp_spec), doc_mdp)
        if key not in self._seen:
            try:
                self._seen[key] = super().apply(old, new, field_mdp_spec, doc_mdp)
            except SuspiciousModification as exc:
                self._seen[key] = exc
        found = self._seen[key]
        if isinstance(found, SuspiciousModification):
            raise found
        return found
