"""The logistic classifier of ``fit --classifier logistic``, trained on the partition the method found.

The seed's recipe: multinomial logistic regression on each row's vector of distances to the
centroids. It is trained on the labels of the method's own partition of the sample (k-means: the
nearest centroid; agglomerative: the merge-tree group of the nearest micro-cluster; HDBSCAN: its
clusters, noise left out), so it can learn boundaries that nearest-centroid cannot draw.

The sample is split into train (60 %), calibration (20 %) and held-out (20 %) rows. Two candidates,
both of the same form (softmax of ``distances @ coef.T + intercept``, so ``Model.label`` and
``predict_proba`` use either unchanged):

* the regression fitted on the train rows;
* nearest-centroid itself: ``coef = -I`` (the largest logit is the smallest distance).

Each is calibrated by temperature scaling (Guo et al. 2017: one T minimising the calibration rows'
log loss divides the logits, folded into coef and intercept). The regression is kept only if it
labels the calibration rows more accurately than nearest-centroid: where it does not (k-means, whose
partition *is* nearest-centroid; few rows per cluster) the model keeps nearest-centroid labels with
calibrated confidences. The held-out rows then measure both against the partition.
"""

from __future__ import annotations

import numpy as np

from .model import logistic_proba

TRAIN, CALIBRATE = 0.6, 0.2


def fit_calibrated(distances: np.ndarray, labels: np.ndarray, k: int, *, seed: int = 0):
    """(coef k x k, intercept k, report) from sample rows' distance vectors and partition labels
    (-1 = no label, left out); None when there are too few labelled rows to split."""
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
    candidates = {"logistic": (coef / unit, intercept), "nearest-centroid": (-np.eye(k) / unit, np.zeros(k))}
    calibrated = {name: _calibrate(*pair, distances[calibrate], labels[calibrate]) for name, pair in candidates.items()}
    accuracy = {name: (distances[calibrate] @ c.T + i).argmax(axis=1) == labels[calibrate]
                for name, (c, i, _, _) in calibrated.items()}
    used = "logistic" if accuracy["logistic"].mean() > accuracy["nearest-centroid"].mean() else "nearest-centroid"
    held = {name: logistic_proba(distances[held_out], c, i) for name, (c, i, _, _) in calibrated.items()}
    truth = labels[held_out]
    p = held[used]
    report = {"used": used, "train_rows": len(train), "calibration_rows": len(calibrate),
              "held_out_rows": len(held_out),
              "temperature": round(calibrated[used][3], 6),
              "accuracy": float((p.argmax(axis=1) == truth).mean()),
              "logistic_accuracy": float((held["logistic"].argmax(axis=1) == truth).mean()),
              "nearest_centroid_accuracy": float((distances[held_out].argmin(axis=1) == truth).mean()),
              "mean_confidence": float(p.max(axis=1).mean())}
    return calibrated[used][0], calibrated[used][1], report


def _calibrate(coef, intercept, distances, labels):
    """(coef / T, intercept / T, log loss, T) with the temperature T minimising the log loss."""
    from scipy.optimize import minimize_scalar

    def log_loss(log_t):
        p = logistic_proba(distances, coef / np.exp(log_t), intercept / np.exp(log_t))
        return -np.log(np.maximum(p[np.arange(len(labels)), labels], 1e-300)).mean()

    best = minimize_scalar(log_loss, bounds=(-7, 7), method="bounded")
    t = float(np.exp(best.x))
    return coef / t, intercept / t, float(best.fun), t


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
