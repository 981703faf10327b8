"""The logistic classifier of ``fit --classifier logistic``, trained on the partition the method found.

The seed's recipe: multinomial logistic regression on each row's vector of distances to the
centroids. It is trained on the labels of the method's own partition of the sample (k-means: the
nearest centroid; agglomerative: the merge-tree group of the nearest micro-cluster; HDBSCAN: its
clusters, noise left out), so it can learn boundaries that nearest-centroid cannot draw. Its
probabilities are calibrated by temperature scaling (Guo et al. 2017): the sample is split into
train (60 %), calibration (20 %) and held-out (20 %) rows; one temperature T minimising the
calibration rows' log loss divides the logits, folded into the coefficients (so ``Model.label``
and ``predict_proba`` use it unchanged). The held-out rows then measure the accuracy of the
logistic and of the nearest-centroid rule against the partition, and the mean confidence.
"""

from __future__ import annotations

import numpy as np

from .model import logistic_proba

TRAIN, CALIBRATE = 0.6, 0.2


def fit_calibrated(distances: np.ndarray, labels: np.ndarray, k: int, *, seed: int = 0):
    """(coef k x k, intercept k, report) from sample rows' distance vectors and partition labels
    (-1 = no label, left out); None when fewer than 2 clusters have rows to learn from."""
    from scipy.optimize import minimize_scalar
    from sklearn.linear_model import LogisticRegression

    keep = np.flatnonzero(labels >= 0)
    order = np.random.RandomState(seed).permutation(keep)
    a, b = int(TRAIN * len(order)), int((TRAIN + CALIBRATE) * len(order))
    train, calibrate, held_out = order[:a], order[a:b], order[b:]
    if len(np.unique(labels[train])) < 2 or len(calibrate) == 0 or len(held_out) == 0:
        return None
    unit = float(distances[train].std()) or 1.0  # distances in units of their spread: lbfgs converges
    clf = LogisticRegression(max_iter=1000, random_state=seed).fit(distances[train] / unit, labels[train])
    coef, intercept = _full_rank(clf, k)
    coef = coef / unit

    def log_loss(log_t):
        p = logistic_proba(distances[calibrate], coef / np.exp(log_t), intercept / np.exp(log_t))
        return -np.log(np.maximum(p[np.arange(len(calibrate)), labels[calibrate]], 1e-300)).mean()

    temperature = float(np.exp(minimize_scalar(log_loss, bounds=(-5, 5), method="bounded").x))
    coef, intercept = coef / temperature, intercept / temperature
    p = logistic_proba(distances[held_out], coef, intercept)
    truth = labels[held_out]
    report = {"trained_on": "partition", "train_rows": len(train), "calibration_rows": len(calibrate),
              "held_out_rows": len(held_out), "temperature": round(temperature, 6),
              "accuracy": float((p.argmax(axis=1) == truth).mean()),
              "nearest_centroid_accuracy": float((distances[held_out].argmin(axis=1) == truth).mean()),
              "mean_confidence": float(p.max(axis=1).mean())}
    return coef, intercept, report


def _full_rank(clf, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Coefficients for all k clusters (a cluster absent from training gets -inf-like intercept);
    scikit-learn's binary case (one row) becomes two opposite rows."""
    coef = np.zeros((k, clf.coef_.shape[1]))
    intercept = np.full(k, -1e9)
    if len(clf.classes_) == 2:
        coef[clf.classes_] = np.vstack([-clf.coef_, clf.coef_]) / 2
        intercept[clf.classes_] = np.array([-clf.intercept_[0], clf.intercept_[0]]) / 2
    else:
        coef[clf.classes_] = clf.coef_
        intercept[clf.classes_] = clf.intercept_
    return coef, intercept
