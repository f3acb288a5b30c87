"""Fixtures for the operator tests: schema validators (pure tests) and the emulated API server (slow)."""

from __future__ import annotations

from tests.k8s.conftest import alj_validator, rayjob_validator

__all__ = ["alj_validator", "rayjob_validator"]
