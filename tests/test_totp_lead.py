"""TEST-ONLY TOTP steps ahead of the clock (rssp.sam.totp_lead): a development instance only.

The suite's servers accept TOTP steps past a credential's last used one (conftest), so that no
test waits for the clock; a production instance must never do so, whatever its environment.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from rssp.config import Config, HsmConfig
from rssp.sam import totp_lead


def _config(raw: dict[str, Any]) -> Config:
    hsm = HsmConfig("lib", "token", "pin", None)
    return Config(directory=Path("/nowhere"), database_url="sqlite://", hsm=hsm, raw=raw)


DEVELOPMENT = {"devpki": {"port": 8081}}  # what 'rssp init' writes; 'rssp init --production' writes none
PRODUCTION: dict[str, Any] = {}


@pytest.fixture
def lead(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.setattr(totp_lead, "_steps_ahead", totp_lead.steps_ahead())  # restored afterwards
    return monkeypatch


def test_a_production_instance_ignores_the_variable_and_says_so(lead, caplog):
    lead.setenv(totp_lead.ENV, "32")
    with caplog.at_level(logging.ERROR, "rssp.sam"):
        totp_lead.configure(_config(PRODUCTION))
    assert totp_lead.steps_ahead() == 0
    assert f"{totp_lead.ENV} is set but ignored" in caplog.text


def test_a_development_instance_honours_it_with_a_warning(lead, caplog):
    lead.setenv(totp_lead.ENV, "32")
    with caplog.at_level(logging.WARNING, "rssp.sam"):
        totp_lead.configure(_config(DEVELOPMENT))
    assert totp_lead.steps_ahead() == 32
    assert "TEST-ONLY" in caplog.text


@pytest.mark.parametrize("value", ["", "0", "-1", "x", "1001", "3.5"])
def test_only_a_number_of_steps_from_1_to_1000_is_honoured(lead, value):
    lead.setenv(totp_lead.ENV, value)
    totp_lead.configure(_config(DEVELOPMENT))
    assert totp_lead.steps_ahead() == 0


def test_unset_means_production_behaviour(lead):
    lead.delenv(totp_lead.ENV, raising=False)
    totp_lead.configure(_config(DEVELOPMENT))
    assert totp_lead.steps_ahead() == 0
