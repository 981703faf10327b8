"""Keywords of each cluster: spaCy tokens counted per cluster, ranked by class-based TF-IDF.

Tokenisation and stop words come from ``spacy.blank(lang)`` (offline, no model download); lemmas
are used when ``spacy-lookups-data`` is installed. URLs, e-mail addresses, @mentions, numbers,
punctuation and one-letter tokens are left out. Counting streams over the texts, so memory grows
with the vocabulary, not with the number of rows.

c-TF-IDF (as BERTopic defines it): weight(t, c) = tf(t, c) * log(1 + A / f(t)), where tf is the
frequency of t in cluster c's texts, f(t) its frequency over all clusters, and A the average
number of tokens per cluster.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

import numpy as np

from ..errors import UsageError

SAMPLE_ROWS = 20_000  # texts read (evenly spaced) for a model's keywords: render, report and serve alike


def sample_step(rows: int) -> int:
    """Every ``sample_step``-th row (row index a multiple of it) is read for the keywords, so that
    the map, the report and the explorer name each cluster from the same texts."""
    return max(1, rows // SAMPLE_ROWS)


class KeywordCounter:
    """Feed ``(texts, labels)`` blocks with :meth:`update`; read :meth:`top` at the end."""

    def __init__(self, k: int, lang: str = "en"):
        self.k = k
        self.nlp = _pipeline(lang)
        self.counts = [Counter() for _ in range(k)]

    def update(self, texts: Iterable[str], labels: Iterable[int]) -> None:
        use_lemma = "lemmatizer" in self.nlp.pipe_names
        for doc, label in zip(self.nlp.pipe(texts, batch_size=1000), labels):
            self.counts[int(label)].update(_terms(doc, use_lemma))

    def top(self, n: int = 10) -> list[list[tuple[str, float]]]:
        vocabulary = sorted(set().union(*self.counts))
        if not vocabulary:
            return [[] for _ in range(self.k)]
        index = {t: i for i, t in enumerate(vocabulary)}
        tf = np.zeros((self.k, len(vocabulary)))
        for c, counter in enumerate(self.counts):
            for term, count in counter.items():
                tf[c, index[term]] = count
        return [[(vocabulary[i], float(w)) for i, w in zip(order, weights)] for order, weights in _ctfidf_top(tf, n)]


def _ctfidf_top(tf: np.ndarray, n: int):
    """For each cluster: the indices of its ``n`` heaviest terms and their weights."""
    per_class = tf.sum(axis=1, keepdims=True)
    frequency = np.maximum(tf.sum(axis=0), 1)
    average = per_class.mean()
    weights = (tf / np.maximum(per_class, 1)) * np.log(1 + average / frequency)
    for row in weights:
        order = [i for i in np.argsort(-row, kind="stable")[:n] if row[i] > 0]
        yield order, row[order]


def _terms(doc, use_lemma: bool) -> list[str]:
    out = []
    for token in doc:
        text = token.text
        if (token.is_stop or token.is_punct or token.is_space or token.like_url or token.like_email
                or token.like_num or text.startswith(("@", "#", "http", "www.")) or len(text) < 2
                or not any(ch.isalpha() for ch in text)):
            continue
        term = (token.lemma_ if use_lemma and token.lemma_ else text).lower()
        if not token.vocab[term].is_stop:
            out.append(term)
    return out


def _pipeline(lang: str):
    import spacy

    try:
        nlp = spacy.blank(lang)
    except (ImportError, KeyError, ValueError) as exc:
        raise UsageError(f"--lang {lang!r}: spaCy has no language {lang!r} ({exc})") from None
    try:
        import spacy_lookups_data  # noqa: F401

        nlp.add_pipe("lemmatizer", config={"mode": "lookup"})
        nlp.initialize()
    except (ImportError, ValueError, OSError):
        pass
    return nlp
