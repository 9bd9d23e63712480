"""The one exception family the CLI turns into a one-line message and a non-zero exit."""


class TelucodecError(Exception):
    """A problem with the user's input (file, flag, model): shown as one line, no traceback."""


class AudioError(TelucodecError, ValueError):
    """An audio file that cannot be used; the message names the file and the problem."""


class ModelError(TelucodecError, ValueError):
    """A model or checkpoint that cannot be loaded or does not match what is asked."""


class BitstreamError(TelucodecError, ValueError):
    """A `.tcd` file (or a `Codes` to be written) that is malformed; the message says what."""


class StorageError(TelucodecError):
    """The machine, not the data, failed a read (too many open files, an I/O error, a folder that may
    not be entered): the run stops, naming the file, instead of counting the clip as bad."""
