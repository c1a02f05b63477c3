"""The fit's bad-input error: the CLI turns it into exit code 2."""


class FitError(ValueError):
    """Data, parameter names, ranges or options that cannot be fitted or analysed as given."""
