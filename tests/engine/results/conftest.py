"""Fixtures for the results tests: an empty store in a temp folder, and a vote maker."""

import pytest

from engine.results.data import Vote
from engine.store import Store


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "studio.sqlite3")
    yield s
    s.close()


_counter = iter(range(1, 1_000_000))


def vote(left, right, verdict, blind=True, **kw):
    """A hand-made vote (no store needed)."""
    n = next(_counter)
    return Vote(rating_id=kw.pop("rating_id", f"r{n}"), verdict=verdict, left_model=left,
                right_model=right, blind=blind, created_at=kw.pop("created_at", f"2025-01-01T00:00:{n % 60:02d}"),
                **kw)


@pytest.fixture
def V():
    """The vote maker, as a fixture (conftest modules are not importable by name)."""
    return vote
