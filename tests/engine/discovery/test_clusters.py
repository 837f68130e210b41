"""Clustering statements with the bundled MiniLM encoder (offline)."""

from __future__ import annotations

import pytest

from engine.discovery.clusters import cluster_statements

THEMES = {
    "case": ["Writes everything in lower case.", "Never uses capital letters.", "Types all in small letters.",
             "Does not capitalise sentences.", "Skips capital letters at the start.", "Writes in lowercase only.",
             "Lower case typing throughout.", "No capitals, even for names."],
    "slang": ["Uses slang like lol and tbh.", "Uses internet abbreviations such as idk.", "Writes lol and lmao a lot.",
              "Uses chat shorthand like u and ur.", "Relies on texting slang.", "Drops in abbreviations like tbh.",
              "Uses casual slang words.", "Writes idk instead of I don't know."],
    "pets": ["Talks about its dog.", "Mentions a pet cat at home.", "Says the dog is asleep.",
             "Brings up walking the dog.", "Talks about feeding the cat.", "Mentions a puppy.",
             "Shares a story about its pet.", "Says the cat knocked something over."],
}


def _statements():
    out = []
    for k, (theme, texts) in enumerate(THEMES.items()):
        for j, text in enumerate(texts):
            out.append({"text": text, "game": f"{theme}-{j % 4}", "correct": j % 4 != 0, "theme": theme})
    return out


@pytest.mark.slow
def test_three_themes_come_back_as_three_clusters():
    statements = _statements()
    result = cluster_statements(statements, min_cluster_size=4, seed=0)
    assert result["quality"]["n_clusters"] == 3
    found = set()
    for c in result["clusters"]:
        members = [s["theme"] for s in statements if s["cluster"] == c["id"]]
        theme = max(set(members), key=members.count)
        assert c["size"] == len(members) >= 6 and members.count(theme) / len(members) >= 0.75  # mostly one theme
        assert c["representatives"][0] in THEMES[theme]  # the statement nearest the centre is on theme
        assert c["n_games"] >= 4 and c["correct_share"] == pytest.approx(0.75, abs=0.15)
        found.add(theme)
    assert found == set(THEMES)
    assert result["quality"]["silhouette"] > 0.1
    assert all(isinstance(s["x"], float) and isinstance(s["y"], float) for s in statements)


def test_too_few_statements_is_a_message_not_a_cluster():
    statements = _statements()[:5]
    result = cluster_statements(statements)
    assert result["clusters"] == [] and "too few statements to cluster: 5" in result["message"]
    assert all(s["cluster"] is None for s in statements)
