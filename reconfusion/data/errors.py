"""The error every loader raises for bad or missing scene data."""


class DataError(ValueError):
    """Bad or missing scene data; the message is one line meant for the user."""
