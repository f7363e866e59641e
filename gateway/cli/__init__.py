"""The ``v2v`` command line."""
