"""Errors every layer may raise and the commands catch."""


class DeliveryError(Exception):
    """Delivery cannot start: the message says what to fix."""
