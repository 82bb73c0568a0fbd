"""The Lambda runtime a package is built for: Python version, architecture, and
what follows from them (wheel platform tags, bytecode tag).

Apart from :mod:`lambda_bulkhead._cli._package` so that the command line can offer
the choices without importing the packaging machinery.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ARCHITECTURES", "GLIBC_MINOR", "PYTHON_VERSIONS", "Target"]

#: Lambda's managed Python runtimes that lambda-bulkhead runs on.
PYTHON_VERSIONS = ("3.11", "3.12", "3.13")
#: Lambda's architecture names -> the machine name in wheel tags.
ARCHITECTURES = {"x86_64": "x86_64", "arm64": "aarch64"}
#: glibc of the Amazon Linux under each runtime: python3.11 runs on Amazon
#: Linux 2 (2.26), python3.12 and 3.13 on Amazon Linux 2023 (2.34).  A wheel
#: built for a newer glibc would not load there.
GLIBC_MINOR = {"3.11": 26, "3.12": 34, "3.13": 34}


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    """The Lambda runtime the zip is for."""

    python_version: str  # "3.12"
    architecture: str  # Lambda's name: "x86_64" or "arm64"

    @property
    def nodot(self) -> str:
        return self.python_version.replace(".", "")

    @property
    def pyc_tag(self) -> str:
        """What names this Python's bytecode files: ``mod.cpython-312.pyc``."""
        return f"cpython-{self.nodot}"

    @property
    def platforms(self) -> list[str]:
        """pip ``--platform`` values, newest glibc first: every manylinux tag the
        runtime's glibc loads (pip matches the names literally, so the legacy
        aliases of 2.17, 2.12 and 2.5 are listed too)."""
        machine = ARCHITECTURES[self.architecture]
        oldest = 17 if machine == "aarch64" else 5
        tags = [f"manylinux_2_{minor}_{machine}"
                for minor in range(GLIBC_MINOR[self.python_version], oldest - 1, -1)]
        tags.append(f"manylinux2014_{machine}")
        if machine == "x86_64":
            tags += ["manylinux2010_x86_64", "manylinux1_x86_64"]
        return tags

    def describe(self) -> str:
        glibc = GLIBC_MINOR[self.python_version]
        return f"CPython {self.python_version} on manylinux {self.architecture} (glibc 2.{glibc})"
