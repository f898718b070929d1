"""mailcircle: a writing circle that runs entirely by email."""

__version__ = "0.1.0"
