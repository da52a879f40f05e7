"""The EKD stages, each a function of the previous stage's typed output, in one module each:

    inputs.resolve_inputs   config (+ data)     → RunInputs (data, split, held-out, members)
    teach.train_ensemble    training split      → Teachers (the ensemble, members left out)
    labelling.label         data + Teachers     → Labels (in memory, or a streamed labels file)
    students.train_students Labels              → the students (and energy-only baselines)
    evaluate.evaluate_run   models + datasets   → Report

and ``one_model.train_model`` (``ekd train``). :class:`ekd.Run` calls these very functions in a
run directory; a stage module imports no stage after it.
"""

from ekd.pipeline.evaluate import RunModel, Scoring, evaluate_models, evaluate_run
from ekd.pipeline.inputs import RunInputs, resolve_inputs
from ekd.pipeline.labelling import label
from ekd.pipeline.one_model import DEFAULT_FORCE_WEIGHT, TrainSummary, train_model
from ekd.pipeline.students import student_jobs, train_students
from ekd.pipeline.teach import Teachers, failed_teachers, teacher_jobs, train_ensemble, trained_teachers

__all__ = ["DEFAULT_FORCE_WEIGHT", "RunInputs", "RunModel", "Scoring", "Teachers", "TrainSummary", "evaluate_models", "evaluate_run",
           "failed_teachers", "label", "resolve_inputs", "student_jobs", "teacher_jobs", "train_ensemble", "train_model", "train_students",
           "trained_teachers"]
