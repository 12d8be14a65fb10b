"""How times appear in answers and requests: GeneralizedTime text, and ``validationTime`` as clients send it."""

from __future__ import annotations

from datetime import UTC, datetime


def gtime(moment: datetime | None) -> str | None:
    """GeneralizedTime text (``YYYYMMDDHHMMSSZ``), the form validFrom/validTo use."""
    if moment is None:
        return None
    return moment.astimezone(UTC).strftime("%Y%m%d%H%M%SZ")


def parse_time(value: str) -> datetime | None:
    """``YYYYMMDDHHMMSSZ`` or ISO 8601 with an offset; naive times are refused (ambiguous)."""
    try:
        if len(value) == 15 and value.endswith("Z") and value[:-1].isdigit():
            return datetime.strptime(value, "%Y%m%d%H%M%SZ").replace(tzinfo=UTC)
        moment = datetime.fromisoformat(value.replace("Z", "+00:00") if value.endswith("Z") else value)
    except ValueError:
        return None
    return moment.astimezone(UTC) if moment.tzinfo is not None else None
