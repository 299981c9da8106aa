"""datatrove's executors for the curation stages, with their console output scoped to log files.

**Logging.** datatrove logs through loguru, whose sinks are process-wide, and manages them per task:
``add_task_logger`` calls ``logger.remove()`` and adds a stderr sink (the pipeline banner, a stats
table per task and, on a failure, the exception with a full traceback) plus the task's log file;
``close_task_logger`` resets loguru to its own stderr default. Run as is, every shard prints that
between bielik's lines and a bad input line prints datatrove's traceback before bielik's one-line
error. :func:`datatrove_logs` scopes all of it to one ``with`` block: datatrove's records go to the
stage's log file and each task's own log, none to the console, and on exit loguru has exactly the
sinks it had before (a sink the caller added keeps working).

loguru has no public way to mute a sink and bring it back: ``logger.remove(id)`` *stops* the sink
(a file sink is closed for good). So the sinks present are detached from the core for the block
(not stopped) and re-attached afterwards; that reads loguru's ``_core`` (checked with loguru 0.7).
The executor subclasses below apply the same scope inside each task, because datatrove runs tasks
in fresh worker processes (multiprocess ``forkserver`` locally, Ray actors) where a scope set in
the parent does not exist.

**Slurm dry run.** datatrove's ``SlurmPipelineExecutor.launch_job`` writes the pickled executor and
the launch script, then calls ``sbatch`` at once; it has no dry-run mode. :func:`slurm_dry_run`
runs the same ``launch_job`` with its one submission function replaced by a recorder, so what it
returns is exactly what would have been submitted (directives, array size, dependencies).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from pathlib import Path

from datatrove.executor import LocalPipelineExecutor, RayPipelineExecutor, SlurmPipelineExecutor

from bielik.errors import BielikError

# datatrove's own log line format (datatrove.utils.logging.add_task_logger), without colour tags
LOG_FORMAT = "{time:YYYY-MM-DD HH:mm:ss.SSS} | {level: <8} | {name}:{function}:{line} - {message}"


def _add_task_log(logging_dir, rank: int, local_rank: int = 0, node_rank: int = -1):
    """Replacement for datatrove's ``add_task_logger``: the task's log file only, no ``logger.remove()``."""
    from loguru import logger

    logfile = logging_dir.open(f"logs/task_{rank:05d}.log", "w")
    prefix = f"[NODE {node_rank}] " if node_rank != -1 else ""
    sink_id = logger.add(logfile, level="DEBUG", format=prefix + LOG_FORMAT, colorize=False)
    logger.info(f"Launching pipeline for {rank=}")
    return logfile, sink_id


def _close_task_log(handle) -> None:
    """Replacement for datatrove's ``close_task_logger``: removes only the sink :func:`_add_task_log` added."""
    from loguru import logger

    logfile, sink_id = handle
    logger.complete()
    logger.remove(sink_id)
    logfile.close()


@contextlib.contextmanager
def datatrove_logs(log_file: Path | None = None) -> Iterator[None]:
    """Within the block datatrove logs to ``log_file`` (appended) and its tasks' files, never to the console.

    Python warnings raised meanwhile (numpy's, from the steps) go to the same place. On exit the
    loguru sinks that were there before are back, untouched, and datatrove's task hooks are its own.
    """
    import datatrove.executor.base as dt_base
    from loguru import logger

    core = logger._core  # see the module docstring: detach without stopping
    with core.lock:
        saved, saved_min = core.handlers, core.min_level
        core.handlers, core.min_level = {}, float("inf")
    hooks = dt_base.add_task_logger, dt_base.close_task_logger
    dt_base.add_task_logger, dt_base.close_task_logger = _add_task_log, _close_task_log
    fh = sink_id = None
    try:
        if log_file is not None:
            log_file.parent.mkdir(parents=True, exist_ok=True)
            fh = open(log_file, "a", encoding="utf-8")  # noqa: SIM115 (closed when the sink is removed)
            sink_id = logger.add(fh, level="DEBUG", format=LOG_FORMAT, colorize=False)
        with warnings.catch_warnings():
            warnings.showwarning = _warning_to_loguru
            yield
    finally:
        dt_base.add_task_logger, dt_base.close_task_logger = hooks
        logger.complete()
        if sink_id is not None:
            logger.remove(sink_id)
            fh.close()
        with core.lock:
            leftover = core.handlers  # anything a step added and did not remove: stop it, then re-attach ours
        for handler_id in list(leftover):
            logger.remove(handler_id)
        with core.lock:
            core.handlers, core.min_level = saved, saved_min


def _warning_to_loguru(message, category, filename, lineno, file=None, line=None) -> None:
    from loguru import logger

    logger.warning(warnings.formatwarning(message, category, filename, lineno, line).rstrip())


class LocalExecutor(LocalPipelineExecutor):
    """datatrove's local executor; each task (in whichever worker process) runs inside :func:`datatrove_logs`."""

    def _launch_run_for_rank(self, rank: int, ranks_q, completed=None, completed_lock=None):
        # the wrapper logs "k/n tasks completed" after the task: keep that inside the scope too
        with datatrove_logs():
            return super()._launch_run_for_rank(rank, ranks_q, completed, completed_lock)


class RayExecutor(RayPipelineExecutor):
    """datatrove's Ray executor; each task (in a Ray actor's pool process) runs inside :func:`datatrove_logs`."""

    def _run_for_rank(self, rank: int, local_rank: int = 0, node_rank: int = -1):
        with datatrove_logs():
            return super()._run_for_rank(rank, local_rank, node_rank)


class SlurmExecutor(SlurmPipelineExecutor):
    """datatrove's Slurm executor; a task's datatrove output goes to its task log, not the job's .out file."""

    def _run_for_rank(self, rank: int, local_rank: int = 0, node_rank: int = -1):
        with datatrove_logs():
            return super()._run_for_rank(rank, local_rank, node_rank)


def build_executor(
    pipeline: list, ex, tasks: int, work: Path, logs_name: str = "logs", depends=None, whole: bool = False
):
    """The datatrove executor ``ex`` (an ``ExecutorConfig``) describes; logs in ``work/logs_name``.

    ``whole`` ignores the node slice (``local_tasks``/``local_rank_offset``): stages after the shards.
    """
    logs = str(work / logs_name)
    if ex.kind == "local":
        workers = min(ex.workers if ex.workers != -1 else tasks, tasks)
        return LocalExecutor(
            pipeline=pipeline,
            tasks=tasks,
            workers=workers,
            logging_dir=logs,
            local_tasks=-1 if whole else ex.local_tasks,
            local_rank_offset=0 if whole else ex.local_rank_offset,
            depends=depends,
        )
    if ex.kind == "slurm":
        if not ex.partition:
            raise BielikError("executor.partition: required with executor.kind=slurm (the partition to submit to)")
        return SlurmExecutor(
            pipeline=pipeline,
            tasks=tasks,
            time=ex.time,
            partition=ex.partition,
            cpus_per_task=ex.cpus_per_task,
            mem_per_cpu_gb=int(max(1, ex.mem_per_cpu_gb)),
            workers=ex.workers,
            logging_dir=logs,
            job_name=f"bielik-{logs_name}",
            venv_path=ex.venv_path,
            sbatch_args=ex.sbatch_args or None,
            depends=depends,
        )
    return RayExecutor(
        pipeline=pipeline,
        tasks=tasks,
        workers=ex.workers,
        logging_dir=logs,
        cpus_per_task=ex.cpus_per_task,
        mem_per_cpu_gb=ex.mem_per_cpu_gb,
        depends=depends,
    )


def slurm_dry_run(executor: SlurmPipelineExecutor) -> list[dict]:
    """What ``executor.run()`` would submit, without ``sbatch``: ``[{"args": [...], "script": str}, ...]``.

    datatrove writes its files as for a real launch (``executor.pik``, ``ranks_to_run.json``,
    ``launch_script.slurm`` in the logging dir), so the printed script is runnable as it stands.
    The last entry is datatrove's stats-merging job, which depends on the array job.
    """
    import datatrove.executor.slurm as dt_slurm

    submitted: list[dict] = []

    def record(script: str, _job_id_retriever, *args) -> str:
        submitted.append({"args": list(args), "script": script})
        return f"dry-run-{len(submitted)}"

    real = dt_slurm.launch_slurm_job
    dt_slurm.launch_slurm_job = record
    try:
        executor.launch_job()
    finally:
        dt_slurm.launch_slurm_job = real
    return submitted
