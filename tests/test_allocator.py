"""retain_freed_memory: a 48 MiB block malloc'd by a worker thread (as XLA's are) comes from the
heap, not from mmap; with the opt-out glibc's defaults mmap it."""

import ctypes
import os
import subprocess
import sys

import pytest

from vmcjet.allocator import USER_SETTINGS

_HAS_MALLINFO2 = sys.platform.startswith("linux") and hasattr(ctypes.CDLL(None), "mallinfo2")
pytestmark = pytest.mark.skipif(not _HAS_MALLINFO2, reason="needs glibc >= 2.33 (mallinfo2)")

# Retains (unless opted out), mallocs 48 MiB in a new thread and prints whether the retain call
# took effect and how many bytes glibc then holds in mmap'd blocks (mallinfo2().hblkhd).
_PROBE = """
import ctypes, threading
from vmcjet.allocator import freed_memory_retained, retain_freed_memory
retained = retain_freed_memory()
assert freed_memory_retained() == retained
libc = ctypes.CDLL(None)
fields = "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost"
class Info(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in fields.split()]
libc.mallinfo2.restype = Info
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = (ctypes.c_size_t,)
blocks = []
worker = threading.Thread(target=lambda: blocks.append(libc.malloc(48 << 20)))
worker.start()
worker.join()
print(retained, libc.mallinfo2().hblkhd)
"""


def _probe(extra_env: dict) -> tuple[str, int]:
    env = {k: v for k, v in os.environ.items() if k not in USER_SETTINGS}
    result = subprocess.run(
        [sys.executable, "-c", _PROBE],
        env={**env, **extra_env},
        capture_output=True,
        text=True,
        check=True,
    )
    retained, mmapped = result.stdout.split()
    return retained, int(mmapped)


def test_retained_block_comes_from_the_heap():
    retained, mmapped = _probe({})
    assert retained == "True"
    assert mmapped < 48 << 20


def test_opting_out_keeps_glibc_default_which_mmaps_the_block():
    retained, mmapped = _probe({"VMCJET_SYSTEM_MALLOC": "1"})
    assert retained == "False"
    assert mmapped >= 48 << 20
