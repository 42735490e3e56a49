"""The errors a user can cause. The CLI turns each into one line on stderr and exit code 2."""


class RnnbenchError(Exception):
    """Bad input: reported as one line, never as a traceback."""

    exit_code = 2


class UnknownCellError(RnnbenchError):
    pass


class SizeError(RnnbenchError):
    pass


class ConfigError(RnnbenchError):
    pass


class DeviceError(RnnbenchError):
    pass


class IncompatibleResultsError(RnnbenchError):
    """Two result files that cannot be compared (different device, dtype or schema)."""

    exit_code = 3
