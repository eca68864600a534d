"""nftables in process, through libnftables: the library the `nft` command itself is built on.

Running `nft -f -` cost 20-40 ms a call here (a process, and nft's start-up reading of the ruleset), the
same script through the library 0.4-0.6 ms; a takeover's SNAT is on the failover's critical path.
The scripts are the same text `nft -f` reads, so errors read the same.

A small ctypes binding of our own: the official one (python3-nftables) is a Debian package that the
project's venv cannot import, and the PyPI copies of it are unofficial. libnftables1 comes with the
`nftables` package (the `nft` binary links it), so every machine that has `nft` has the library.

One context per namespace. The context is created inside the namespace (libnftables opens its netlink
socket there) and every command runs with this thread inside it too, so no library version that opens
its socket late could ever touch the agent's own namespace. A context is not thread-safe: one lock.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import threading
from typing import Optional

from .netlink import open_in

NFT_CTX_DEFAULT = 0
NFT_CTX_OUTPUT_JSON = 1 << 4  # nftables.h


class NftError(RuntimeError):
    pass


@functools.cache
def _library() -> ctypes.CDLL:
    name = ctypes.util.find_library("nftables") or "libnftables.so.1"
    try:
        lib = ctypes.CDLL(name)
    except OSError as err:
        raise NftError(f"libnftables is missing ({err}): install the nftables package (Debian: nftables, libnftables1)") from None
    lib.nft_ctx_new.restype = ctypes.c_void_p
    lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
    lib.nft_ctx_free.argtypes = [ctypes.c_void_p]
    lib.nft_ctx_buffer_output.argtypes = [ctypes.c_void_p]
    lib.nft_ctx_buffer_error.argtypes = [ctypes.c_void_p]
    lib.nft_ctx_get_output_buffer.restype = ctypes.c_char_p
    lib.nft_ctx_get_output_buffer.argtypes = [ctypes.c_void_p]
    lib.nft_ctx_get_error_buffer.restype = ctypes.c_char_p
    lib.nft_ctx_get_error_buffer.argtypes = [ctypes.c_void_p]
    lib.nft_ctx_output_get_flags.restype = ctypes.c_uint
    lib.nft_ctx_output_get_flags.argtypes = [ctypes.c_void_p]
    lib.nft_ctx_output_set_flags.argtypes = [ctypes.c_void_p, ctypes.c_uint]
    lib.nft_run_cmd_from_buffer.restype = ctypes.c_int
    lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    return lib


class Nft:
    """Runs nft scripts in one network namespace (None: the calling thread's own)."""

    def __init__(self, netns: Optional[str] = None) -> None:
        self._netns = netns
        self._lib = _library()
        self._lock = threading.Lock()
        self._ctx = open_in(netns, lambda: self._lib.nft_ctx_new(NFT_CTX_DEFAULT))
        if not self._ctx:
            raise NftError("libnftables could not create a context")
        self._lib.nft_ctx_buffer_output(self._ctx)
        self._lib.nft_ctx_buffer_error(self._ctx)

    def run(self, script: str, *, json_output: bool = False) -> str:
        """Run `script` as one `nft -f` transaction; returns what it printed (only list commands print).

        The library keeps its output buffer between commands and a command that prints nothing leaves the
        previous text there, so output is read only for list commands and errors only on failure."""
        with self._lock:
            if not self._ctx:
                raise NftError("nftables context already closed")
            flags = self._lib.nft_ctx_output_get_flags(self._ctx)
            wanted = flags | NFT_CTX_OUTPUT_JSON if json_output else flags & ~NFT_CTX_OUTPUT_JSON
            if wanted != flags:
                self._lib.nft_ctx_output_set_flags(self._ctx, wanted)
            rc = open_in(self._netns, lambda: self._lib.nft_run_cmd_from_buffer(self._ctx, script.encode()))
            if rc != 0:
                error = (self._lib.nft_ctx_get_error_buffer(self._ctx) or b"").decode(errors="replace").strip()
                raise NftError(f"nft failed: {error}\n--- script ---\n{script}")
            return (self._lib.nft_ctx_get_output_buffer(self._ctx) or b"").decode()

    def close(self) -> None:
        with self._lock:
            if self._ctx:
                self._lib.nft_ctx_free(self._ctx)
                self._ctx = None
