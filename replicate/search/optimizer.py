"""The optimizer side of the layer search: the paper's Bayesian optimization, and its exact save and restore.

As in the paper's `searching.py`: `bayes_opt.BayesianOptimization` with the GP's alpha set to 1e-2,
random_state 1, the library's default acquisition (upper confidence bound, kappa 2.576), probes (warm
starts) first, then `init_points` random points, then one suggestion per iteration. When nothing else is
queued the library draws one random point first, so `init_points: 0` without a warm start means one.

Departures, both configurable (`search.acquisition`):
- How hard the acquisition is maximized: the library samples `random_samples` (10,000) random points, then
  polishes the best with `lbfgs_starts` (10) L-BFGS-B runs on numerical gradients. In 2L = 60 dimensions
  that polish costs 10-40 s per suggestion on a CPU, more than a trial; the objective only depends on which
  variables exceed the threshold, so polishing the continuous acquisition buys little. Default 0.
- Numpy's BLAS runs single-threaded during suggestions: with the decoding threads and a busy machine, a
  multi-threaded BLAS spun for seconds on GP fits of a few hundred points (measured: 8 s -> 0.2 s).

Exact resume: the optimizer's random state, acquisition state and queue are saved after every trial
(`optimizer_state.json`). A resumed search registers the logged trials, restores that state, and goes on
exactly as an uninterrupted one would. If the state lags the log (a kill between the two writes) or is
missing, the lagging trials are replayed: their points are produced again (suggestions included, which
costs GP fits but no decoding), checked against the log, and registered with the logged objective.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from bayes_opt import BayesianOptimization
from bayes_opt.acquisition import UpperConfidenceBound
from threadpoolctl import threadpool_limits

from replicate.run.rundir import write_atomic
from replicate.search.space import SearchSpace

STATE_FILE = "optimizer_state.json"


class ConfiguredUpperConfidenceBound(UpperConfidenceBound):
    """The library's default acquisition, with the effort of maximizing it taken from the config."""

    def __init__(self, kappa: float, random_samples: int, lbfgs_starts: int):
        super().__init__(kappa=kappa)
        if random_samples < 1 or lbfgs_starts < 0:
            raise ValueError(
                f"search.acquisition needs random_samples >= 1 and lbfgs_starts >= 0, got {random_samples}, "
                f"{lbfgs_starts}"
            )
        self.random_samples = random_samples
        self.lbfgs_starts = lbfgs_starts

    def suggest(self, gp, target_space, n_random=10_000, n_smart=10, fit_gp=True, random_state=None):
        return super().suggest(
            gp,
            target_space,
            n_random=self.random_samples,
            n_smart=self.lbfgs_starts,
            fit_gp=fit_gp,
            random_state=random_state,
        )


class LayerOptimizer:
    """The optimizer, its random state and its queue of points to probe before suggesting.

    Points are arrays of shape (2L,) in the space's variable order; `queue` holds (kind, point) pairs,
    kind "warm_start" or "random"."""

    def __init__(self, space: SearchSpace, search_cfg: Mapping[str, Any], warm_starts: Sequence[np.ndarray]):
        acquisition = search_cfg["acquisition"]
        self.space = space
        self.random_state = np.random.RandomState(search_cfg["random_state"])
        self.optimizer = BayesianOptimization(
            f=None,
            pbounds=space.bounds(),
            acquisition_function=ConfiguredUpperConfidenceBound(
                acquisition["kappa"], acquisition["random_samples"], acquisition["lbfgs_starts"]
            ),
            random_state=self.random_state,
            verbose=0,
            allow_duplicate_points=True,  # a warm start may repeat a point; the GP's alpha absorbs it
        )
        self.optimizer.set_gp_params(alpha=search_cfg["gp_alpha"])
        self.queue: list[tuple[str, np.ndarray]] = [("warm_start", np.asarray(p, float)) for p in warm_starts]
        init_points = search_cfg["init_points"]
        if init_points < 0:
            raise ValueError(f"search.init_points must be >= 0, got {init_points}")
        if not self.queue and init_points == 0:
            init_points = 1  # what the library's maximize() does with nothing to probe
        for params in self.optimizer.random_sample(init_points):
            self.queue.append(("random", self.space.to_array(params)))
        self.initial_queue_length = len(self.queue)
        self.registered = 0

    def next_point(self) -> tuple[str, np.ndarray]:
        """The next point to evaluate: the queue first, then the acquisition's suggestion."""
        if self.queue:
            return self.queue.pop(0)
        with threadpool_limits(limits=1, user_api="blas"), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # sklearn's convergence chatter on GP fits
            params = self.optimizer.suggest()
        return "suggested", self.space.to_array(params)

    def register(self, point: np.ndarray, objective: float) -> None:
        self.optimizer.register(self.space.to_params(point), float(objective))
        self.registered += 1

    def state(self) -> dict[str, Any]:
        """Everything `restore` needs besides the registered trials (JSON-ready)."""
        random_state = self.random_state.get_state(legacy=False)
        acquisition = self.optimizer.acquisition_function
        return {
            "registered": self.registered,
            "random_state": {
                **random_state,
                "state": {**random_state["state"], "key": random_state["state"]["key"].tolist()},
            },
            "acquisition": {**acquisition.get_acquisition_params(), "calls": acquisition.i},
            "queue": [[kind, point.tolist()] for kind, point in self.queue],
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        random_state = dict(state["random_state"])
        random_state["state"] = {
            **random_state["state"],
            "key": np.array(random_state["state"]["key"], np.uint32),
        }
        self.random_state.set_state(random_state)
        acquisition = self.optimizer.acquisition_function
        params = dict(state["acquisition"])
        acquisition.i = params.pop("calls")
        acquisition.set_acquisition_params(params)
        self.queue = [(kind, np.array(point, float)) for kind, point in state["queue"]]

    def save(self, run_dir: Path) -> None:
        write_atomic(run_dir / STATE_FILE, json.dumps(self.state()))

    def resume(self, run_dir: Path, trials: Sequence[Mapping[str, Any]]) -> tuple[int, bool]:
        """Bring the optimizer to where it was after the logged `trials`, registering their logged objectives.
        Returns (how many were replayed, whether every replayed point matched the log). A mismatch (another
        library version, other numerics) is warned about: the search goes on from the logged points."""
        path = run_dir / STATE_FILE
        saved = json.loads(path.read_text()) if path.exists() else None
        restored = saved["registered"] if saved is not None and saved["registered"] <= len(trials) else 0
        for trial in trials[:restored]:
            self.register(np.array(trial["params"]), trial["objective"])
        if restored:
            self.restore(saved)
        exact = True
        for trial in trials[restored:]:
            kind, point = self.next_point()
            logged = np.array(trial["params"])
            if exact and (kind != trial["kind"] or not np.allclose(point, logged, rtol=0, atol=1e-9)):
                exact = False
                warnings.warn(
                    f"replaying trial {trial['trial']} in {run_dir} gave another point than its log; the search "
                    "goes on from the logged trials but will not repeat an uninterrupted run exactly",
                    stacklevel=2,
                )
            self.register(logged, trial["objective"])
        return len(trials) - restored, exact
