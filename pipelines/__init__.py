"""segment-accounts: Segment calls to contacts and accounts in your own warehouse."""

__version__ = "0.1.0"
