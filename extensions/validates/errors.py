"""Input that cannot be validated at all (not a signature format we read): a 400, not an indication."""

from __future__ import annotations


class BadDocument(ValueError):
    """The document or signature is not what it claims (not a PDF, truncated CMS, no signature).

    The message is fixed text written here, never parser output, so it is safe in an answer.
    """
