"""What the ratings say: win rates, leaderboards, the rater's reliability, and
ratings in and out of the store.

Pure Python/numpy/scipy, no Qt, so the same numbers reach the studio, the
``hal results`` command and the HTML report. Start from :func:`compute`.
"""

from engine.results.data import Filters, LeakConfig, Vote, load_votes
from engine.results.summary import compute

__all__ = ["Filters", "LeakConfig", "Vote", "compute", "load_votes"]
