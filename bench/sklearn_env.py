"""Makes scikit-learn importable for the bench scripts: if it is missing, creates a virtual
environment under $SKLEARN_VENV (default /tmp/sklearn-baseline-venv, the one
../shared/bench/sklearn_baseline.py uses) and re-runs the calling script inside it."""
import os
import subprocess
import sys


def ensure_deps():
    try:
        import sklearn  # noqa: F401
        import pandas  # noqa: F401
        import numpy  # noqa: F401
        return
    except ImportError:
        pass
    venv = os.environ.get("SKLEARN_VENV", "/tmp/sklearn-baseline-venv")
    py = os.path.join(venv, "bin", "python")
    if os.path.realpath(sys.prefix) == os.path.realpath(venv):
        sys.exit("scikit-learn could not be imported inside " + venv)
    if not os.path.exists(py):
        subprocess.check_call([sys.executable, "-m", "venv", venv])
        subprocess.check_call([py, "-m", "pip", "install", "-q", "scikit-learn", "pandas"])
    os.execv(py, [py] + sys.argv)
