"""DataGate: a zero-trust gateway for data-sharing APIs."""

__version__ = "0.1.0"
