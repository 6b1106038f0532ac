"""The one exception the harness raises for anything a person must act on."""


class HarnessError(Exception):
    """Bad input or a failed step; the message says what to do next."""
