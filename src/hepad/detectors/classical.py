"""Classical (scikit-learn) anomaly detectors on background-standardised features.

Every detector here fits ``preprocessor_`` (standard scaling by default, set with the
``preprocessing`` parameter) on background, then a scikit-learn model on the transformed
features. Scores follow the PyOD convention: higher means more anomalous.

To stay fast on 100k x 57 inputs, the models that scale badly with N learn from a random
background subsample of at most ``max_samples`` events (documented per detector); scoring
always covers every event. Fitted models are kept and saved as plain numeric arrays (trees as
flat node arrays walked in NumPy), so saving needs no pickle and loading executes nothing.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import InputError
from ..memory import chunk_rows
from .base import BaseDetector, Interval, Options, check_arrays, ignore_fit_options, sub_arrays

log = logging.getLogger(__name__)

__all__ = [
    "IsolationForestDetector",
    "OneClassSVMDetector",
    "MahalanobisDetector",
    "GaussianMixtureDetector",
    "KNNDetector",
    "MultiplicityDetector",
]



def subsample(X: np.ndarray, max_samples: int | None, random_state: int) -> np.ndarray:
    """At most ``max_samples`` rows of ``X``, drawn without replacement (all rows if fewer)."""
    if max_samples is None or len(X) <= max_samples:
        return X
    rng = np.random.default_rng(random_state)
    idx = np.sort(rng.choice(len(X), size=int(max_samples), replace=False))
    return X[idx]


def chunked(fn: Callable[[np.ndarray], np.ndarray], X: np.ndarray, row_bytes: int) -> np.ndarray:
    """Apply ``fn`` to blocks of rows of ``X`` and concatenate.

    ``row_bytes`` is the memory ``fn`` needs per row (kernel rows, distance rows, tree paths);
    the block size follows from the working-memory budget (:func:`hepad.memory.chunk_rows`).
    """
    size = chunk_rows(row_bytes, max_rows=len(X))
    if len(X) <= size:
        return np.asarray(fn(X))
    return np.concatenate([np.asarray(fn(X[i : i + size])) for i in range(0, len(X), size)])


# ---------------------------------------------------------------------- packed trees
def pack_trees(trees: list[tuple[np.ndarray, ...]]) -> tuple[dict[str, np.ndarray], int]:
    """Flatten fitted trees into node arrays that :func:`walk_trees` evaluates.

    ``trees``: per tree (feature, threshold, left, right, is_leaf, leaf_value) node arrays, in
    scikit-learn's order (children after their parent). Leaves point to themselves, so a
    fixed number of steps (the deepest leaf) lands every event in its leaf.

    Returns the arrays (``feature``, ``threshold``, ``children`` [2 per node: left, right],
    ``value``, ``roots``) and the maximum depth.
    """
    feats, thrs, children, values, roots = [], [], [], [], []
    offset, max_depth = 0, 0
    for feature, threshold, left, right, is_leaf, leaf_value in trees:
        n = len(feature)
        is_leaf = np.asarray(is_leaf, dtype=bool)
        left, right = np.asarray(left, dtype=np.int64), np.asarray(right, dtype=np.int64)
        ids = np.arange(n, dtype=np.int64)
        depth = np.zeros(n, dtype=np.int64)
        for i in range(n):
            if not is_leaf[i]:
                depth[left[i]] = depth[right[i]] = depth[i] + 1
        max_depth = max(max_depth, int(depth.max()) if n else 0)
        feats.append(np.where(is_leaf, 0, feature).astype(np.int64))
        thrs.append(np.where(is_leaf, np.inf, threshold).astype(np.float64))
        children.append(np.stack([np.where(is_leaf, ids, left), np.where(is_leaf, ids, right)], axis=1).ravel() + offset)
        values.append(np.where(is_leaf, leaf_value, 0.0).astype(np.float64))
        roots.append(offset)
        offset += n
    arrays = {
        "feature": np.concatenate(feats),
        "threshold": np.concatenate(thrs),
        "children": np.concatenate(children),
        "value": np.concatenate(values),
        "roots": np.asarray(roots, dtype=np.int64),
    }
    return arrays, max_depth


def check_packed_trees(name: str, arrays: dict[str, np.ndarray], n_features: int) -> None:
    """Raise ValueError when saved tree arrays are inconsistent (so walking them cannot fail)."""
    check_arrays(name, arrays, ("feature", "threshold", "children", "value", "roots"))
    n = arrays["value"].shape[0]
    if arrays["feature"].shape != (n,) or arrays["threshold"].shape != (n,) or arrays["children"].shape != (2 * n,):
        raise ValueError(f"{name}: saved tree arrays do not match the node count")
    for k in ("children", "roots"):
        a = arrays[k]
        if a.size and (a.min() < 0 or a.max() >= n):
            raise ValueError(f"{name}: saved tree array {k} points outside the trees")
    f = arrays["feature"]
    if f.size and (f.min() < 0 or f.max() >= n_features):
        raise ValueError(f"{name}: saved split features outside the {n_features} inputs")


def walk_trees(Z: np.ndarray, arrays: dict[str, np.ndarray], max_depth: int) -> np.ndarray:
    """Sum over trees of the leaf value each event (row of ``Z``) lands in; float64 (N,)."""
    feature = arrays["feature"].astype(np.intp)
    threshold = arrays["threshold"]
    children = arrays["children"].astype(np.intp)
    value = arrays["value"]
    roots = arrays["roots"].astype(np.intp)

    def block(b: np.ndarray) -> np.ndarray:
        flat = np.ascontiguousarray(b).ravel()
        row_start = (np.arange(len(b), dtype=np.intp) * b.shape[1])[:, None]
        node = np.broadcast_to(roots, (len(b), len(roots))).copy()
        for _ in range(max_depth):
            # x <= threshold goes left, as scikit-learn (float32 inputs compared in float64)
            went_right = flat[row_start + feature[node]] > threshold[node]
            node = children[2 * node + went_right]
        return value[node].sum(axis=1)

    # per row and tree: the node index, its split feature and value, the branch taken
    return chunked(block, Z, row_bytes=32 * max(1, len(roots)))


# ---------------------------------------------------------------------- isolation forest
def _average_path_length(n: np.ndarray) -> np.ndarray:
    """c(n): mean path length of an unsuccessful BST search among n points (Liu et al. 2008)."""
    n = np.asarray(n, dtype=np.float64)
    out = np.zeros_like(n)
    out[n == 2] = 1.0
    big = n > 2
    out[big] = 2.0 * (np.log(n[big] - 1.0) + np.euler_gamma) - 2.0 * (n[big] - 1.0) / n[big]
    return out


class IsolationForestDetector(BaseDetector):
    """Isolation forest on standardised features.

    Parameters
    ----------
    n_estimators : int
        Number of trees (the ATLAS seed uses 200).
    max_samples : "auto", int or float
        Events per tree ("auto": min(256, N)); each tree sees only this many, so fitting is
        fast on any N.
    max_features : float
        Fraction of features drawn per tree.
    preprocessing : dict, optional
        Options of :class:`hepad.preprocessing.Preprocessor` (default: standard scaling).
    random_state : int
        Seed of the tree construction.
    n_jobs : int, optional
        Parallel jobs for fitting (scikit-learn's ``n_jobs``).

    Notes
    -----
    Trees are grown by scikit-learn's ``IsolationForest``; the fitted trees are then kept as
    flat node arrays (feature, threshold, children, leaf depth + c(leaf size)), which is what
    is saved, and scoring walks all trees at once in NumPy. The score equals minus
    scikit-learn's ``score_samples``: 2**(-mean path length / c(max_samples)), in (0, 1].
    """

    name = "iforest"

    _parameter_constraints = {
        "n_estimators": [Interval(int, 1, None)],
        "max_samples": [Options(("auto",)), Interval(int, 2, None), Interval(float, 0, 1, "right")],
        "max_features": [Interval(float, 0, 1, "right")],
        "random_state": [Interval(int, 0, None)],
        "n_jobs": [None, Interval(int, -1, None)],
    }

    def __init__(
        self,
        *,
        n_estimators: int = 100,
        max_samples: str | int | float = "auto",
        max_features: float = 1.0,
        preprocessing: dict | None = None,
        random_state: int = 0,
        n_jobs: int | None = None,
        threshold_rule: Any = None,
    ) -> None:
        self.n_estimators = n_estimators
        self.max_samples = max_samples
        self.max_features = max_features
        self.preprocessing = preprocessing
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.threshold_rule = threshold_rule

    def _fit(self, X: np.ndarray, X_val: np.ndarray | None, **fit_options: Any) -> None:
        from sklearn.ensemble import IsolationForest

        ignore_fit_options(self.name, fit_options)
        Z = self._make_preprocessor(X).transform(X)
        forest = IsolationForest(
            n_estimators=self.n_estimators,
            max_samples=self.max_samples,
            max_features=self.max_features,
            random_state=self.random_state,
            n_jobs=self.n_jobs,
        ).fit(Z)
        trees = []
        for est, subset in zip(forest.estimators_, forest.estimators_features_):
            t = est.tree_
            left = t.children_left
            depth = np.zeros(t.node_count)
            for i in range(t.node_count):
                if left[i] >= 0:
                    depth[left[i]] = depth[t.children_right[i]] = depth[i] + 1
            # sklearn's path length: leaf depth + c(events left in the leaf)
            leaf_value = depth + _average_path_length(t.n_node_samples)
            feature = np.asarray(subset)[np.maximum(t.feature, 0)]  # tree features index the subset
            trees.append((feature, t.threshold, left, t.children_right, left < 0, leaf_value))
        self.trees_, self.max_depth_ = pack_trees(trees)
        self.max_samples_ = int(forest.max_samples_)

    def _score(self, X: np.ndarray) -> np.ndarray:
        Z = self.preprocessor_.transform(X)
        norm = len(self.trees_["roots"]) * float(_average_path_length(np.array([self.max_samples_]))[0])
        depth = walk_trees(Z, self.trees_, self.max_depth_)
        return np.power(2.0, -depth / norm) if norm > 0 else np.ones(len(Z))

    def _get_state(self) -> tuple[dict, dict[str, np.ndarray]]:
        meta = {"max_depth": self.max_depth_, "max_samples": self.max_samples_}
        return meta, {f"tree.{k}": v for k, v in self.trees_.items()}

    def _set_state(self, meta: dict, arrays: dict[str, np.ndarray]) -> None:
        self.trees_ = sub_arrays(arrays, "tree.")
        check_packed_trees(self.name, self.trees_, self.preprocessor_.n_features_out_)
        self.max_depth_ = int(meta["max_depth"])
        self.max_samples_ = int(meta["max_samples"])


# ---------------------------------------------------------------------- one-class SVM
class OneClassSVMDetector(BaseDetector):
    """One-class SVM with an RBF kernel, approximated so it scales linearly in N.

    An exact ``OneClassSVM`` is O(N^2)-O(N^3) and stops being usable near 10^4-10^5 events.
    This maps features to ``n_components`` approximate RBF-kernel features (``Nystroem``
    landmarks or random Fourier features, ``RBFSampler``) and fits a linear
    ``SGDOneClassSVM`` there, on at most ``max_samples`` background events.

    Parameters
    ----------
    n_components : int
        Dimension of the kernel approximation.
    kernel_approximation : {"nystroem", "rbf-sampler"}
        Nystroem landmarks (data-adapted, usually better) or random Fourier features.
    gamma : "scale" or float
        RBF width; "scale" = 1 / (n_features * var(X)) as scikit-learn's SVC.
    nu : float
        Upper bound on the training fraction outside the boundary (the ATLAS seed's
        contamination, 0.05).
    max_samples : int, optional
        Background events used for fitting (None: all).
    max_iter : int
        SGD epochs.
    preprocessing : dict, optional
        Options of :class:`hepad.preprocessing.Preprocessor`.
    random_state : int
        Seed of the landmarks / Fourier features, the subsample and SGD.

    Notes
    -----
    Score = minus the SVM decision function (positive outside the learned boundary).
    """

    name = "ocsvm"

    _parameter_constraints = {
        "n_components": [Interval(int, 1, None)],
        "kernel_approximation": [Options(("nystroem", "rbf-sampler"))],
        "gamma": [Options(("scale",)), Interval(float, 0, None, "neither")],
        "nu": [Interval(float, 0, 1, "right")],
        "max_samples": [None, Interval(int, 2, None)],
        "max_iter": [Interval(int, 1, None)],
        "random_state": [Interval(int, 0, None)],
    }

    def __init__(
        self,
        *,
        n_components: int = 300,
        kernel_approximation: str = "nystroem",
        gamma: str | float = "scale",
        nu: float = 0.05,
        max_samples: int | None = 50_000,
        max_iter: int = 50,
        preprocessing: dict | None = None,
        random_state: int = 0,
        threshold_rule: Any = None,
    ) -> None:
        self.n_components = n_components
        self.kernel_approximation = kernel_approximation
        self.gamma = gamma
        self.nu = nu
        self.max_samples = max_samples
        self.max_iter = max_iter
        self.preprocessing = preprocessing
        self.random_state = random_state
        self.threshold_rule = threshold_rule

    def _fit(self, X: np.ndarray, X_val: np.ndarray | None, **fit_options: Any) -> None:
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.kernel_approximation import Nystroem, RBFSampler
        from sklearn.linear_model import SGDOneClassSVM

        ignore_fit_options(self.name, fit_options)
        Z = subsample(self._make_preprocessor(X).transform(X), self.max_samples, self.random_state)
        Z64 = Z.astype(np.float64)
        var = float(Z64.var())
        self.gamma_ = float(1.0 / (Z.shape[1] * var if var > 0 else 1.0)) if self.gamma == "scale" else float(self.gamma)
        if self.kernel_approximation == "nystroem":
            n_comp = min(self.n_components, len(Z))
            approx = Nystroem(kernel="rbf", gamma=self.gamma_, n_components=n_comp, random_state=self.random_state)
            approx.fit(Z64)
            self.components_ = np.asarray(approx.components_, dtype=np.float64)
            self.normalization_ = np.asarray(approx.normalization_, dtype=np.float64)
        else:
            approx = RBFSampler(gamma=self.gamma_, n_components=self.n_components, random_state=self.random_state)
            approx.fit(Z64)
            self.random_weights_ = np.asarray(approx.random_weights_, dtype=np.float64)
            self.random_offset_ = np.asarray(approx.random_offset_, dtype=np.float64)
        Phi = self._features(Z)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            svm = SGDOneClassSVM(nu=self.nu, max_iter=self.max_iter, tol=1e-4, random_state=self.random_state)
            svm.fit(Phi)
        if any(issubclass(w.category, ConvergenceWarning) for w in caught):
            log.info("ocsvm: SGD did not converge in max_iter=%d epochs; raise max_iter for a tighter fit", self.max_iter)
        self.n_iter_ = int(svm.n_iter_)
        self.coef_ = np.asarray(svm.coef_, dtype=np.float64).ravel()
        self.offset_ = float(np.asarray(svm.offset_).ravel()[0])

    def _features(self, Z: np.ndarray) -> np.ndarray:
        Z = np.asarray(Z, dtype=np.float64)
        if self.kernel_approximation == "nystroem":
            C = self.components_
            d2 = (Z * Z).sum(1)[:, None] + (C * C).sum(1)[None, :] - 2.0 * (Z @ C.T)
            K = np.exp(-self.gamma_ * np.maximum(d2, 0.0))
            return K @ self.normalization_.T
        proj = Z @ self.random_weights_ + self.random_offset_
        return np.cos(proj) * np.sqrt(2.0 / self.random_weights_.shape[1])

    def _score(self, X: np.ndarray) -> np.ndarray:
        Z = self.preprocessor_.transform(X)
        return chunked(lambda b: self.offset_ - self._features(b) @ self.coef_, Z, row_bytes=8 * (3 * len(self.coef_) + Z.shape[1]))

    def _get_state(self) -> tuple[dict, dict[str, np.ndarray]]:
        arrays = {"coef": self.coef_}
        if self.kernel_approximation == "nystroem":
            arrays.update(components=self.components_, normalization=self.normalization_)
        else:
            arrays.update(random_weights=self.random_weights_, random_offset=self.random_offset_)
        return {"gamma": self.gamma_, "offset": self.offset_}, arrays

    def _set_state(self, meta: dict, arrays: dict[str, np.ndarray]) -> None:
        self.gamma_ = float(meta["gamma"])
        self.offset_ = float(meta["offset"])
        if self.kernel_approximation == "nystroem":
            check_arrays(self.name, arrays, ["coef", "components", "normalization"])
            self.components_ = arrays["components"].astype(np.float64)
            self.normalization_ = arrays["normalization"].astype(np.float64)
            n_comp = self.components_.shape[0]
        else:
            check_arrays(self.name, arrays, ["coef", "random_weights", "random_offset"])
            self.random_weights_ = arrays["random_weights"].astype(np.float64)
            self.random_offset_ = arrays["random_offset"].astype(np.float64)
            n_comp = self.random_weights_.shape[1]
        self.coef_ = arrays["coef"].astype(np.float64)
        if self.coef_.shape != (n_comp,):
            raise ValueError(f"ocsvm: coef has shape {self.coef_.shape}, expected ({n_comp},)")
        f = self.preprocessor_.n_features_out_
        basis = self.components_.shape[1] if self.kernel_approximation == "nystroem" else self.random_weights_.shape[0]
        if basis != f:
            raise ValueError(f"ocsvm: saved kernel basis has {basis} features, expected {f}")


# ---------------------------------------------------------------------- Mahalanobis
class MahalanobisDetector(BaseDetector):
    """Squared Mahalanobis distance from the background mean under its covariance.

    Parameters
    ----------
    method : {"empirical", "mcd"}
        ``empirical``: the sample covariance (``EmpiricalCovariance``), fast and stable.
        ``mcd``: robust Minimum Covariance Determinant (``MinCovDet``, the elliptic envelope
        of the ATLAS seed); slow (seconds per thousand events in 57 dimensions), and on
        zero-padded object layouts its robust subset tends to drop rare objects entirely,
        which ``reg_covar`` then has to hold up. Use it for dense engineered features.
    max_samples : int, optional
        Background events the covariance is estimated on (None: all).
    support_fraction : float, optional
        MCD only: fraction of events in the robust subset (scikit-learn's default if None).
    reg_covar : float
        Added to the covariance diagonal (in standardised units) so that constant or rarely
        filled columns (zero padding) do not make it singular.
    preprocessing : dict, optional
        Options of :class:`hepad.preprocessing.Preprocessor`.
    random_state : int
        Seed of the subsample and of MCD.
    """

    name = "mahalanobis"

    _parameter_constraints = {
        "method": [Options(("empirical", "mcd"))],
        "max_samples": [None, Interval(int, 2, None)],
        "support_fraction": [None, Interval(float, 0, 1, "right")],
        "reg_covar": [Interval(float, 0, None)],
        "random_state": [Interval(int, 0, None)],
    }

    def __init__(
        self,
        *,
        method: str = "empirical",
        max_samples: int | None = 100_000,
        support_fraction: float | None = None,
        reg_covar: float = 1e-3,
        preprocessing: dict | None = None,
        random_state: int = 0,
        threshold_rule: Any = None,
    ) -> None:
        self.method = method
        self.max_samples = max_samples
        self.support_fraction = support_fraction
        self.reg_covar = reg_covar
        self.preprocessing = preprocessing
        self.random_state = random_state
        self.threshold_rule = threshold_rule

    def _fit(self, X: np.ndarray, X_val: np.ndarray | None, **fit_options: Any) -> None:
        from scipy.linalg import pinvh
        from sklearn.covariance import EmpiricalCovariance, MinCovDet

        ignore_fit_options(self.name, fit_options)
        Z = subsample(self._make_preprocessor(X).transform(X), self.max_samples, self.random_state).astype(np.float64)
        if self.method == "mcd":
            with warnings.catch_warnings():
                # "not full rank" is expected on zero-padded layouts; reg_covar handles it.
                warnings.simplefilter("ignore", RuntimeWarning)
                warnings.simplefilter("ignore", UserWarning)
                est = MinCovDet(support_fraction=self.support_fraction, random_state=self.random_state).fit(Z)
        else:
            est = EmpiricalCovariance().fit(Z)
        cov = np.asarray(est.covariance_, dtype=np.float64) + self.reg_covar * np.eye(Z.shape[1])
        self.location_ = np.asarray(est.location_, dtype=np.float64)
        self.covariance_ = cov
        self.precision_ = pinvh(cov)

    def _score(self, X: np.ndarray) -> np.ndarray:
        D = self.preprocessor_.transform(X).astype(np.float64) - self.location_
        return chunked(lambda d: np.einsum("ij,ij->i", d @ self.precision_, d), D, row_bytes=8 * 2 * D.shape[1])

    def _get_state(self) -> tuple[dict, dict[str, np.ndarray]]:
        return {}, {"location": self.location_, "covariance": self.covariance_, "precision": self.precision_}

    def _set_state(self, meta: dict, arrays: dict[str, np.ndarray]) -> None:
        check_arrays(self.name, arrays, ["location", "covariance", "precision"])
        self.location_ = arrays["location"].astype(np.float64)
        self.covariance_ = arrays["covariance"].astype(np.float64)
        self.precision_ = arrays["precision"].astype(np.float64)
        f = self.preprocessor_.n_features_out_
        if self.location_.shape != (f,) or self.precision_.shape != (f, f):
            raise ValueError(f"mahalanobis: saved arrays have shapes {self.location_.shape}, {self.precision_.shape}; expected ({f},), ({f}, {f})")


# ---------------------------------------------------------------------- Gaussian mixture
class GaussianMixtureDetector(BaseDetector):
    """Gaussian mixture model of background density; score is the negative log-likelihood.

    Parameters
    ----------
    n_components : int
        Number of Gaussians.
    covariance_type : {"full", "diag", "tied", "spherical"}
        scikit-learn's covariance structure.
    reg_covar : float
        Added to covariance diagonals (standardised units); needed for zero-padded columns.
    max_iter : int
        EM iterations.
    max_samples : int, optional
        Background events EM runs on (None: all); EM cost is linear in N but with a large
        constant for full covariances in 57 dimensions.
    preprocessing : dict, optional
        Options of :class:`hepad.preprocessing.Preprocessor`.
    random_state : int
        Seed of the initialisation and subsample.
    """

    name = "gmm"

    _parameter_constraints = {
        "n_components": [Interval(int, 1, None)],
        "covariance_type": [Options(("full", "diag", "tied", "spherical"))],
        "reg_covar": [Interval(float, 0, None, "neither")],
        "max_iter": [Interval(int, 1, None)],
        "max_samples": [None, Interval(int, 2, None)],
        "random_state": [Interval(int, 0, None)],
    }

    def __init__(
        self,
        *,
        n_components: int = 6,
        covariance_type: str = "full",
        reg_covar: float = 1e-3,
        max_iter: int = 50,
        max_samples: int | None = 10_000,
        preprocessing: dict | None = None,
        random_state: int = 0,
        threshold_rule: Any = None,
    ) -> None:
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.max_samples = max_samples
        self.preprocessing = preprocessing
        self.random_state = random_state
        self.threshold_rule = threshold_rule

    def _fit(self, X: np.ndarray, X_val: np.ndarray | None, **fit_options: Any) -> None:
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.mixture import GaussianMixture

        ignore_fit_options(self.name, fit_options)
        Z = subsample(self._make_preprocessor(X).transform(X), self.max_samples, self.random_state).astype(np.float64)
        gm = GaussianMixture(
            n_components=min(self.n_components, len(Z)),
            covariance_type=self.covariance_type,
            reg_covar=self.reg_covar,
            max_iter=self.max_iter,
            random_state=self.random_state,
        )
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            gm.fit(Z)
        if any(issubclass(w.category, ConvergenceWarning) for w in caught):
            log.info("gmm: EM did not converge in max_iter=%d iterations", self.max_iter)
        self.model_ = gm
        self.n_iter_ = int(gm.n_iter_)

    def _score(self, X: np.ndarray) -> np.ndarray:
        Z = self.preprocessor_.transform(X).astype(np.float64)
        return chunked(lambda b: -self.model_.score_samples(b), Z, row_bytes=8 * 2 * Z.shape[1] * self.model_.n_components)

    _ARRAYS = ("weights", "means", "covariances", "precisions_cholesky", "precisions")

    def _get_state(self) -> tuple[dict, dict[str, np.ndarray]]:
        gm = self.model_
        return (
            {"converged": bool(gm.converged_), "n_iter": int(gm.n_iter_), "lower_bound": float(gm.lower_bound_)},
            {k: np.asarray(getattr(gm, k + "_"), dtype=np.float64) for k in self._ARRAYS},
        )

    def _set_state(self, meta: dict, arrays: dict[str, np.ndarray]) -> None:
        from sklearn.mixture import GaussianMixture

        check_arrays(self.name, arrays, self._ARRAYS)
        means = arrays["means"]
        if means.ndim != 2 or means.shape[1] != self.preprocessor_.n_features_out_:
            raise ValueError(f"gmm: saved means have shape {means.shape}, expected (k, {self.preprocessor_.n_features_out_})")
        gm = GaussianMixture(n_components=means.shape[0], covariance_type=self.covariance_type)
        for k in self._ARRAYS:
            setattr(gm, k + "_", arrays[k].astype(np.float64))
        gm.converged_ = bool(meta.get("converged", True))
        gm.n_iter_ = int(meta.get("n_iter", 0))
        gm.lower_bound_ = float(meta.get("lower_bound", 0.0))
        self.model_ = gm


# ---------------------------------------------------------------------- kNN distance
class KNNDetector(BaseDetector):
    """Distance to the k nearest background events (in standardised features).

    Parameters
    ----------
    n_neighbors : int
        k.
    aggregate : {"kth", "mean"}
        Score = distance to the k-th neighbour, or the mean distance to the k nearest.
    max_samples : int, optional
        Size of the background reference sample (None: all). Scoring costs
        O(N * max_samples * F) (brute force; trees do not help in 57 dimensions), so this
        sets the speed: 5,000 scores 100k events in about two seconds on one core.
    preprocessing : dict, optional
        Options of :class:`hepad.preprocessing.Preprocessor`.
    random_state : int
        Seed of the reference subsample.

    Notes
    -----
    Events of the reference sample itself score low (their nearest neighbour is themselves):
    set the threshold on held-out background (``X_val``), not on the training events.
    """

    name = "knn"

    _parameter_constraints = {
        "n_neighbors": [Interval(int, 1, None)],
        "aggregate": [Options(("kth", "mean"))],
        "max_samples": [None, Interval(int, 1, None)],
        "random_state": [Interval(int, 0, None)],
    }

    def __init__(
        self,
        *,
        n_neighbors: int = 5,
        aggregate: str = "kth",
        max_samples: int | None = 5_000,
        preprocessing: dict | None = None,
        random_state: int = 0,
        threshold_rule: Any = None,
    ) -> None:
        self.n_neighbors = n_neighbors
        self.aggregate = aggregate
        self.max_samples = max_samples
        self.preprocessing = preprocessing
        self.random_state = random_state
        self.threshold_rule = threshold_rule

    def _fit(self, X: np.ndarray, X_val: np.ndarray | None, **fit_options: Any) -> None:
        ignore_fit_options(self.name, fit_options)
        Z = self._make_preprocessor(X).transform(X)
        self.reference_ = np.ascontiguousarray(subsample(Z, self.max_samples, self.random_state), dtype=np.float32)
        self._build_index()

    def _build_index(self) -> None:
        from sklearn.neighbors import NearestNeighbors

        k = min(self.n_neighbors, len(self.reference_))
        self._nn = NearestNeighbors(n_neighbors=k, algorithm="brute").fit(self.reference_)

    def _score(self, X: np.ndarray) -> np.ndarray:
        Z = self.preprocessor_.transform(X)

        def block(b: np.ndarray) -> np.ndarray:
            dist, _ = self._nn.kneighbors(b, return_distance=True)
            return dist[:, -1] if self.aggregate == "kth" else dist.mean(axis=1)

        return chunked(block, Z, row_bytes=8 * 2 * len(self.reference_))

    def _get_state(self) -> tuple[dict, dict[str, np.ndarray]]:
        return {}, {"reference": self.reference_}

    def _set_state(self, meta: dict, arrays: dict[str, np.ndarray]) -> None:
        check_arrays(self.name, arrays, ["reference"])
        self.reference_ = np.ascontiguousarray(arrays["reference"], dtype=np.float32)
        if self.reference_.ndim != 2 or self.reference_.shape[0] == 0 or self.reference_.shape[1] != self.preprocessor_.n_features_out_:
            raise ValueError(f"knn: the reference sample has shape {self.reference_.shape}, expected (n, {self.preprocessor_.n_features_out_})")
        self._build_index()


# ---------------------------------------------------------------------- object multiplicities
#: Object slots counted by ``multiplicity``: feature names of the ADC2021 layout, per collection.
_MULTIPLICITY_GROUPS = (("electrons", r"e\d+_pt"), ("muons", r"mu\d+_pt"), ("jets", r"j\d+_pt"))


class MultiplicityDetector(BaseDetector):
    """How rare an event's object multiplicities are in the background.

    Score = -log P(n_e, n_mu, n_jets), the background frequency of the event's numbers of
    electrons, muons and jets (filled slots: pT > 0), smoothed towards the product of the three
    marginal frequencies: P = (count + w * P_e(n_e) P_mu(n_mu) P_j(n_j)) / (N + w), each marginal
    with half an event added to every count. A multiplicity the background never had (a third
    electron, four muons) scores high, ordered by how implausible each count is on its own. The
    score is discrete: many events share a value. It sees what zero-padded autoencoders on
    standardised inputs miss: no SM test event of the study had a third electron or muon, 9 % of
    A -> 4l events did (docs/detectors.md).

    Inputs without ADC2021 object names (a bare (N, F) array) count the non-zero entries of all
    columns together, one multiplicity per event.

    Parameters
    ----------
    prior_weight : float
        w: the weight, in events, of the independence prior against the observed counts.
    """

    name = "multiplicity"

    _parameter_constraints = {"prior_weight": [Interval(float, 0, None, "neither")]}

    def __init__(self, *, prior_weight: float = 1.0, threshold_rule: Any = None) -> None:
        self.prior_weight = prior_weight
        self.threshold_rule = threshold_rule

    def _groups(self) -> list[np.ndarray]:
        """Column indices of each collection's pT slots (kept by fit and load; scoring only reads)."""
        names = tuple(self.feature_names_in_)
        cached = self.__dict__.get("_groups_cache")
        if cached is not None and cached[0] == names:
            return cached[1]
        import re

        groups = [np.array([i for i, n in enumerate(names) if re.fullmatch(pat, n)], dtype=np.int64)
                  for _, pat in _MULTIPLICITY_GROUPS]
        return groups if any(g.size for g in groups) else [np.arange(len(names), dtype=np.int64)]

    def _keep_lookups(self) -> None:
        """Derived once per fit or load: the slot groups and the background count per pattern."""
        self._groups_cache = (tuple(self.feature_names_in_), self._groups())
        self._table = {tuple(p): int(n) for p, n in zip(self.patterns_.tolist(), self.pattern_counts_.tolist())}

    def _counts(self, X: np.ndarray) -> np.ndarray:
        return np.stack([(X[:, g] != 0).sum(axis=1) if g.size else np.zeros(len(X), np.int64)
                         for g in self._groups()], axis=1).astype(np.int64)

    def _fit(self, X: np.ndarray, X_val: np.ndarray | None, **fit_options: Any) -> None:
        ignore_fit_options(self.name, fit_options)
        self._fit_counts([self._counts(X)])

    def _fit_counts(self, blocks: Any) -> None:
        width = max(len(g) for g in self._groups()) + 1
        table: dict[tuple[int, ...], int] = {}
        hist, n = None, 0
        for c in blocks:
            keys, cnt = np.unique(c, axis=0, return_counts=True)
            for k, v in zip(keys.tolist(), cnt.tolist()):
                table[tuple(k)] = table.get(tuple(k), 0) + int(v)
            h = np.stack([np.bincount(c[:, k], minlength=width) for k in range(c.shape[1])])
            hist = h if hist is None else hist + h
            n += len(c)
        if n == 0:
            raise InputError(f"{self.name}: no background events to count.")
        order = sorted(table)
        self.patterns_ = np.array(order, dtype=np.int64).reshape(len(order), -1)
        self.pattern_counts_ = np.array([table[k] for k in order], dtype=np.int64)
        # marginals_[k, n]: background fraction with n objects of collection k, with half an event
        # added to every count (Jeffreys), so that a count never seen is rare but not impossible
        # and events with several unseen counts still rank above those with one.
        self.marginals_ = (hist + 0.5) / (n + 0.5 * width)
        self.n_background_ = int(n)
        self._keep_lookups()

    def fit_source(self, source: Any, *, val_source: Any = None, **run_options: Any) -> MultiplicityDetector:
        """Count the multiplicities of every event of a batch source (streaming from files:
        :func:`hepad.data.fit_streaming`); the threshold follows ``threshold_rule`` on the scores
        of ``val_source``, else of ``source.sample()``."""
        from ..thresholds import ThresholdRule

        ignore_fit_options(self.name, run_options)
        self._validate_params()
        rule = ThresholdRule.parse(self.threshold_rule)
        self._reset_fitted()
        self.feature_names_in_ = list(source.feature_names)
        self.n_features_in_ = len(self.feature_names_in_)
        self._fit_counts(self._counts(np.asarray(chunk)) for chunk in source.chunks())
        self._threshold_on_source(source, val_source, rule)
        return self

    def _score(self, X: np.ndarray) -> np.ndarray:
        c = self._counts(X)
        width = self.marginals_.shape[1]
        p_ind = np.ones(len(c))
        for k in range(c.shape[1]):
            p_ind *= self.marginals_[k][np.minimum(c[:, k], width - 1)]
        # Count of each event's pattern among the background patterns (exact match).
        keys = self._table
        joint = np.fromiter((keys.get(tuple(r), 0) for r in c.tolist()), dtype=np.float64, count=len(c))
        w = float(self.prior_weight)
        p = (joint + w * p_ind) / (self.n_background_ + w)
        return (-np.log(np.maximum(p, np.finfo(np.float64).tiny))).astype(np.float32)

    def _get_state(self) -> tuple[dict, dict[str, np.ndarray]]:
        return {"n_background": self.n_background_}, {
            "patterns": self.patterns_, "pattern_counts": self.pattern_counts_, "marginals": self.marginals_}

    def _set_state(self, meta: dict, arrays: dict[str, np.ndarray]) -> None:
        check_arrays(self.name, arrays, ["patterns", "pattern_counts", "marginals"])
        self.patterns_ = np.asarray(arrays["patterns"], dtype=np.int64)
        self.pattern_counts_ = np.asarray(arrays["pattern_counts"], dtype=np.int64)
        self.marginals_ = np.asarray(arrays["marginals"], dtype=np.float64)
        self.n_background_ = int(meta["n_background"])
        n_groups = len(self._groups())
        if (self.patterns_.ndim != 2 or self.patterns_.shape[1] != n_groups or self.marginals_.shape[0] != n_groups
                or len(self.pattern_counts_) != len(self.patterns_) or self.n_background_ < 1
                or not np.isfinite(self.marginals_).all()):
            raise ValueError("multiplicity: the saved patterns, counts and marginals do not fit together")
        self._keep_lookups()
