"""retain_freed_memory: a large block freed by the process is reused from the heap, not mmap'd."""

import os
import subprocess
import sys

import pytest

from vmcjet.allocator import USER_SETTINGS

# Allocates 64 MiB after (maybe) retaining, and prints whether the retain call took effect and how
# many bytes glibc then holds in mmap'd blocks (mallinfo2().hblkhd).
_PROBE = """
import ctypes, sys
from vmcjet.allocator import retain_freed_memory
retained = retain_freed_memory()
libc = ctypes.CDLL(None)
fields = "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost"
class Info(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in fields.split()]
libc.mallinfo2.restype = Info
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = (ctypes.c_size_t,)
block = libc.malloc(64 << 20)
from vmcjet.allocator import freed_memory_retained
assert freed_memory_retained() == retained
print(retained, libc.mallinfo2().hblkhd)
"""


def _probe(extra_env: dict) -> tuple[str, int]:
    env = {k: v for k, v in os.environ.items() if k not in USER_SETTINGS}
    result = subprocess.run(
        [sys.executable, "-c", _PROBE], env={**env, **extra_env}, capture_output=True, text=True
    )
    if result.returncode != 0:
        pytest.skip(f"no glibc mallinfo2 here: {result.stderr.strip().splitlines()[-1]}")
    retained, mmapped = result.stdout.split()
    return retained, int(mmapped)


def test_retained_block_comes_from_the_heap():
    retained, mmapped = _probe({})
    if retained != "True":
        pytest.skip("no glibc mallopt here")
    assert mmapped < 64 << 20


def test_opting_out_keeps_glibc_default_which_mmaps_the_block():
    retained, mmapped = _probe({"VMCJET_SYSTEM_MALLOC": "1"})
    assert retained == "False"
    assert mmapped >= 64 << 20
