"""Where sweep points are evaluated: local processes or a Dask distributed cluster.

Both executors call :func:`evaluate` on each point and hand every finished outcome to a
callback as soon as it arrives (the runner caches it there), so work that finished before a
failure or an interruption is never lost. A point whose function raises a
:class:`~wse_sim.errors.WseSimError` (e.g. a plan that does not fit) is an *error outcome*, not a
failure of the sweep; any other exception stops the sweep: points not yet started are
cancelled, points already running are collected, then :class:`SweepError` is raised.
"""

from __future__ import annotations

import pickle
import time
from collections.abc import Callable, Sequence
from concurrent.futures import CancelledError, ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Any

from wse_sim.errors import ConfigError, WseSimError
from wse_sim.sweep.grid import Point

EXECUTORS: tuple[str, ...] = ("local", "dask")

PointFn = Callable[[Point], dict[str, Any]]
OnDone = Callable[[int, "Outcome"], None]


class SweepError(WseSimError):
    """A point function raised something other than a WseSimError; the sweep stopped."""


@dataclass
class Outcome:
    """The result of one point: ``metrics`` on success, else ``error`` (one line)."""

    metrics: dict[str, Any] | None
    error: str | None
    wall_seconds: float


def evaluate(point_fn: PointFn, point: Point) -> Outcome:
    """Run ``point_fn(point)``; a WseSimError becomes an error outcome, other errors propagate."""
    t0 = time.perf_counter()
    try:
        metrics = point_fn(dict(point))
    except WseSimError as exc:
        line = str(exc).strip().splitlines()
        msg = f"{type(exc).__name__}: {line[0] if line else ''}"
        return Outcome(None, msg, time.perf_counter() - t0)
    if not isinstance(metrics, dict):
        raise TypeError(f"point function returned {type(metrics).__name__}, expected a dict")
    return Outcome(metrics, None, time.perf_counter() - t0)


def _failure(point: Point, exc: BaseException) -> SweepError:
    text = str(exc).strip().splitlines()
    what = f"{type(exc).__name__}: {text[0] if text else ''}"
    return SweepError(
        f"point {point} failed ({what}); finished points are cached, run the sweep again to resume"
    )


def run_local(
    todo: Sequence[tuple[int, Point]], point_fn: PointFn, jobs: int, on_done: OnDone
) -> None:
    """Evaluate ``todo`` on ``jobs`` local processes (ProcessPoolExecutor)."""
    if not todo:
        return
    try:
        pickle.dumps(point_fn)
    except (pickle.PicklingError, AttributeError, TypeError):
        raise ConfigError(
            "point_fn",
            getattr(point_fn, "__qualname__", repr(point_fn)),
            "must be a module-level function (it is sent to worker processes)",
        ) from None
    pool = ProcessPoolExecutor(max_workers=max(1, min(jobs, len(todo))))
    failure: SweepError | None = None
    try:
        futures = {pool.submit(evaluate, point_fn, point): (i, point) for i, point in todo}
        for fut in as_completed(futures):
            i, point = futures[fut]
            try:
                outcome = fut.result()
            except CancelledError:
                continue
            except Exception as exc:  # a bug in the point function: stop the sweep
                if failure is None:
                    failure = _failure(point, exc)
                    failure.__cause__ = exc
                    for other in futures:
                        other.cancel()
                continue
            on_done(i, outcome)
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    if failure is not None:
        raise failure


def _import_dask() -> Any:
    try:
        import dask.distributed as dd
    except ImportError:
        raise ConfigError(
            "--executor", "dask", "needs dask.distributed: pip install 'wse-sim[dask]'"
        ) from None
    return dd


def check_scheduler(address: str) -> str:
    """Validate a scheduler address such as ``tcp://10.0.0.5:8786`` (or ``host:port``)."""
    rest = address.split("://", 1)[1] if "://" in address else address
    host, sep, port = rest.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ConfigError("--scheduler", address, "use tcp://HOST:PORT, e.g. tcp://127.0.0.1:8786")
    return address


def run_dask(
    todo: Sequence[tuple[int, Point]],
    point_fn: PointFn,
    jobs: int,
    on_done: OnDone,
    scheduler: str | None = None,
    connect_timeout_s: float = 10.0,
) -> None:
    """Evaluate ``todo`` on a Dask cluster: the one at ``scheduler``, else a LocalCluster on
    127.0.0.1 (one in-process worker with ``jobs`` threads, no dashboard)."""
    dd = _import_dask()
    if not todo:
        return
    cluster = None
    if scheduler is not None:
        check_scheduler(scheduler)
        try:
            client = dd.Client(scheduler, timeout=connect_timeout_s)
        except (OSError, TimeoutError) as exc:
            raise ConfigError(
                "--scheduler", scheduler, f"cannot connect ({type(exc).__name__}); is it running?"
            ) from None
    else:
        cluster = dd.LocalCluster(
            host="127.0.0.1",
            protocol="tcp",
            n_workers=1,
            threads_per_worker=max(1, jobs),
            processes=False,
            dashboard_address=None,
        )
        client = dd.Client(cluster)
    failure: SweepError | None = None
    try:
        futures = [client.submit(evaluate, point_fn, point, pure=False) for _, point in todo]
        index = {fut.key: (i, point) for fut, (i, point) in zip(futures, todo)}
        for fut in dd.as_completed(futures):
            i, point = index[fut.key]
            if fut.cancelled():
                continue
            try:
                outcome = fut.result()
            except Exception as exc:
                if failure is None:
                    failure = _failure(point, exc)
                    failure.__cause__ = exc
                    client.cancel([f for f in futures if not f.done()])
                continue
            on_done(i, outcome)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    if failure is not None:
        raise failure
