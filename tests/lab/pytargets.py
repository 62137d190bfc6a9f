# SPDX-License-Identifier: GPL-3.0-or-later
"""Real old target Pythons for the lab: CPython 2.7 (el7) and 3.6 (el8) with libvirt-python and lxml.

Built once from the machine image's pyenv interpreters, cached outside the work tree under
/var/cache/virtlab/pytargets/<target>-<versions>-<recipe hash>/, so that a second `make` finds them
and does not rebuild. Lab hosts cannot see /root (each host has a private /root), so the whole
interpreter prefix is copied (its lib/ holds libpython) and every ELF file's RUNPATH that pointed
into the pyenv prefix is rewritten to $ORIGIN-relative (patchelf). The build is checked by
importing libvirt and lxml with /root hidden (tmpfs over it in a private mount namespace).

CLI:  pytargets.py build [py27|py36 ...]   build what is missing (prints SKIP with the reason
                                           when pyenv or its interpreter is absent; exit 0)
      pytargets.py path TARGET             print the interpreter path (exit 1 if not built)
      pytargets.py show                    the manifest of every built target as JSON
API:  pytargets.interpreter("py27") -> path or None; pytargets.skip_reason("py27") -> str or None

Stdlib only; runs with Debian's /usr/bin/python3 as root. Needs gcc, pkg-config, libvirt-dev,
patchelf (`make apt`) and PyPI.
"""
from __future__ import print_function

import argparse
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile

CACHE = os.environ.get("VIRTLAB_CACHE", "/var/cache/virtlab")
ROOT = os.path.join(CACHE, "pytargets")

# Pinned recipes. Changing anything here changes the hash in the directory name: a rebuild.
TARGETS = {
    "py27": {
        "python": "2.7.18",          # pyenv version (CentOS 7: python 2.7.5)
        "pip": "20.3.4",             # the last pip for Python 2.7 (knows manylinux2014 wheels)
        "wheels": ["lxml==4.9.4"],   # lxml<5: the last with Python 2.7 wheels
        "libvirt_python": "5.10.0",  # the last libvirt-python with Python 2 support
        "patch_generator": True,
    },
    "py36": {
        "python": "3.6.15",          # pyenv version (EL8 platform-python: 3.6.8)
        "pip": "21.3.1",             # the last pip for Python 3.6
        "wheels": ["lxml==5.0.2"],
        "libvirt_python": "9.0.0",   # the version of Debian 12's libvirt the lab runs
        "patch_generator": False,
    },
}
RECIPE_REVISION = 2  # bump when the build steps below change

# libvirt-python 5.10.0's generator.py wraps every function listed in libvirt-api.xml of the
# libvirt it builds against (Debian 12: 9.0), not only those it knows. Functions newer than 5.10
# that need hand-written wrappers or use types it has no converter for are listed as "failed",
# and buildStubs() returns -1, which stops the build. Worse, a newer function it can wrap may get
# the Python name of an old one: virNodeDeviceDefineXML (libvirt 7.3) becomes a second
# virConnect.defineXML that replaces the domain one (virDomainDefineXML), which a libvirt-python
# 5.10 on a real EL7 never has. The patch makes the parser drop every <function> whose
# version='...' attribute (the libvirt release that added it) is newer than 5.10.0, so the
# binding is exactly 5.10's API; the generator's own checks stay fatal.
GENERATOR_PATCH = [
    ("            if 'module' in attrs.keys():\n"
     "                self.function_module= attrs['module']\n",
     "            if 'module' in attrs.keys():\n"
     "                self.function_module= attrs['module']\n"
     "            # virtlab (tests/lab/pytargets.py): APIs newer than this binding are left out\n"
     "            if 'version' in attrs.keys() and \\\n"
     "                    tuple(int(v) for v in attrs['version'].split('.')) > (5, 10, 0):\n"
     "                self.function = None\n"),
]


# Personas whose target Python is one of these real interpreters. ansible-core 2.17 dropped
# Python 2.7 and 3.6 targets: under a newer controller those hosts run modules on the machine's
# /usr/bin/python3 (Debian's 3.11) instead, which is an emulation (tests/lab/README.md).
PERSONA_TARGETS = {"el7": "py27", "el8": "py36"}
FIRST_CORE_WITHOUT = "2.17"


def python_hostvars(persona, fallback):
    """Inventory host vars choosing the persona's interpreter: [(key, value)].

    ``virtlab_target_python`` is the real old interpreter ('' when not built here, with
    ``virtlab_target_python_skip`` saying why), ``ansible_python_interpreter`` picks it when the
    controller's ansible-core can still run modules on it."""
    target = PERSONA_TARGETS.get(persona)
    if not target:
        return [("ansible_python_interpreter", fallback)]
    path = interpreter(target)
    if not path:
        return [("ansible_python_interpreter", fallback), ("virtlab_target_python", ""),
                ("virtlab_target_python_skip", skip_reason(target))]
    expr = ("{{ virtlab_target_python if ansible_version.full is version('%s', '<') else '%s' }}"
            % (FIRST_CORE_WITHOUT, fallback))
    return [("ansible_python_interpreter", expr), ("virtlab_target_python", path),
            ("virtlab_target_python_version", TARGETS[target]["python"])]


def recipe_key(target):
    r = dict(TARGETS[target], revision=RECIPE_REVISION, patch=GENERATOR_PATCH)
    digest = hashlib.sha256(json.dumps(r, sort_keys=True).encode()).hexdigest()[:10]
    t = TARGETS[target]
    return "%s-cpython%s-libvirt%s-%s-%s" % (target, t["python"], t["libvirt_python"],
                                             "-".join(w.replace("==", "") for w in t["wheels"]), digest)


def target_dir(target):
    return os.path.join(ROOT, recipe_key(target))


def _exe(target):
    return os.path.join(target_dir(target), "bin", "python" + TARGETS[target]["python"].rsplit(".", 1)[0])


def interpreter(target):
    """Path of the built interpreter, or None when it is not built (see skip_reason)."""
    path = _exe(target)
    ok = os.path.exists(os.path.join(target_dir(target), "manifest.json"))
    return path if ok and os.access(path, os.X_OK) else None


def manifest(target):
    try:
        with open(os.path.join(target_dir(target), "manifest.json")) as f:
            return json.load(f)
    except (IOError, OSError, ValueError):
        return None


def _pyenv():
    root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    for cand in (shutil.which("pyenv"), os.path.join(root, "bin", "pyenv")):
        if cand and os.access(cand, os.X_OK):
            return cand
    return None


def pyenv_prefix(version):
    """(prefix, None) or (None, reason)."""
    pyenv = _pyenv()
    if not pyenv:
        return None, "pyenv is not installed (no `pyenv` on PATH nor in $PYENV_ROOT/bin)"
    p = subprocess.run([pyenv, "prefix", version], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       universal_newlines=True, check=False)
    prefix = p.stdout.strip()
    if p.returncode != 0 or not os.path.isdir(prefix):
        detail = (p.stderr or p.stdout).strip()
        return None, "pyenv has no CPython %s (`pyenv prefix %s`: %s)" % (version, version, detail)
    return prefix, None


def skip_reason(target):
    """Why the target cannot be used here, or None when it is built."""
    if interpreter(target):
        return None
    prefix, why = pyenv_prefix(TARGETS[target]["python"])
    if why:
        return why
    return "%s is not built yet (run `%s %s build %s`)" % (target, sys.executable, os.path.abspath(__file__), target)


def _run(argv, **kw):
    print("+ " + " ".join(argv), flush=True)
    subprocess.run(argv, check=True, **kw)


def _is_elf(path):
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"\x7fELF"
    except (IOError, OSError):
        return False


def fix_runpaths(tree, old_prefix):
    """Every ELF file under tree whose RUNPATH/RPATH points into old_prefix gets $ORIGIN-relative paths."""
    fixed = 0
    for dirpath, dirs, files in os.walk(tree):
        for name in files:
            path = os.path.join(dirpath, name)
            if os.path.islink(path) or not _is_elf(path):
                continue
            p = subprocess.run(["patchelf", "--print-rpath", path], stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, universal_newlines=True, check=False)
            rpath = p.stdout.strip()
            if p.returncode != 0 or old_prefix not in rpath:
                continue
            new = []
            for entry in rpath.split(":"):
                if entry.startswith(old_prefix):
                    dest = os.path.join(tree, os.path.relpath(entry, old_prefix))
                    entry = "$ORIGIN/" + os.path.relpath(dest, dirpath)
                if entry not in new:
                    new.append(entry)
            subprocess.run(["patchelf", "--set-rpath", ":".join(new), path], check=True)
            fixed += 1
    return fixed


def _download_pip():
    for py in (sys.executable, "/usr/bin/python3"):
        if py and subprocess.run([py, "-m", "pip", "--version"], stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL, check=False).returncode == 0:
            return [py, "-m", "pip", "--no-cache-dir"]
    raise RuntimeError("no pip to download the libvirt-python sdist with (python3-pip)")


def patch_generator(src):
    path = os.path.join(src, "generator.py")
    with open(path) as f:
        text = f.read()
    for old, new in GENERATOR_PATCH:
        if old not in text:
            raise RuntimeError("generator.py of %s does not contain the expected block %r" % (src, old))
        text = text.replace(old, new)
    with open(path, "w") as f:
        f.write(text)


VERIFY = r"""
import inspect, json, platform, sys
import libvirt, lxml.etree, pkg_resources
# every generated method is the one for its own C function (see GENERATOR_PATCH)
assert "virDomainDefineXML(" in inspect.getsource(libvirt.virConnect.defineXML)
print(json.dumps({"python": platform.python_version(), "executable": sys.executable,
                  "libvirt_python": pkg_resources.get_distribution("libvirt-python").version,
                  "libvirt_library": ".".join(str(x) for x in (
                      libvirt.getVersion() // 1000000, libvirt.getVersion() // 1000 % 1000,
                      libvirt.getVersion() % 1000)),
                  "libvirt_python_module": getattr(libvirt, "__file__", ""),
                  "lxml": ".".join(str(x) for x in lxml.etree.LXML_VERSION[:3]),
                  "libxml2": ".".join(str(x) for x in lxml.etree.LIBXML_VERSION)}))
"""


def verify(exe):
    """Import libvirt and lxml with /root hidden, as a lab host sees the machine."""
    p = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                        'mount -t tmpfs tmpfs /root && exec "$0" -c "$1"', exe, VERIFY],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                       env={"PATH": "/usr/bin:/bin", "LC_ALL": "C"}, check=False)
    if p.returncode != 0:
        raise RuntimeError("%s cannot import libvirt/lxml with /root hidden:\n%s%s" % (exe, p.stdout, p.stderr))
    return json.loads(p.stdout.strip().splitlines()[-1])


def build(target):
    t = TARGETS[target]
    dest = target_dir(target)
    if interpreter(target):
        print("%s: cached in %s" % (target, dest))
        return dest
    prefix, why = pyenv_prefix(t["python"])
    if why:
        print("SKIP %s target (CPython %s): %s" % (target, t["python"], why))
        return None
    missing = [tool for tool in ("gcc", "pkg-config", "patchelf", "unshare") if not shutil.which(tool)]
    if missing or subprocess.run(["pkg-config", "--exists", "libvirt"], check=False).returncode != 0:
        raise RuntimeError("%s: needs %s and libvirt-dev (run `make apt`)" % (target, ", ".join(missing) or "gcc"))
    os.makedirs(ROOT, exist_ok=True)
    work = tempfile.mkdtemp(prefix=".%s-" % target, dir=ROOT)
    try:
        tree = os.path.join(work, "tree")
        print("%s: copying %s" % (target, prefix), flush=True)
        shutil.copytree(prefix, tree, symlinks=True)
        for d in ("lib/python%s/test" % t["python"].rsplit(".", 1)[0],):  # the stdlib's own tests: 30-40 MB
            shutil.rmtree(os.path.join(tree, d), ignore_errors=True)
        fix_runpaths(tree, prefix)
        py = os.path.join(tree, "bin", "python" + t["python"].rsplit(".", 1)[0])
        env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1", PYTHONNOUSERSITE="1")
        env.pop("PYTHONPATH", None)
        pip = [py, "-m", "pip", "--no-cache-dir"]
        _run(pip + ["install", "-q", "pip==" + t["pip"]], env=env)
        _run(pip + ["install", "-q", "--only-binary", ":all:"] + t["wheels"], env=env)
        sdist = os.path.join(work, "sdist")
        # pip 20.3.4 on 2.7 trips an assertion in `pip download` of an sdist: fetch it with ours
        download = ["download", "-q", "--no-deps", "--no-binary", ":all:", "-d", sdist,
                    "libvirt-python==" + t["libvirt_python"]]
        _run(_download_pip() + download, env=env)
        archive = [f for f in os.listdir(sdist) if f.endswith(".tar.gz")][0]
        _run(["tar", "-xzf", os.path.join(sdist, archive), "-C", sdist])
        src = os.path.join(sdist, archive[:-len(".tar.gz")])
        if t["patch_generator"]:
            patch_generator(src)
        _run(pip + ["install", "-q", "--no-build-isolation", "--no-deps", "--no-index", src], env=env)
        fix_runpaths(tree, prefix)
        shutil.rmtree(dest, ignore_errors=True)
        os.rename(tree, dest)  # checked where the lab hosts will run it; manifest.json marks it done
        exe = os.path.join(dest, "bin", os.path.basename(py))
        try:
            info = verify(exe)
            if info["libvirt_python"] != t["libvirt_python"] or info["python"] != t["python"]:
                raise RuntimeError("%s: built %s, expected %s" % (target, info, t))
        except Exception:
            shutil.rmtree(dest, ignore_errors=True)
            raise
        info.update(target=target, recipe=recipe_key(target), pyenv_prefix=prefix)
        with open(os.path.join(dest, "manifest.json"), "w") as f:
            json.dump(info, f, indent=1, sort_keys=True)
        for old in os.listdir(ROOT):  # builds of older recipes of this target
            if old.startswith(target + "-") and old != os.path.basename(dest):
                shutil.rmtree(os.path.join(ROOT, old), ignore_errors=True)
        print("%s: built %s" % (target, json.dumps(info, sort_keys=True)), flush=True)
        return dest
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    sub = ap.add_subparsers(dest="cmd")
    b = sub.add_parser("build")
    b.add_argument("targets", nargs="*", metavar="TARGET", help=" | ".join(sorted(TARGETS)))
    pp = sub.add_parser("path")
    pp.add_argument("target", choices=sorted(TARGETS))
    sub.add_parser("show")
    a = ap.parse_args(argv)
    if a.cmd == "build":
        unknown = [t for t in a.targets if t not in TARGETS]
        if unknown:
            ap.error("unknown target(s) %s (known: %s)" % (", ".join(unknown), ", ".join(sorted(TARGETS))))
        os.makedirs(ROOT, exist_ok=True)
        with open(os.path.join(ROOT, ".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # parallel makes / workers build once
            for target in a.targets or sorted(TARGETS):
                build(target)
        return 0
    if a.cmd == "path":
        path = interpreter(a.target)
        if not path:
            print(skip_reason(a.target), file=sys.stderr)
            return 1
        print(path)
        return 0
    if a.cmd == "show":
        print(json.dumps({t: manifest(t) for t in sorted(TARGETS)}, indent=1, sort_keys=True))
        return 0
    ap.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
