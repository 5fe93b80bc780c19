"""Build of the optional C extensions; all other metadata lives in pyproject.toml.

- ``xsnn.kernel._ckernel``: the forward kernel (``xsnn/kernel/_ckernel.c``);
- ``xsnn.solvers._rivalstate``: the rival SAT oracle's helpers (``solvers/_rivalstate.c``),
  beside their numpy references in ``solvers/rivalstate.py``;
- ``xsnn.solvers._ballscan``: the ball enumeration's inner loops (``solvers/_ballscan.c``),
  beside their numpy reference in ``solvers/ballscan.py``.

The extensions use only the CPython C API (buffer protocol), no numpy headers.
A failed compilation logs a warning and the package falls back to the numpy
references, unless the environment sets ``XSNN_REQUIRE_C_KERNEL=1``: then the
build fails.
"""

import os
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

REQUIRE_ENV = "XSNN_REQUIRE_C_KERNEL"


def _required() -> bool:
    return os.environ.get(REQUIRE_ENV, "").strip() not in ("", "0", "false", "no")


class KernelBuildError(RuntimeError):
    """A C extension failed to build while XSNN_REQUIRE_C_KERNEL=1."""


class OptionalBuildExt(build_ext):
    """build_ext that tolerates a failed compilation unless XSNN_REQUIRE_C_KERNEL=1."""

    def run(self):
        try:
            super().run()
        except Exception as exc:  # noqa: BLE001  (no compiler at all lands here)
            self._failed(exc)

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as exc:  # noqa: BLE001
            self._failed(exc)

    def _failed(self, exc):
        if isinstance(exc, KernelBuildError):
            raise exc
        if _required():
            raise KernelBuildError(f"{REQUIRE_ENV} is set and a C extension failed to build: {exc}") from exc
        sys.stderr.write(f"WARNING: an xsnn C extension was not built ({exc}); xsnn will use its numpy reference.\n")


compile_args = [] if sys.platform == "win32" else ["-O3", "-Wall", "-Wno-psabi"]

setup(
    ext_modules=[
        Extension(
            "xsnn.kernel._ckernel",
            sources=["xsnn/kernel/_ckernel.c"],
            extra_compile_args=compile_args,
            optional=not _required(),
        ),
        Extension(
            "xsnn.solvers._rivalstate",
            sources=["solvers/_rivalstate.c"],
            depends=["solvers/_held.h"],
            include_dirs=["solvers"],
            extra_compile_args=compile_args,
            optional=not _required(),
        ),
        Extension(
            "xsnn.solvers._ballscan",
            sources=["solvers/_ballscan.c"],
            depends=["solvers/_held.h"],
            include_dirs=["solvers"],
            extra_compile_args=compile_args,
            optional=not _required(),
        ),
    ],
    cmdclass={"build_ext": OptionalBuildExt},
)
