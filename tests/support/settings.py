"""Settings for one test: dataflow.settings.current() with some values changed."""

import pytest

from dataflow import settings


def use_settings(monkeypatch: pytest.MonkeyPatch, **changes: object) -> settings.Settings:
    """Make the process's settings `changes` for the rest of the test (monkeypatch undoes it)."""
    changed = settings.replaced(**changes)
    monkeypatch.setattr(settings, '_current', changed)
    return changed
