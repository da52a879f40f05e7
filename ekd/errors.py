"""ekd's exceptions: every user mistake is an :class:`EkdError` with a one-line message.

The CLI catches :class:`EkdError` once, prints its message and exits with status 2; anything
else is a bug and keeps its traceback.
"""

__all__ = ["EkdError", "ConfigError", "DataError", "BackendError", "PluginError", "Cancelled", "Preempted", "TrainingDiverged"]


class EkdError(Exception):
    """Base class: a problem the user can fix; the message says what and where."""


class ConfigError(EkdError):
    """An option, config key or command-line value is missing, misspelt or out of range."""


class DataError(EkdError):
    """A data file is missing, unreadable, or holds the wrong keys, shapes or values."""


class BackendError(EkdError):
    """A model backend cannot build, load or run a model as asked."""


class PluginError(EkdError):
    """A plugin failed to import or register; the message names the plugin."""


class Cancelled(EkdError):
    """A progress callback asked the run to stop; finished work is kept and the run resumes."""


class TrainingDiverged(EkdError):
    """A training's loss became NaN or infinite; the message names the model, the epoch and
    the likely cause."""


class Preempted(EkdError):
    """The scheduler asked the job to stop (SIGTERM or SIGUSR1): a checkpoint of the step
    reached was saved, and the same command resumes from it."""
