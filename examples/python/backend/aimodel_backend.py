"""The in-tree PEP 517 build backend of the aimodel Python package.

pyproject.toml names it (build-backend = "aimodel_backend", backend-path =
["backend"], requires = []), so `pip install examples/python` needs nothing
downloaded: this file uses the standard library only.

build_wheel builds the C library from the checkout the package folder sits
in (make -C <checkout> lib BUILD=<a temporary directory>) and writes a wheel
(PEP 427: a zip holding aimodel/ and aimodel-<version>.dist-info/ with
METADATA, WHEEL and RECORD) that carries libaimodel.so.<major>, the real
file, beside the Python code; the wheel is tagged for this platform
(py3-none-<platform>), since it holds machine code. The version is the C
library's (AIM_VERSION_STRING in include/aimodel.h).

build_editable (PEP 660) builds the library into the checkout's own build/
(make -C <checkout> lib) and writes a wheel holding only a .pth file that
puts examples/python on sys.path: `import aimodel` then runs the checkout's
code and, carrying no library, loads the checkout's build/libaimodel.so.1
(see the package's loading order), which `make` keeps current.

No sdist: the package builds from a checkout, where the library's sources
are.
"""

import base64
import glob
import hashlib
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import zipfile

NAME = "aimodel"
HERE = os.path.dirname(os.path.abspath(__file__))
PACKAGE_ROOT = os.path.dirname(HERE)                      # examples/python
CHECKOUT = os.path.dirname(os.path.dirname(PACKAGE_ROOT))  # the repository
# Zip entries get a fixed date (the zip format's earliest, 1980-01-01), or
# SOURCE_DATE_EPOCH's, so two builds of one checkout give the same files.
_EPOCH = (1980, 1, 1, 0, 0, 0)


class BuildError(RuntimeError):
    """The wheel cannot be built; the message says why and what to do."""


def _checkout():
    """The checkout's root, or BuildError when the package folder is not in one."""
    header = os.path.join(CHECKOUT, "include", "aimodel.h")
    if not (os.path.isfile(header) and os.path.isfile(os.path.join(CHECKOUT, "Makefile"))):
        raise BuildError("the aimodel package builds libaimodel from the checkout it sits in (examples/python of "
                         "a libaimodel repository), but %s has no include/aimodel.h and Makefile. Install from a "
                         "checkout: pip install <libaimodel>/examples/python" % CHECKOUT)
    return CHECKOUT


def version():
    """The C library's version, AIM_VERSION_STRING of include/aimodel.h."""
    with open(os.path.join(_checkout(), "include", "aimodel.h"), encoding="utf-8") as f:
        match = re.search(r'^#define AIM_VERSION_STRING "(\d+\.\d+\.\d+)"', f.read(), re.M)
    if not match:
        raise BuildError("include/aimodel.h has no #define AIM_VERSION_STRING \"X.Y.Z\"")
    return match.group(1)


def _project():
    """The [project] table of pyproject.toml."""
    try:
        import tomllib
    except ImportError:
        raise BuildError("the in-tree backend reads pyproject.toml with tomllib: build with Python 3.11 or "
                         "newer (Debian 12's /usr/bin/python3)") from None
    with open(os.path.join(PACKAGE_ROOT, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)["project"]


def _metadata(ver):
    """METADATA (core metadata 2.1) from pyproject's [project] and the README."""
    project = _project()
    lines = ["Metadata-Version: 2.1", "Name: %s" % project["name"], "Version: %s" % ver,
             "Summary: %s" % project.get("description", "")]
    if "license" in project:
        lines.append("License: %s" % project["license"].get("text", ""))
    if "requires-python" in project:
        lines.append("Requires-Python: %s" % project["requires-python"])
    lines += ["Requires-Dist: %s" % dep for dep in project.get("dependencies", [])]
    readme = os.path.join(PACKAGE_ROOT, project.get("readme", "README.md"))
    body = ""
    if os.path.isfile(readme):
        lines.append("Description-Content-Type: text/markdown")
        with open(readme, encoding="utf-8") as f:
            body = f.read()
    return "\n".join(lines) + "\n\n" + body


def platform_tag():
    """This platform's wheel tag, e.g. linux_x86_64."""
    return re.sub(r"[^A-Za-z0-9_]", "_", sysconfig.get_platform())


def _make(args, what):
    """Runs make in the checkout with `args`; BuildError with make's last
    lines and what to do when it fails. The environment of an enclosing make
    (MAKEFLAGS: e.g. SANITIZE=1 from `make test SANITIZE=1`) is dropped, so
    the library is the plain one."""
    make = shutil.which("make")
    if make is None:
        raise BuildError("building libaimodel needs make and a C compiler (Debian: apt-get install -y build-essential)")
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES")}
    jobs = "-j%d" % max(1, os.cpu_count() or 1)
    command = [make, "-C", _checkout(), jobs] + args
    print("aimodel: %s: %s" % (what, " ".join(command)), file=sys.stderr)
    result = subprocess.run(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    sys.stderr.write(result.stdout)
    if result.returncode != 0:
        tail = "\n".join(result.stdout.strip().splitlines()[-15:])
        raise BuildError("building libaimodel failed (%s exited with %d):\n%s\nThe C build needs the packages of "
                         "`make deps-build` (OpenBLAS, zlib, pkg-config; run it as root); fix the error above and "
                         "run pip again." % (" ".join(command), result.returncode, tail))


def _built_library(build, ver):
    """The real file libaimodel.so.X.Y.Z make wrote into `build`."""
    path = os.path.join(build, "libaimodel.so.%s" % ver)
    if not os.path.isfile(path) or os.path.islink(path):
        found = sorted(glob.glob(os.path.join(build, "libaimodel.so*")))
        raise BuildError("make lib did not write %s (found: %s); is include/aimodel.h's version the Makefile's?"
                         % (path, ", ".join(found) or "nothing"))
    return path


def _record_line(arcname, data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode("ascii")
    return "%s,sha256=%s,%d" % (arcname, digest, len(data))


class _Wheel:
    """A wheel being written: files added with their RECORD lines, the
    dist-info last."""

    def __init__(self, directory, ver, tag):
        self.ver = ver
        self.tag = tag
        self.basename = "%s-%s-%s.whl" % (NAME, ver, tag)
        self.path = os.path.join(directory, self.basename)
        self.zip = zipfile.ZipFile(self.path, "w", compression=zipfile.ZIP_DEFLATED)
        self.records = []
        epoch = os.environ.get("SOURCE_DATE_EPOCH")
        import time
        self.date = time.gmtime(int(epoch))[:6] if epoch else _EPOCH

    def add(self, arcname, data, mode=0o644):
        info = zipfile.ZipInfo(arcname, date_time=self.date)
        info.external_attr = (0o100000 | mode) << 16  # a regular file with these permissions
        info.compress_type = zipfile.ZIP_DEFLATED
        self.zip.writestr(info, data)
        self.records.append(_record_line(arcname, data))

    def close(self, metadata, purelib):
        dist_info = "%s-%s.dist-info" % (NAME, self.ver)
        wheel = "Wheel-Version: 1.0\nGenerator: aimodel_backend (in-tree)\nRoot-Is-Purelib: %s\nTag: %s\n" % (
            "true" if purelib else "false", self.tag)
        self.add(dist_info + "/METADATA", metadata.encode("utf-8"))
        self.add(dist_info + "/WHEEL", wheel.encode("utf-8"))
        self.add(dist_info + "/top_level.txt", (NAME + "\n").encode("utf-8"))
        record = dist_info + "/RECORD"
        self.records.append(record + ",,")
        info = zipfile.ZipInfo(record, date_time=self.date)
        info.external_attr = (0o100000 | 0o644) << 16
        self.zip.writestr(info, "\n".join(self.records) + "\n", compress_type=zipfile.ZIP_DEFLATED)
        self.zip.close()
        return self.basename


def _package_files():
    """The package's Python files, relative to examples/python, sorted."""
    files = []
    for root, dirs, names in os.walk(os.path.join(PACKAGE_ROOT, NAME)):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        files += [os.path.join(root, n) for n in sorted(names) if n.endswith(".py")]
    return [os.path.relpath(f, PACKAGE_ROOT) for f in files]


# ---- PEP 517 hooks ----------------------------------------------------------

def get_requires_for_build_wheel(config_settings=None):
    """Nothing to install before build_wheel: the standard library does it."""
    return []


def get_requires_for_build_editable(config_settings=None):
    """Nothing to install before build_editable."""
    return []


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    """Builds libaimodel into a temporary directory and writes
    aimodel-<version>-py3-none-<platform>.whl, carrying it, into
    `wheel_directory`; returns the file's name."""
    ver = version()
    build = tempfile.mkdtemp(prefix="aimodel-wheel-")
    try:
        _make(["lib", "BUILD=%s" % build], "building libaimodel for the wheel")
        library = _built_library(build, ver)
        with open(library, "rb") as f:
            library_bytes = f.read()
        soname = "libaimodel.so.%s" % ver.split(".")[0]
        wheel = _Wheel(wheel_directory, ver, "py3-none-%s" % platform_tag())
        for rel in _package_files():
            with open(os.path.join(PACKAGE_ROOT, rel), "rb") as f:
                wheel.add(rel.replace(os.sep, "/"), f.read())
        wheel.add("%s/%s" % (NAME, soname), library_bytes, mode=0o755)
        return wheel.close(_metadata(ver), purelib=False)
    finally:
        shutil.rmtree(build, ignore_errors=True)


def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    """Builds libaimodel into the checkout's build/ (make lib) and writes an
    editable wheel: a .pth file naming examples/python. Returns its name."""
    ver = version()
    _make(["lib"], "building libaimodel into the checkout's build/ for an editable install")
    _built_library(os.path.join(_checkout(), "build"), ver)
    wheel = _Wheel(wheel_directory, ver, "py3-none-%s" % platform_tag())
    wheel.add("_aimodel_editable.pth", (PACKAGE_ROOT + "\n").encode("utf-8"))
    return wheel.close(_metadata(ver), purelib=True)
