from dataclasses import replace

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from mnist.preprocess import Prepared
from mnist.settings import NanPolicy
from mnist.tracking import Run
from mnist.validation import ValidationError, ValidationReport
from mnist.validation import validate as check


def _log(run: Run, report: ValidationReport) -> None:
    run.log_json(report.to_dict(), "validation_report.json")
    run.log_metrics(report.metrics())


@task(name="validate", cache_policy=NO_CACHE)
def validate(prepared: Prepared, policy: NanPolicy, sources: dict[str, str], run: Run) -> Prepared:
    """Check every split for NaN/Inf/range/shape/label problems and apply the NaN policy.
    The report goes to MLflow whether or not the run may go on."""
    try:
        splits, report = check(prepared.splits(), policy, sources=sources)
    except ValidationError as exc:
        _log(run, exc.report)
        raise
    _log(run, report)
    logger = get_run_logger()
    if report.problems:
        dropped = sum(r.dropped for r in report.splits.values())
        imputed = sum(r.imputed for r in report.splits.values())
        logger.warning(
            "validation: %s; policy %s dropped %d and imputed %d samples",
            report.summary(),
            policy,
            dropped,
            imputed,
        )
    else:
        logger.info("validation: no NaN, Inf, out-of-range pixels or invalid labels")
    return replace(prepared, **splits)
