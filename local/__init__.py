"""The embedded stack and the ``serendip`` command line."""
