"""Baselines the neural networks must beat, each the standard non-neural method for its problem.

- `KneserNey`: an interpolated Kneser-Ney n-gram language model (Kneser & Ney 1995; Chen & Goodman 1998),
  with one discount per order (modified Kneser-Ney uses three), on the same tokens as the neural model.
- `naive_forecast`, `seasonal_naive_forecast`: the forecasts MASE is defined against (Hyndman & Koehler 2006).
- `pixel_logistic_regression`: a multinomial logistic regression on an image's pixels, the linear model an
  image classifier has to beat (about 84% on Fashion-MNIST against a network's 90-95%).
- `local_maxima_crowns`: tree crowns as local maxima of a smoothed greenness index, each given a box of the
  typical crown's size: the classic way of finding tree tops before learned detectors (Wulder et al. 2000).
- `majority_class`, `majority_accuracy`: the classifier that always answers the commonest training class.
- `translation_memory`: the translation of the most similar training sentence, a translation memory's best
  fuzzy match (what computer-aided translation tools offer a translator), for machine translation.
- `cached_baselines`: any of them computed once per set of inputs and kept under $PILLARS_HOME/baselines.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
from typing import Callable

import numpy as np


class KneserNey:
    """Interpolated Kneser-Ney of order N over integer tokens, counted with numpy.

    For the highest order, with c(.) counts, D a discount and N1+(h .) the number of distinct words seen
    after history h:
        P(w | h) = max(c(h w) - D, 0) / c(h) + D N1+(h .) / c(h) * P(w | h')
    where h' drops the oldest word of h. Lower orders replace counts by continuation counts N1+(. h' w),
    the number of distinct words that precede h' w, so a word seen in many contexts gets more mass than
    one frequent only after one history ("Francisco"). The unigram level is interpolated with the
    uniform distribution, so an unseen token still has a probability. D = n1 / (n1 + 2 n2) per order,
    from the numbers of n-grams seen once and twice (Ney et al. 1994).
    """

    def __init__(self, order: int, vocab_size: int):
        if order < 1:
            raise ValueError("order must be at least 1")
        if vocab_size ** order >= 2 ** 62:
            raise ValueError(f"order {order} over {vocab_size} tokens overflows 64-bit n-gram keys")
        self.order, self.V = order, vocab_size

    def _keys(self, tokens: np.ndarray, k: int) -> np.ndarray:
        """The key of every k-gram of `tokens`, as one int64 per position (k-1 ... end)."""
        n = len(tokens) - k + 1
        key = np.zeros(n, dtype=np.int64)
        for j in range(k):
            key = key * self.V + tokens[j:j + n]
        return key

    def fit(self, tokens: np.ndarray) -> "KneserNey":
        """Count every order once: the k-grams' counts (the top level of a model of order k) and their
        continuation counts, read off the distinct (k+1)-grams (its lower levels). A model of any order up
        to N then shares them (`log_probs(tokens, order)`), so choosing the order costs one fit."""
        tokens = np.asarray(tokens, dtype=np.int64)
        counted = [np.unique(self._keys(tokens, k), return_counts=True) for k in range(1, self.order + 1)]
        continued = [np.unique(longer % self.V ** k, return_counts=True)   # distinct left neighbours
                     for k, (longer, _) in enumerate(counted[1:], start=1)]
        self.raw = [self._level(*c) for c in counted]
        self.continuation = [self._level(*c) for c in continued]
        return self

    def _level(self, grams: np.ndarray, counts: np.ndarray) -> tuple:
        """(n-gram keys, their counts, history keys, history totals, history types, D) of one order."""
        n1, n2 = np.sum(counts == 1), np.sum(counts == 2)
        D = n1 / (n1 + 2 * n2) if n1 + n2 else 0.5
        hist = grams // self.V
        hkeys, hstart = np.unique(hist, return_index=True)
        totals = np.add.reduceat(counts, hstart)
        types = np.diff(np.append(hstart, len(hist)))
        return grams, counts, hkeys, totals, types, D

    @staticmethod
    def _lookup(keys: np.ndarray, table: np.ndarray, values: np.ndarray) -> np.ndarray:
        pos = np.clip(np.searchsorted(table, keys), 0, len(table) - 1)
        return np.where(table[pos] == keys, values[pos], 0)

    def log_probs(self, tokens: np.ndarray, order: int | None = None) -> np.ndarray:
        """Natural-log probability of tokens[i] given up to order-1 tokens before it, for i >= 1 (the first
        token has no history and is not scored, as in the neural model's targets), under the model of
        `order` (default: the order fitted; a lower one shares the counts)."""
        order = order or self.order
        if not 1 <= order <= self.order:
            raise ValueError(f"order {order} is not between 1 and the fitted order {self.order}")
        tokens = np.asarray(tokens, dtype=np.int64)
        padded = np.concatenate([np.zeros(order - 1, dtype=np.int64), tokens])
        n = len(tokens) - 1
        p = np.full(n, 1.0 / self.V)
        levels = self.continuation[:order - 1] + [self.raw[order - 1]]
        for k, (grams, counts, hkeys, totals, types, D) in enumerate(levels, start=1):
            keys = self._keys(padded, k)[-n:]
            hist = keys // self.V
            total = self._lookup(hist, hkeys, totals).astype(np.float64)
            if k > 1:   # a position whose history runs off the start keeps the lower-order estimate
                total[np.arange(n) < k - 2] = 0
            c = self._lookup(keys, grams, counts).astype(np.float64)
            t = self._lookup(hist, hkeys, types).astype(np.float64)
            seen = total > 0
            safe = np.where(seen, total, 1.0)
            p = np.where(seen, (np.maximum(c - D, 0) + D * t * p) / safe, p)
        return np.log(p)


def naive_forecast(history: np.ndarray, horizon: int) -> np.ndarray:
    """Every future value equals the last observed one. history (..., T) -> (..., horizon)."""
    return np.repeat(history[..., -1:], horizon, axis=-1)


def seasonal_naive_forecast(history: np.ndarray, horizon: int, season: int) -> np.ndarray:
    """Each future value equals the value one season earlier (for hourly weather: the same hour yesterday)."""
    last = history[..., -season:]
    reps = math.ceil(horizon / season)
    return np.concatenate([last] * reps, axis=-1)[..., :horizon]


def tfidf_logistic_regression(train_texts: list[str], train_labels, test_texts: list[str]) -> np.ndarray:
    """Predicted labels of a TF-IDF (word unigrams and bigrams) + logistic-regression classifier, the
    standard linear baseline for text classification, with scikit-learn."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
    clf = LogisticRegression(C=4.0, max_iter=2000)
    clf.fit(vectorizer.fit_transform(train_texts), np.asarray(train_labels))
    return clf.predict(vectorizer.transform(test_texts))


def majority_class(train_labels: np.ndarray) -> int:
    """The commonest class among the training labels: a classifier that always answers it learns nothing."""
    return int(np.bincount(np.asarray(train_labels)).argmax())


def majority_accuracy(train_labels: np.ndarray, test_labels: np.ndarray) -> float:
    """The test accuracy of always answering the training labels' commonest class (`majority_class`)."""
    return float(np.mean(np.asarray(test_labels) == majority_class(train_labels)))


def pixel_logistic_regression(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray,
                              iterations: int) -> np.ndarray:
    """Predicted labels of a multinomial logistic regression on the flattened (normalised) pixels, fitted by
    scikit-learn's L-BFGS for at most `iterations` steps (on Fashion-MNIST it has not quite converged there:
    the baseline is kept cheap, about 25 s on 2 CPU cores for 54,000 images)."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = LogisticRegression(max_iter=iterations).fit(train_x.reshape(len(train_x), -1), train_y)
    return clf.predict(test_x.reshape(len(test_x), -1))


# scripts written without spaces between words: hiragana and katakana, CJK ideographs, Thai and Lao, Myanmar, Khmer
UNSPACED = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff]")


def unspaced(texts: list[str], sample: int = 2000) -> bool:
    """Whether most letters of the first `sample` texts belong to scripts written without spaces between words
    (Chinese, Japanese, Thai, Lao, Myanmar, Khmer), where a run of letters is a clause, not a word."""
    joined = "".join(texts[:sample])
    return len(UNSPACED.findall(joined)) > 0.5 * len(re.findall(r"\w", joined))


def translation_memory(train_sources: list[str], train_targets: list[str], sources: list[str],
                       chunk: int | None = None) -> list[str]:
    """For each source sentence, the target of the training pair whose source is the most similar: cosine
    similarity of TF-IDF vectors of word unigrams and bigrams (sublinear term frequencies, one-letter words
    kept), scikit-learn's. A source that shares no word with any training source gets "" (the memory has no
    match). Chosen on the Bibles' validation books, where it reads BLEU 7.5 (French) and 7.7 (Spanish) and
    word trigrams, raw term frequencies or character 2-4-grams scored within 0.3 of it. Words are runs of
    letters and digits; for sources in scripts written without spaces (`unspaced`: Chinese, Japanese, Thai),
    where such a run is a whole clause, the memory compares character 1-3-grams instead (CJK retrieval's
    usual unigrams and bigrams, and Thai's short syllables; not chosen on data, as no such pair is at hand)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    if unspaced(train_sources):
        vectorizer = TfidfVectorizer(analyzer="char", ngram_range=(1, 3), sublinear_tf=True)
    else:
        vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, token_pattern=r"(?u)\b\w+\b")
    memory = vectorizer.fit_transform(train_sources).T.tocsr()
    chunk = chunk or max(1, min(512, 2 ** 24 // len(train_sources)))   # at most 16M similarities at a time
    out = []
    for i in range(0, len(sources), chunk):   # (chunk, training pairs) similarities at a time
        similarity = (vectorizer.transform(sources[i:i + chunk]) @ memory).tocsr()
        best = np.asarray(similarity.argmax(1)).ravel()
        found = similarity.max(1).toarray().ravel() > 0
        out += [train_targets[b] if f else "" for b, f in zip(best, found)]
    return out


def vader_predictions(texts: list[str], default: int) -> np.ndarray:
    """VADER's own call (Hutto & Gilbert 2014: its lexicon and rules, as the vaderSentiment package computes
    them): 1 for a positive compound score, 0 for a negative one, `default` where it scores 0 (no cue)."""
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer
    analyzer = SentimentIntensityAnalyzer()
    scores = np.array([analyzer.polarity_scores(t)["compound"] for t in texts])
    return np.where(scores > 0, 1, np.where(scores < 0, 0, default))


def local_maxima_crowns(image: np.ndarray, side: float, sigma: float, spacing: int, index: str = "exg",
                        limit: int = 300) -> np.ndarray:
    """Tree crowns found by local-maximum filtering (Wulder et al. 2000): a greenness index of every pixel,
    smoothed by a Gaussian of `sigma` pixels; every pixel that is the largest within `spacing` pixels is a tree
    top, boxed by a `side` x `side` square centred on it and scored by the smoothed index. `index`: "exg", the
    excess green 2G - R - B (Woebbecke et al. 1995), or "dark", minus the brightness (conifers above sunlit
    grass). Returns the `limit` best as (K, 6) rows x0, y0, x1, y1, score, class 0."""
    from scipy.ndimage import gaussian_filter, maximum_filter
    rgb = image.astype(np.float32)
    value = 2 * rgb[..., 1] - rgb[..., 0] - rgb[..., 2] if index == "exg" else -rgb.mean(-1)
    smooth = gaussian_filter(value, sigma)
    ys, xs = np.nonzero(smooth == maximum_filter(smooth, size=2 * spacing + 1))
    score = smooth[ys, xs]
    best = np.argsort(-score)[:limit]
    ys, xs, score = ys[best], xs[best], score[best]
    h, w = smooth.shape
    boxes = np.stack([(xs - side / 2).clip(0, w), (ys - side / 2).clip(0, h), (xs + side / 2).clip(0, w),
                      (ys + side / 2).clip(0, h)], 1)
    scores = (score - score.min() + 1e-3) / (np.ptp(score) + 1e-3) if len(score) else score   # in (0, 1]
    return np.concatenate([boxes, scores[:, None], np.zeros((len(xs), 1))], 1).astype(np.float32)


def cached_baselines(name: str, compute: Callable[[], dict], *inputs) -> dict:
    """Baselines that depend only on their inputs (token streams and n-gram orders, a split's sequences and
    the method's settings) are computed once, by `compute`, and kept under $PILLARS_HOME/baselines as
    NAME-HASH.json, keyed by a hash of all the inputs, so runs on the same split (an LSTM and a GPT, a
    rerun) share them. A cache that cannot be written is skipped with a note."""
    from pillars.config import write_text_atomic
    from pillars.data.registry import home, optional_cache
    h = hashlib.sha256()
    for x in inputs:
        h.update(x.tobytes() if isinstance(x, np.ndarray) else repr(x).encode())
    path = home() / "baselines" / f"{name}-{h.hexdigest()[:24]}.json"
    if path.exists():
        return json.loads(path.read_text())
    result = compute()
    with optional_cache(f"the {name} baselines"):
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, json.dumps(result) + "\n")
    return result
