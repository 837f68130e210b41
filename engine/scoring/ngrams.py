"""Character n-gram TF-IDF computed with numpy over a whole batch at once.

scikit-learn's vectorisers build every n-gram as a Python string, which caps
them near 2,000 replies a second on this machine; hashing code points with
array arithmetic does the same job many times faster. Buckets seen in fewer
than ``min_df`` training texts are dropped, so the fitted model stays small.
"""

from __future__ import annotations

import numpy as np
from scipy.sparse import coo_matrix, csr_matrix

_MULT = np.uint64(1000003)
_MIX = np.uint64(0x9E3779B97F4A7C15)


class HashedCharTfidf:
    def __init__(self, ngram_range: tuple[int, int] = (1, 4), bits: int = 20, min_df: int = 2):
        self.ngram_range = ngram_range
        self.bits = bits
        self.min_df = min_df
        self.column_of: np.ndarray | None = None  # bucket -> column, -1 when dropped
        self.idf: np.ndarray | None = None

    def _buckets(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(row, bucket) for every n-gram occurrence; n-grams never span two texts."""
        if not texts:
            return np.zeros(0, np.int64), np.zeros(0, np.uint64)
        joined = "\x00".join(texts) + "\x00"
        codes = np.frombuffer(joined.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
        is_sep = codes == 0
        row_of = np.cumsum(is_sep) - is_sep  # the text each position belongs to
        sep_before = np.concatenate([[0], np.cumsum(is_sep)])
        rows, buckets = [], []
        shift = np.uint64(64 - self.bits)
        for n in range(self.ngram_range[0], self.ngram_range[1] + 1):
            m = len(codes) - n + 1
            if m <= 0:
                continue
            h = np.full(m, np.uint64(n))
            for k in range(n):
                h = h * _MULT + codes[k:k + m]
            ok = sep_before[n:n + m] - sep_before[:m] == 0  # no separator inside the window
            rows.append(row_of[:m][ok])
            buckets.append((h[ok] * _MIX) >> shift)
        return np.concatenate(rows), np.concatenate(buckets)

    def _counts(self, texts: list[str], columns: np.ndarray | None, width: int) -> csr_matrix:
        rows, buckets = self._buckets(texts)
        cols = buckets.astype(np.int64)
        if columns is not None:
            cols = columns[cols]
            keep = cols >= 0
            rows, cols = rows[keep], cols[keep]
        data = np.ones(len(rows), dtype=np.float32)
        return coo_matrix((data, (rows, cols)), shape=(len(texts), width)).tocsr()  # sums repeats

    def fit(self, texts: list[str]) -> "HashedCharTfidf":
        counts = self._counts(texts, None, 1 << self.bits)
        df = np.bincount(counts.indices, minlength=counts.shape[1])
        kept = np.flatnonzero(df >= self.min_df)
        self.column_of = np.full(1 << self.bits, -1, dtype=np.int32)
        self.column_of[kept] = np.arange(len(kept), dtype=np.int32)
        n = len(texts)
        self.idf = (np.log((1 + n) / (1 + df[kept])) + 1).astype(np.float32)
        return self

    def to_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """(kept buckets in column order, their idf): all a fitted vectoriser holds."""
        if self.column_of is None:
            raise RuntimeError("fit before saving")
        return np.flatnonzero(self.column_of >= 0).astype(np.int64), self.idf.astype(np.float32)

    @classmethod
    def from_arrays(cls, ngram_range: tuple[int, int], bits: int, min_df: int, buckets: np.ndarray,
                    idf: np.ndarray) -> "HashedCharTfidf":
        """A fitted vectoriser rebuilt from ``to_arrays``; refuses values that do not fit together."""
        if not (1 <= ngram_range[0] <= ngram_range[1] <= 8) or not (8 <= bits <= 24):
            raise ValueError(f"n-gram range {ngram_range} or {bits} hash bits out of bounds")
        buckets = np.asarray(buckets, dtype=np.int64)
        if len(buckets) != len(idf) or (len(buckets) and (buckets.min() < 0 or buckets.max() >= 1 << bits
                                                          or (np.diff(buckets) <= 0).any())):
            raise ValueError("character n-gram buckets are out of range or out of order")
        out = cls(ngram_range, bits, min_df)
        out.column_of = np.full(1 << bits, -1, dtype=np.int32)
        out.column_of[buckets] = np.arange(len(buckets), dtype=np.int32)
        out.idf = np.asarray(idf, dtype=np.float32)
        return out

    def transform(self, texts: list[str]) -> csr_matrix:
        if self.column_of is None:
            raise RuntimeError("fit before transform")
        X = self._counts(texts, self.column_of, len(self.idf))
        X.data = (1 + np.log(X.data)) * self.idf[X.indices]  # sublinear tf times idf
        norms = np.sqrt(np.asarray(X.multiply(X).sum(axis=1)).ravel())
        norms[norms == 0] = 1
        X.data /= np.repeat(norms, np.diff(X.indptr)).astype(np.float32)
        return X
