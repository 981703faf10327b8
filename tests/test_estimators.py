"""Every estimator streamproc ships passes scikit-learn's shared contract suite (check_estimator)."""

from sklearn.utils.estimator_checks import parametrize_with_checks

from streamproc.learn.classifier import CentroidClassifier
from streamproc.learn.streaming_pca import StreamingPCA

DISTANCES = "decision_function returns the distance to every centroid, as streamproc's contract says: "
EXPECTED_FAILURES = {
    "check_decision_proba_consistency": DISTANCES + "smaller means more likely, so its ranks run opposite to "
                                                    "predict_proba's",
    "check_classifiers_train": DISTANCES + "two columns for two classes, where scikit-learn expects one score",
    "check_classifiers_classes": DISTANCES + "two columns for two classes, where scikit-learn expects one score",
}


ESTIMATORS = [StreamingPCA(), StreamingPCA(solver="incremental"), StreamingPCA(n_components=2),
              CentroidClassifier(), CentroidClassifier(metric="cosine")]


@parametrize_with_checks(ESTIMATORS, expected_failed_checks=lambda estimator: (
    EXPECTED_FAILURES if isinstance(estimator, CentroidClassifier) else {}))
def test_sklearn_contract(estimator, check):
    check(estimator)
