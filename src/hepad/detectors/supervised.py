"""Supervised references: classifiers trained with signal labels.

They are not anomaly detectors (they see the signal they are asked to find) but upper bounds:
an unsupervised detector cannot beat a classifier trained on that very signal. Their score is
the predicted signal probability, so they share the detector interface (``score_samples``,
``threshold_`` on background, ``predict``). ``fit`` needs labels: ``fit(X, y=labels)`` with
0 for background and 1 for signal, or an EventSet carrying ``labels``.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import numpy as np

from .base import BaseDetector, Interval, Options, check_arrays, ignore_fit_options, sub_arrays
from .classical import check_packed_trees, pack_trees, walk_trees

log = logging.getLogger(__name__)

__all__ = ["GradientBoostingReference", "MLPClassifierReference"]


class GradientBoostingReference(BaseDetector):
    """Histogram gradient-boosted trees (scikit-learn), trained on labelled signal + background.

    The fitted trees are kept as flat node arrays (saved without pickle) and evaluated in
    NumPy: P(signal) = logistic(baseline + sum of leaf values), as ``predict_proba``.

    Parameters
    ----------
    max_iter : int
        Boosting iterations.
    learning_rate : float
        Shrinkage.
    max_leaf_nodes : int
        Leaves per tree.
    l2_regularization : float
        L2 penalty on leaf values.
    early_stopping : bool
        Stop when a 10% internal validation split stops improving.
    class_weight : {"balanced"} or None
        Reweight classes to equal total weight (signal samples are often small).
    preprocessing : dict, optional
        Options of :class:`hepad.preprocessing.Preprocessor` (trees do not need scaling; it is
        kept so every detector has the same input transform).
    random_state : int
        Seed of the validation split and binning subsample.
    n_jobs : int, optional
        OpenMP threads for fitting (None: all cores).
    """

    name = "gbdt"

    supervised = True
    _parameter_constraints = {
        "max_iter": [Interval(int, 1, None)],
        "learning_rate": [Interval(float, 0, None, "neither")],
        "max_leaf_nodes": [Interval(int, 2, None)],
        "l2_regularization": [Interval(float, 0, None)],
        "early_stopping": [bool],
        "class_weight": [None, Options(("balanced",))],
        "random_state": [Interval(int, 0, None)],
        "n_jobs": [None, Interval(int, 1, None)],
    }

    def __init__(
        self,
        *,
        max_iter: int = 200,
        learning_rate: float = 0.1,
        max_leaf_nodes: int = 31,
        l2_regularization: float = 0.0,
        early_stopping: bool = True,
        class_weight: str | None = None,
        preprocessing: dict | None = None,
        random_state: int = 0,
        n_jobs: int | None = None,
        threshold_rule: Any = None,
    ) -> None:
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.max_leaf_nodes = max_leaf_nodes
        self.l2_regularization = l2_regularization
        self.early_stopping = early_stopping
        self.class_weight = class_weight
        self.preprocessing = preprocessing
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.threshold_rule = threshold_rule

    def _fit_supervised(self, X: np.ndarray, y: np.ndarray, X_val: np.ndarray | None, **fit_options: Any) -> None:
        from threadpoolctl import threadpool_limits

        ignore_fit_options(self.name, fit_options)
        # OpenMP threads spin while waiting: on a shared machine, fewer threads can be faster.
        with threadpool_limits(limits=self.n_jobs, user_api="openmp"):
            self._fit_trees(X, y)

    def _fit_trees(self, X: np.ndarray, y: np.ndarray) -> None:
        from sklearn.ensemble import HistGradientBoostingClassifier

        # The preprocessor is fitted on background only, like every other detector's.
        self._make_preprocessor(X[y == 0])
        model = HistGradientBoostingClassifier(
            max_iter=self.max_iter,
            learning_rate=self.learning_rate,
            max_leaf_nodes=self.max_leaf_nodes,
            l2_regularization=self.l2_regularization,
            early_stopping=self.early_stopping,
            class_weight=self.class_weight,
            random_state=self.random_state,
        ).fit(self.preprocessor_.transform(X), y)
        trees = []
        for predictors in model._predictors:
            nodes = predictors[0].nodes  # binary: one tree per iteration
            trees.append((nodes["feature_idx"], nodes["num_threshold"], nodes["left"], nodes["right"],
                          nodes["is_leaf"].astype(bool), nodes["value"]))
        self.trees_, self.max_depth_ = pack_trees(trees)
        self.baseline_ = float(np.asarray(model._baseline_prediction).ravel()[0])
        self.n_iter_ = int(model.n_iter_)

    def _score(self, X: np.ndarray) -> np.ndarray:
        # raw = baseline + sum of leaf values (log-odds); P(signal) = logistic(raw), as predict_proba
        raw = self.baseline_ + walk_trees(self.preprocessor_.transform(X), self.trees_, self.max_depth_)
        return 0.5 * (1.0 + np.tanh(0.5 * raw))

    def _get_state(self) -> tuple[dict, dict[str, np.ndarray]]:
        meta = {"max_depth": self.max_depth_, "baseline": self.baseline_, "n_iter": self.n_iter_}
        return meta, {f"tree.{k}": v for k, v in self.trees_.items()}

    def _set_state(self, meta: dict, arrays: dict[str, np.ndarray]) -> None:
        self.trees_ = sub_arrays(arrays, "tree.")
        check_packed_trees(self.name, self.trees_, self.preprocessor_.n_features_out_)
        self.max_depth_ = int(meta["max_depth"])
        self.baseline_ = float(meta["baseline"])
        self.n_iter_ = int(meta.get("n_iter", 0))


_ACTIVATIONS = {
    "relu": lambda a: np.maximum(a, 0.0),
    "tanh": np.tanh,
    "logistic": lambda a: 1.0 / (1.0 + np.exp(-a)),
    "identity": lambda a: a,
}


def _positive_int_list(v: Any) -> bool:
    """a non-empty list of positive integers"""
    return isinstance(v, (list, tuple)) and len(v) > 0 and all(
        isinstance(h, int) and not isinstance(h, bool) and h > 0 for h in v
    )


class MLPClassifierReference(BaseDetector):
    """scikit-learn ``MLPClassifier`` on standardised features, trained with labels.

    Parameters
    ----------
    hidden_layer_sizes : list of int, optional
        Widths of the hidden layers (default [64, 32]).
    activation : {"relu", "tanh", "logistic"}
        Hidden activation.
    alpha : float
        L2 penalty.
    learning_rate_init : float
        Adam step size.
    batch_size : int
        Mini-batch size.
    max_iter : int
        Epochs.
    early_stopping : bool
        Stop on a 10% validation split.
    preprocessing : dict, optional
        Options of :class:`hepad.preprocessing.Preprocessor`.
    random_state : int
        Seed of the weights and the validation split.

    Notes
    -----
    The fitted weights are stored as arrays and the score is a NumPy forward pass over them
    (the logistic output of scikit-learn's binary ``predict_proba``).
    """

    name = "mlp-classifier"

    supervised = True
    _parameter_constraints = {
        "hidden_layer_sizes": [None, _positive_int_list],
        "activation": [Options(("relu", "tanh", "logistic"))],
        "alpha": [Interval(float, 0, None)],
        "learning_rate_init": [Interval(float, 0, None, "neither")],
        "batch_size": [Interval(int, 1, None)],
        "max_iter": [Interval(int, 1, None)],
        "early_stopping": [bool],
        "random_state": [Interval(int, 0, None)],
    }

    def __init__(
        self,
        *,
        hidden_layer_sizes: list[int] | None = None,
        activation: str = "relu",
        alpha: float = 1e-4,
        learning_rate_init: float = 1e-3,
        batch_size: int = 256,
        max_iter: int = 200,
        early_stopping: bool = True,
        preprocessing: dict | None = None,
        random_state: int = 0,
        threshold_rule: Any = None,
    ) -> None:
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.alpha = alpha
        self.learning_rate_init = learning_rate_init
        self.batch_size = batch_size
        self.max_iter = max_iter
        self.early_stopping = early_stopping
        self.preprocessing = preprocessing
        self.random_state = random_state
        self.threshold_rule = threshold_rule

    def _fit_supervised(self, X: np.ndarray, y: np.ndarray, X_val: np.ndarray | None, **fit_options: Any) -> None:
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.neural_network import MLPClassifier

        ignore_fit_options(self.name, fit_options)
        self._make_preprocessor(X[y == 0])
        hidden = tuple(self.hidden_layer_sizes) if self.hidden_layer_sizes is not None else (64, 32)
        clf = MLPClassifier(
            hidden_layer_sizes=hidden,
            activation=self.activation,
            alpha=self.alpha,
            learning_rate_init=self.learning_rate_init,
            batch_size=min(self.batch_size, len(X)),
            max_iter=self.max_iter,
            early_stopping=self.early_stopping and len(X) >= 20,
            random_state=self.random_state,
        )
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            clf.fit(self.preprocessor_.transform(X), y)
        if any(issubclass(w.category, ConvergenceWarning) for w in caught):
            log.info("mlp-classifier: did not converge in max_iter=%d epochs", self.max_iter)
        self.coefs_ = [np.asarray(w, dtype=np.float64) for w in clf.coefs_]
        self.intercepts_ = [np.asarray(b, dtype=np.float64) for b in clf.intercepts_]
        self.history_ = {"epoch": list(range(1, len(clf.loss_curve_) + 1)), "train_loss": [float(v) for v in clf.loss_curve_]}

    def _score(self, X: np.ndarray) -> np.ndarray:
        a = self.preprocessor_.transform(X).astype(np.float64)
        act = _ACTIVATIONS[self.activation]
        last = len(self.coefs_) - 1
        for i, (w, b) in enumerate(zip(self.coefs_, self.intercepts_)):
            a = a @ w + b
            if i < last:
                a = act(a)
        # Binary MLPClassifier: one logistic output unit = P(class 1). Written as a stable sigmoid.
        z = a[:, 0]
        return np.where(z >= 0, 1.0 / (1.0 + np.exp(-np.abs(z))), np.exp(-np.abs(z)) / (1.0 + np.exp(-np.abs(z))))

    def _get_state(self) -> tuple[dict, dict[str, np.ndarray]]:
        arrays = {f"coef.{i}": w for i, w in enumerate(self.coefs_)}
        arrays.update({f"intercept.{i}": b for i, b in enumerate(self.intercepts_)})
        return {"n_layers": len(self.coefs_)}, arrays

    def _set_state(self, meta: dict, arrays: dict[str, np.ndarray]) -> None:
        n = int(meta["n_layers"])
        check_arrays(self.name, arrays, [f"coef.{i}" for i in range(n)] + [f"intercept.{i}" for i in range(n)])
        self.coefs_ = [arrays[f"coef.{i}"].astype(np.float64) for i in range(n)]
        self.intercepts_ = [arrays[f"intercept.{i}"].astype(np.float64) for i in range(n)]
        if self.coefs_[0].shape[0] != self.preprocessor_.n_features_out_:
            raise ValueError("mlp-classifier: first layer does not match the preprocessed features")
