"""The factor layer of one server process: its settings and its OTP delivery, made at start-up."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from rssp.config import Config
from rssp.factors.delivery import OtpDelivery, load_delivery
from rssp.factors.settings import FactorSettings, load_settings


@dataclass
class FactorService:
    settings: FactorSettings
    _delivery: OtpDelivery | None = field(default=None, repr=False)

    @classmethod
    def from_config(cls, config: Config) -> FactorService:
        return cls(load_settings(config))

    def delivery(self) -> OtpDelivery:
        """The configured delivery, made on first use (a server without ``[smtp]`` sends nothing)."""
        if self._delivery is None:
            self._delivery = load_delivery(self.settings)
        return self._delivery

    def url(self, path: str) -> str:
        return f"{self.settings.public_url}{path}"


FACTORS: web.AppKey[FactorService] = web.AppKey("factors", FactorService)
EXTRAS_KEY = "factors"


def factor_service(app: web.Application) -> FactorService:
    return app[FACTORS]


def of_services(extras: dict[str, Any], config: Config) -> FactorService:
    """The process's factor layer from ``Services.extras`` (made there on first use outside the app)."""
    found = extras.get(EXTRAS_KEY)
    if found is None:
        found = extras[EXTRAS_KEY] = FactorService.from_config(config)
    return found
