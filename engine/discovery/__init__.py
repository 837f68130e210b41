"""Trait discovery: from human-vs-AI conversations to proposals for a questionnaire.

Two ways to propose traits, as in the HAL paper's first step:

- ``contrast``: measurable surface features ranked by how well each alone tells
  the human side from the AI side (``candidates.py``, ``contrast.py``);
- ``explain``: a judge model picks the human of a game and says why; its
  statements are embedded and clustered (``explain.py``, ``clusters.py``).

Proposals the researcher accepts become traits of a new questionnaire version
that remembers where they came from (``accept.py``); traits that came from a
feature can be rated by the ``measured`` judge (``measured.py``).
No Qt here; model libraries are imported only inside the functions that need them.
"""
