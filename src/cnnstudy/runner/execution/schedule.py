"""The order of work: every unit whose inputs are ready goes to the executor, as many at once as it
has slots, in study order. A run's units are its repeats, or, for a swept run, its sweep's trials
and then the confirmation of the best setting; a run that starts from another (`init_from`) waits
until every unit of that run has finished. With one slot this is the study order itself.
"""
from __future__ import annotations

from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field
from typing import Callable

from tqdm.auto import tqdm

from ...config import StudyError
from ..planning.fingerprint import checkpoint_inputs, make_fingerprint
from ..results.folds import pool_runs
from ..results.estimate import TRIALS_TO_DRAW
from ..planning.plan import Blocked, Job, RunPlan, SweepPlan, diverged_already, plan_repeats, stale_message, trial_plan
from ..planning.repeats import source_checkpoint
from .recorder import ProgressRecorder, finished_state
from .run import remove_run_dir
from ..search.trials import Sweep
from ..search.sweep import confirmed_config, sweep_units, trial_budget
from .units import Unit, UnitContext, finished_line, run_unit


@dataclass
class RunWork:
    """All units of one run of the study."""
    run_id: str
    source: str | None  # the run it starts from (init_from)
    plans: list[RunPlan] = field(default_factory=list)
    sweep: SweepPlan | None = None  # a search still to do before `plans` are known
    search: Sweep | None = None
    submitted: int = 0
    completed: int = 0
    diverged: int = 0  # units whose training diverged
    blocked: str | None = None  # why it is not run
    pooled_diverged: bool = False  # folded: a fold of every repeat left no checkpoint, so nothing may start from it

    @property
    def done(self) -> bool:
        return self.blocked is not None or (self.sweep is None and self.completed == len(self.plans))

    @property
    def unusable(self) -> bool:
        """Nothing can start from it: it was not run, or every unit of it diverged."""
        return self.blocked is not None or self.pooled_diverged or \
            (self.done and bool(self.plans) and self.diverged == len(self.plans))


def gather_work(jobs: list[Job]) -> list[RunWork]:
    works: dict[str, RunWork] = {}
    for job in jobs:
        work = works.setdefault(job.cfg.run_id, RunWork(job.cfg.run_id, job.cfg.model.init_from))
        if isinstance(job, Blocked):
            work.blocked = job.reason
        elif isinstance(job, SweepPlan):
            work.sweep = job
        else:
            work.plans.append(job)
    return list(works.values())


def unit_count(works: list[RunWork]) -> int:
    return sum(len(w.plans) + (sweep_units(w.sweep.cfg) if w.sweep else 0) for w in works)


class Scheduler:
    def __init__(self, works: list[RunWork], executor, ctx: UnitContext, log: Callable[[str], None],
                 after_run: Callable[[], None], progress: ProgressRecorder | None = None) -> None:
        self.works, self.executor, self.ctx, self.log, self.after_run = works, executor, ctx, log, after_run
        self.running: dict[Future, tuple[RunWork, Unit]] = {}
        self.total, self.finished, self.bar = unit_count(works), 0, None
        self.progress = progress or ProgressRecorder(ctx.study_dir, ctx.study_name, executor.slots, executor.name)
        for work in works:
            if work.blocked:
                log(f"not run: {work.run_id}: {work.blocked}")
                self.progress.block(work.run_id, work.blocked)
            self._known(work)
        self.progress.save()

    def _known(self, work: RunWork) -> None:
        """The progress file learns a run's units: its plans, and the units a sweep has still to draw."""
        for plan in work.plans:
            self.progress.add(plan.label, work.run_id, plan.run_dir, plan.cfg.train.epochs)
        trials = confirm = epochs = 0
        if work.sweep is not None:
            cfg, budget = work.sweep.cfg, trial_budget(work.sweep.cfg.sweep)
            trials = budget - (len(work.search.trials()) if work.search is not None else 0)
            confirm, epochs = sweep_units(cfg) - budget, cfg.train.epochs
        self.progress.waiting(work.run_id, TRIALS_TO_DRAW, trials, epochs)
        self.progress.waiting(work.run_id, "the best setting's units, after the search", confirm, epochs)

    def run(self) -> None:
        bar = self.bar = tqdm(total=self.total, desc="units", dynamic_ncols=True, disable=self.executor.slots == 1)
        with bar:
            while True:
                self._fill()
                if not self.running:
                    return self._check_all_done()
                ready, _ = wait(list(self.running), return_when=FIRST_COMPLETED)
                for future in ready:
                    work, unit = self.running.pop(future)
                    self._complete(work, unit, self._result(future, unit))
                    bar.update(1)

    def _result(self, future: Future, unit: Unit) -> dict:
        """The unit's result; a run's failure stops the study here, recorded as the unit's."""
        try:
            return future.result()
        except Exception as err:
            self.progress.finish(unit.label, "failed", f"{type(err).__name__}: {err}")
            raise

    def _fill(self) -> None:
        by_id = {w.run_id: w for w in self.works}
        for work in self.works:
            source = by_id.get(work.source)
            if not work.done and source is not None and source.unusable:
                work.blocked = f"it starts from {source.run_id}, which " + \
                    ("diverged" if source.blocked is None else "was not run")
                self.log(f"not run: {work.run_id}: {work.blocked}")
                self.progress.block(work.run_id, work.blocked)
            if work.done or (source is not None and not source.done):
                continue
            while len(self.running) < self.executor.slots:
                unit = self._next_unit(work)
                if unit is None:
                    break
                self._starting(work, unit)
                # A worker writes its lines to the run folder; this process logs where it was asked to.
                args = (unit, self.ctx) if self.ctx.worker else (unit, self.ctx, self.log)
                self.running[self.executor.submit(run_unit, *args)] = (work, unit)

    def _starting(self, work: RunWork, unit: Unit) -> None:
        """Recorded as running before it is handed over (the serial executor runs it within submit);
        a serial study's console says which unit of how many, and how long the study has left."""
        self.progress.add(unit.label, work.run_id, unit.plan.run_dir, unit.plan.cfg.train.epochs)
        self._known(work)  # a trial just drawn, or the confirmation after a search
        self.progress.start(unit.label)
        if self.executor.slots == 1 and unit.plan.action != "skip":
            self.log(f"run {self.finished + 1} of {self.total}: {unit.label} ({self.progress.left_words()} "
                     "for the study)")

    def _next_unit(self, work: RunWork) -> Unit | None:
        if work.sweep is not None:
            if work.search is None:
                work.search = self._start_search(work.sweep)
            if not work.search.finished:
                spec = work.search.next_trial()
                return None if spec is None else Unit(trial_plan(work.sweep, spec.number, spec.params), spec)
            work.plans, work.sweep = self._confirmation(work.sweep, work.search), None
        if work.submitted == len(work.plans):
            return None
        work.submitted += 1
        return Unit(work.plans[work.submitted - 1])

    def _start_search(self, plan: SweepPlan) -> Sweep:
        if plan.clear is not None and plan.clear.exists():
            remove_run_dir(plan.clear, self.ctx.study_dir)
        first = plan.data.fold(0 if plan.data.folds else None)  # a folded run's trials: its first fold
        source_ckpt = source_checkpoint(self.ctx.study_dir, plan.source, 0 if plan.data.folds else None,
                                        first.split.digest) if plan.source else None
        made_from = make_fingerprint(plan.cfg, plan.data.split, checkpoint_inputs(plan.cfg, self.ctx.study_dir,
                                                                                   source_ckpt),
                                     plan.data.data_digest)
        search = Sweep(plan.cfg, plan.group, made_from)
        earlier = sum(t.state.is_finished() for t in search.trials())
        self.log(f"== {plan.label}: sweep of {trial_budget(plan.cfg.sweep)} trial(s) ({plan.cfg.sweep.method}, "
                 f"{plan.cfg.sweep.metric}, prune {plan.cfg.sweep.prune}) in {plan.group}" +
                 (f"; {earlier} finished before" if earlier else ""))
        self.total -= earlier  # units still to do: trials a killed sweep finished are not done again
        self.bar.total = self.total
        return search

    def _confirmation(self, plan: SweepPlan, search: Sweep) -> list[RunPlan]:
        """The best setting's repeats, to be trained and scored on the test split like any run."""
        params = search.best_params()
        best = search.best()
        self.log(f"{plan.label}: best of {len(search.trials())} trial(s) is t{best['trial']:03d} "
                 f"({plan.cfg.sweep.metric} {best['value']:.4f}): " +
                 ", ".join(f"{k}={v}" for k, v in params.items()))
        stale: list = []
        plans = plan_repeats(confirmed_config(plan.cfg, params), plan.data, self.ctx.study_dir, plan.source,
                             plan.source is not None, False, stale)
        if stale:
            raise StudyError(stale_message(self.ctx.study_dir, stale))
        return plans

    def _complete(self, work: RunWork, unit: Unit, result: dict) -> None:
        self.finished += 1
        self.progress.finish(unit.label, *finished_state(result))
        if unit.trial is not None:  # a trial's line counts the trials of its sweep, as they finish
            work.search.record(unit.trial.number, result)
            done = sum(t.state.is_finished() for t in work.search.trials())
            self.log(f"{finished_line(result, done, work.search.budget)}; {self.progress.left_words()}")
            return
        work.completed += 1
        work.diverged += bool(result.get("diverged"))
        if work.done and any(plan.fold is not None for plan in work.plans):
            pool_runs(work.plans)  # a folded run's pooled results, before anything that starts from it
            work.pooled_diverged = diverged_already(self.ctx.study_dir, work.plans[0].cfg)
        self.after_run()
        if self.executor.slots > 1:
            self.log(f"{finished_line(result, self.finished, self.total)}; {self.progress.left_words()}")

    def _check_all_done(self) -> None:
        pending = [w.run_id for w in self.works if not w.done]
        if pending:  # a dependency that can never finish: a bug, not a user error
            raise RuntimeError(f"nothing left to start, but {', '.join(pending)} did not finish")
