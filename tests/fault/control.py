"""tests/fault/control.py - how the fault matrix switches its helpers' faults:
a control file whose first word is the current mode, read again at every
event, so rewriting the file changes the fault at once."""


def mode_of(path, default):
    """The first word of the file at path; default if it is missing or empty."""
    try:
        with open(path) as f:
            words = f.read().split()
        return words[0] if words else default
    except OSError:
        return default
