"""The package: the loading order and its ImportError, the in-tree backend's
wheel (zip, dist-info, RECORD, the carried library) and that wheel installed
into a virtual environment, imported and trained from another directory.

The library under test is $AIMODEL_LIB (`make test` sets it to the one it
built); the wheel test builds its own with the backend (make lib into a
temporary directory)."""

import base64
import hashlib
import os
import re
import shutil
import subprocess
import sys
import zipfile

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
CHECKOUT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import aimodel as aim  # noqa: E402

sys.path.insert(0, os.path.join(HERE, "backend"))
import aimodel_backend  # noqa: E402


def clean_env(**extra):
    """The environment without AIMODEL_LIB and PYTHONPATH (and make's), plus `extra`."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("AIMODEL_LIB", "PYTHONPATH", "MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.update(extra)
    return env


def run_python(python, code, cwd="/", **env):
    """Runs `code` with `python` in `cwd`; (returncode, stdout + stderr)."""
    result = subprocess.run([python, "-c", code], cwd=cwd, env=clean_env(**env), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, timeout=300)
    return result.returncode, result.stdout


def header_version():
    with open(os.path.join(CHECKOUT, "include", "aimodel.h")) as f:
        return re.search(r'#define AIM_VERSION_STRING "([0-9.]+)"', f.read()).group(1)


def test_candidates_in_order():
    saved = os.environ.pop("AIMODEL_LIB", None)
    try:
        paths = [path for path, from_env in aim._library_candidates()]
    finally:
        if saved is not None:
            os.environ["AIMODEL_LIB"] = saved
    package = os.path.dirname(aim.__file__)
    assert paths[0] == os.path.join(package, "libaimodel.so.1")                  # carried
    build = os.path.join(CHECKOUT, "build")
    assert paths[-2:] == [os.path.join(build, "libaimodel.so.1"), os.path.join(build, "libaimodel.so")]
    assert len(paths) in (3, 4)                                                  # + find_library's, if any
    os.environ["AIMODEL_LIB"] = "/somewhere/libaimodel.so.1"
    try:
        assert aim._library_candidates() == [("/somewhere/libaimodel.so.1", True)]
    finally:
        if saved is None:
            del os.environ["AIMODEL_LIB"]
        else:
            os.environ["AIMODEL_LIB"] = saved


def test_a_missing_aimodel_lib_says_what_to_do():
    code, out = run_python(sys.executable, "import sys; sys.path.insert(0, %r); import aimodel" % HERE,
                           AIMODEL_LIB="/nonexistent/libaimodel.so.1")
    assert code != 0
    assert "ImportError: AIMODEL_LIB=/nonexistent/libaimodel.so.1 cannot be loaded" in out, out
    assert "pip install examples/python" in out and "make" in out, out


def test_a_copied_folder_lists_what_it_tried(tmp_path):
    shutil.copytree(os.path.join(HERE, "aimodel"), tmp_path / "aimodel",
                    ignore=shutil.ignore_patterns("__pycache__", "*.so*"))
    code, out = run_python(sys.executable, "import aimodel; print('loaded', aimodel.library_path())",
                           cwd=str(tmp_path))
    import ctypes.util
    if ctypes.util.find_library("aimodel"):                                      # an installed copy serves it
        assert code == 0 and "loaded " in out, out
        return
    assert code != 0
    assert "libaimodel 1.x not found; tried:" in out, out
    assert str(tmp_path / "aimodel" / "libaimodel.so.1") in out, out              # the carried place
    assert 'ctypes.util.find_library("aimodel") found none' in out, out
    assert "is not examples/python/aimodel of a libaimodel checkout" in out, out
    assert "pip install examples/python" in out and "AIMODEL_LIB=" in out, out


def test_a_copied_folder_loads_the_library_it_carries(tmp_path):
    shutil.copytree(os.path.join(HERE, "aimodel"), tmp_path / "aimodel",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copyfile(aim.library_path(), tmp_path / "aimodel" / "libaimodel.so.1")
    code, out = run_python(sys.executable, "import aimodel; print(aimodel.library_path()); print(aimodel.version())",
                           cwd=str(tmp_path))
    assert code == 0, out
    assert out.split() == [str(tmp_path / "aimodel" / "libaimodel.so.1"), aim.version()]


def test_a_failing_c_build_is_a_clear_error():
    with pytest.raises(aimodel_backend.BuildError, match="building libaimodel failed .*no-such-target"):
        aimodel_backend._make(["no-such-target"], "a target that does not exist")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """The wheel the backend builds (make lib into a temporary directory)."""
    directory = tmp_path_factory.mktemp("wheel")
    name = aimodel_backend.build_wheel(str(directory))
    return os.path.join(str(directory), name)


def test_the_wheel_carries_the_library(wheel):
    ver = header_version()
    assert os.path.basename(wheel) == "aimodel-%s-py3-none-%s.whl" % (ver, aimodel_backend.platform_tag())
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        dist = "aimodel-%s.dist-info/" % ver
        assert sorted(names) == sorted(["aimodel/__init__.py", "aimodel/_keras.py", "aimodel/progress.py",
                                        "aimodel/libaimodel.so.1", dist + "METADATA", dist + "WHEEL",
                                        dist + "top_level.txt", dist + "RECORD"])
        metadata = z.read(dist + "METADATA").decode()
        assert "\nName: aimodel\n" in metadata and "\nVersion: %s\n" % ver in metadata
        assert "\nRequires-Dist: numpy\n" in metadata
        wheel_file = z.read(dist + "WHEEL").decode()
        assert "Root-Is-Purelib: false" in wheel_file
        assert "Tag: py3-none-%s" % aimodel_backend.platform_tag() in wheel_file
        # RECORD: every other file with its sha256 and size
        records = {}
        for line in z.read(dist + "RECORD").decode().splitlines():
            path, digest, size = line.rsplit(",", 2)
            records[path] = (digest, size)
        assert records.pop(dist + "RECORD") == ("", "")
        assert sorted(records) == sorted(n for n in names if n != dist + "RECORD")
        for path, (digest, size) in records.items():
            data = z.read(path)
            expected = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            assert digest == "sha256=" + expected and int(size) == len(data), path
        info = z.getinfo("aimodel/libaimodel.so.1")
        mode = info.external_attr >> 16
        assert mode & 0o170000 == 0o100000 and mode & 0o111, oct(mode)            # a regular executable file
        library = z.read("aimodel/libaimodel.so.1")
        assert library[:4] == b"\x7fELF" and b"libaimodel.so.1\x00" in library and len(library) > 100000
        assert z.read("aimodel/__init__.py") == open(os.path.join(HERE, "aimodel", "__init__.py"), "rb").read()


def test_the_wheel_installs_into_a_venv_and_runs_from_elsewhere(wheel, tmp_path):
    venv = tmp_path / "venv"
    made = subprocess.run(["/usr/bin/python3", "-m", "venv", "--system-site-packages", str(venv)],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if made.returncode != 0 and "ensurepip" in made.stdout:
        pytest.skip("no venv with pip here (Debian: apt-get install python3-venv): %s" % made.stdout.strip())
    assert made.returncode == 0, made.stdout
    pip = subprocess.run([str(venv / "bin" / "pip"), "install", "--no-index", "--no-cache-dir", wheel],
                         env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
    assert pip.returncode == 0, pip.stdout
    code, out = run_python(str(venv / "bin" / "python"), """
import numpy as np, aimodel as aim
print(aim.__file__); print(aim.library_path())
x = np.random.RandomState(0).randn(64, 3).astype(np.float32)
y = (x[:, 0] > 0).astype(np.int32)
m = aim.Model(3)
m.add_dense(8, "relu").add_dense(2)
m.compile(max_batch=16, seed=1, optimizer=aim.Adam(learning_rate=0.05), loss="sparse_categorical_crossentropy")
h = m.fit(x, y, epochs=5, batch_size=16, verbose=0).history["loss"]
print(h[0] > h[-1])
""")
    assert code == 0, out
    module, library, fell = out.split()
    site = str(venv)
    assert module.startswith(site) and module.endswith("aimodel/__init__.py"), out
    assert library.startswith(site) and library.endswith("aimodel/libaimodel.so.1"), out
    assert fell == "True", out


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
