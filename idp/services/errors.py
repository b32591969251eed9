"""Errors that services raise for a person to read; views and the CLI show the message."""


class ServiceError(ValueError):
    """A request that the rules refuse, with a message fit for the person who made it."""


class NotFound(ServiceError):
    """The thing named does not exist (or is not visible to the caller)."""
