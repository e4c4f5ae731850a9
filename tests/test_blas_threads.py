"""limit_blas_threads: the command's process runs the loaded BLAS libraries on one thread; a user's
own OPENBLAS_NUM_THREADS (or the opt-out) wins. Each case in a fresh process, as the command is."""

import json
import os

from vmcjet.blas_threads import USER_SETTINGS

# Imports vmcjet (which loads numpy's, scipy's and pyscf's BLAS), applies the limit (unless opted
# out) and prints whether it did and the thread counts of the BLAS pools before and after.
_PROBE = """
import json
import vmcjet
from vmcjet.blas_threads import blas_threads, blas_threads_limited, limit_blas_threads
before = blas_threads()
limited = limit_blas_threads()
assert blas_threads_limited() == limited
print(json.dumps([limited, before, blas_threads()]))
"""


def _probe(fresh_python, extra_env: dict) -> list:
    return json.loads(fresh_python(_PROBE, USER_SETTINGS, extra_env))


def test_limit_sets_every_blas_pool_to_one_thread(fresh_python):
    limited, before, after = _probe(fresh_python, {})
    assert limited is True
    assert before == os.cpu_count()  # OpenBLAS's own default: one worker per core
    assert after == 1


def test_users_own_setting_wins(fresh_python):
    limited, before, after = _probe(fresh_python, {"OPENBLAS_NUM_THREADS": "2"})
    assert limited is False
    assert before == after == 2
