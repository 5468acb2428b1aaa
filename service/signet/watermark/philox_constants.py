"""The words of vLLM's Philox4x32-10 watermark PRF (``philox.py`` says how they are used).

A module of their own so that both the numpy front end (``philox.py``) and the numba
kernels (``philox_kernels.py``, imported lazily by it) read them without importing
each other.
"""

UINT32_MASK = 0xFFFFFFFF
PHILOX_M0 = 0xD2511F53
PHILOX_M1 = 0xCD9E8D57
PHILOX_W0 = 0x9E3779B9
PHILOX_W1 = 0xBB67AE85
CONTEXT_DOMAIN = 0x574D4358
TOKEN_DOMAIN = 0x574D544B
