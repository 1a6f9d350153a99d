"""What the end-to-end scripts share: the check that stops a script at its first mismatch, Slicer's reduction of a
model or trainer config to request params, and Dice. Each script imports it from its own folder (Python puts a
script's folder first on sys.path, whatever the working directory)."""
import sys

import numpy as np


def check(cond, what):
    """Prints `ok: <what>`; on a mismatch prints `FAILED: <what>` to stderr and exits with status 1."""
    if not cond:
        print("FAILED:", what, file=sys.stderr)
        sys.exit(1)
    print("ok:", what)


def slicer_params(config):
    """A config as Slicer sends it back as params: list options reduced to their first entry."""
    return {k: (v[0] if isinstance(v, list) else v) for k, v in config.items()}


def dice(a, b):
    """Dice of two boolean masks; 0 when both are empty, so an empty result never passes a bar."""
    return 2.0 * np.logical_and(a, b).sum() / max(1, a.sum() + b.sum())
