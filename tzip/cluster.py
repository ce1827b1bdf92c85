"""Scale-out over a Ray cluster: the blocks of large inputs and of many files coded by
Ray tasks, assembled into the same archive bytes as a local run (tzip/parallel.py).

    tzip.parallel.compress_stream(fin, fout, model, ray="local" | "ray://host:10001" | "auto")
    tzip.parallel.compress_files(paths, model, ray=ADDRESS, workers=N,
                                 ray_options={"num_gpus": 1})

ray="local" starts a local cluster; anything else is passed to ray.init(address=...).
If Ray is already initialised in this process it is used as it is. Each task codes one
block with the single-process path; a Ray worker process keeps its Compressor (its
model, loaded once) from task to task, like an actor, so a model loads once per worker
process. Tasks that fail because their worker died are retried (MAX_RETRIES); errors of
the data (a corrupt archive) are not, and reach the caller as they are. ray_options are
Ray's task options (num_cpus, num_gpus, resources...): with num_gpus the workers run on
GPUs (and model=None picks the GPU model), otherwise on one CPU each.

Ray is optional: pip install 'tzip[ray]'. Without it RayMissing (a TzipError) says so.
"""
from __future__ import annotations

from typing import Any

from .errors import TzipError
from .pipeline import JOBS, WORKER, Backend, WorkerDied, setup_worker

MAX_RETRIES = 3


class RayMissing(TzipError):
    """--ray was asked for, but Ray is not installed."""


def require_ray():
    try:
        import ray
    except ImportError:
        raise RayMissing("--ray needs Ray, which is not installed: pip install 'tzip[ray]'") \
            from None
    return ray


def connect(address: str = "local"):
    """Ray, initialised: a new local cluster for "local", else ray.init(address=address);
    an existing connection of this process is kept."""
    ray = require_ray()
    if not ray.is_initialized():
        if address == "local":
            ray.init(address="local", include_dashboard=False, log_to_driver=False)
        else:
            ray.init(address=address, log_to_driver=False)
    return ray


def _key(model) -> str:
    digest = getattr(model, "digest", None)
    return digest.hex() if digest is not None else str(model)


def run_job(kind: str, key: str, model_box: list, device: str, threads: int, opts: dict,
            name: str, *args: Any) -> bytes:
    """In a Ray worker: one block coded with this process's Compressor / Decompressor,
    made on the first task of its kind (model_box: [spec or ObjectRef of a model])."""
    setup = (kind, key, device, threads, repr(opts))
    if WORKER.get("setup") != setup:
        model = model_box[0]
        if type(model).__name__ == "ObjectRef":
            import ray
            model = ray.get(model)
        setup_worker(kind, model, device, threads, opts)
        WORKER["setup"] = setup
    return JOBS[name](*args)


def _unwrap(ray, e: BaseException) -> BaseException:
    """The error to raise for a failed task: the task's own TzipError, or WorkerDied."""
    cause = getattr(e, "cause", None)
    if isinstance(e, ray.exceptions.RayTaskError) and isinstance(cause, BaseException):
        return cause
    if isinstance(e, (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError,
                      ray.exceptions.ObjectLostError)):
        return WorkerDied(f"a Ray worker died (after {MAX_RETRIES} retries): {e}")
    return e


def cluster_workers(ray, ray_options: dict) -> int:
    """How many tasks the cluster runs at once with these options."""
    res = ray.cluster_resources()
    if ray_options.get("num_gpus"):
        return max(1, int(res.get("GPU", 0) // ray_options["num_gpus"]))
    return max(1, int(res.get("CPU", 1) // ray_options.get("num_cpus", 1)))


def ray_backend(kind: str, model, device: str, opts: dict, address: str, workers: int | None,
                ray_options: dict | None) -> tuple[Backend, int]:
    """A Backend of Ray tasks; its width: workers when given (> 0), else what the cluster's
    CPUs (or GPUs, with num_gpus) run at once."""
    ray = connect(address)
    options = {"num_cpus": 1, **(ray_options or {})}
    if options.get("num_gpus"):
        options.setdefault("num_cpus", 0)
    n = workers if workers else cluster_workers(ray, options)
    threads = max(1, int(options.get("num_cpus") or 1))
    key = _key(model)
    box = [ray.put(model) if not isinstance(model, (str, type(None))) and
           not hasattr(model, "__fspath__") else model]
    task = ray.remote(max_retries=MAX_RETRIES)(run_job).options(**options)
    pending: set = set()
    results: dict = {}

    def submit(name: str, *args) -> Any:
        ref = task.remote(kind, key, box, device, threads, opts, name, *args)
        pending.add(ref)
        return ref

    def wait_any(refs: list) -> None:
        refs = [r for r in refs if r not in results]
        if not refs:
            return
        ready, _ = ray.wait(refs, num_returns=1)
        for r in ready:
            try:
                results[r] = ray.get(r)
            except Exception as e:
                raise _unwrap(ray, e) from None
            finally:
                pending.discard(r)

    def close(error: bool) -> None:
        if error:
            for r in list(pending):
                try:
                    ray.cancel(r, force=True)
                except Exception:
                    pass
        pending.clear()
        results.clear()

    return Backend(submit, wait_any, lambda r: r in results, lambda r: results.pop(r), close), n


__all__ = ["RayMissing", "connect", "ray_backend", "require_ray", "MAX_RETRIES"]
