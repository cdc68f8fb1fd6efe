"""The errors a run reports to its user as one line (the CLI prints them, exit code 2)."""


class ConfigError(ValueError):
    """A run config that cannot train; raised before anything is written."""


class DataError(ValueError):
    """A dataset that cannot be read as configured; the message says how to fix it."""


class RunDirInUseError(RuntimeError):
    """Another run holds the run directory (training/lease.py)."""


class StrategyError(RuntimeError):
    """The requested accelerator or cluster cannot be used; the message says what to do."""
