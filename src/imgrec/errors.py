"""The one exception type for problems a user can fix (bad path, bad data, bad model file).

The CLI turns it into a single line on stderr and exit code 1; anything else is a bug.
"""


class ImgrecError(Exception):
    """A user-facing error whose message is a complete sentence saying what to do."""
