# SPDX-License-Identifier: GPL-3.0-or-later
"""Run Ansible against a virtlab lab from tests: ad-hoc modules and playbooks, JSON results.

Used by tests/integration/conftest.py (fixtures run_module, run_playbook). Controller side:
the repository's .venv ansible, collections from build/collections, the json stdout callback.
"""
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VENV_BIN = os.path.join(ROOT, ".venv", "bin")
COLLECTIONS = os.path.join(ROOT, "build", "collections")
# The libvirt module suites (test_network*, test_guest_interface) run on one target host per
# pytest session: the first host of persona $VIRTLAB_TARGET (default debian12). CI runs them once
# per persona and ansible-core lane (Makefile: integration, integration-targets).
TARGET_PERSONA = os.environ.get("VIRTLAB_TARGET") or "debian12"
TARGET_HOST = TARGET_PERSONA + "-1"


def _bin(name):
    """The ansible tool of the running interpreter's venv (a lane's .venv-2.16 runs its own
    ansible-core), else the repository's .venv, else PATH."""
    for d in (os.path.dirname(sys.executable), VENV_BIN):
        path = os.path.join(d, name)
        if os.path.exists(path):
            return path
    return name


def ansible_env(lab, **extra):
    env = dict(os.environ)
    env.update({
        "ANSIBLE_COLLECTIONS_PATH": COLLECTIONS,
        "ANSIBLE_HOST_KEY_CHECKING": "False",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
        "ANSIBLE_STDOUT_CALLBACK": "virtlab_json",
        "ANSIBLE_CALLBACK_PLUGINS": os.path.join(ROOT, "tests", "lab", "callback"),
        "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1",
        "ANSIBLE_GATHERING": "explicit",
        "ANSIBLE_DEPRECATION_WARNINGS": "False",
        "ANSIBLE_SYSTEM_WARNINGS": "False",
        "ANSIBLE_LOCALHOST_WARNING": "False",
        "ANSIBLE_INVENTORY_UNPARSED_WARNING": "False",
        "ANSIBLE_PIPELINING": "True",
        "ANSIBLE_TIMEOUT": "30",
        "ANSIBLE_LOCAL_TEMP": os.path.join(lab.dir, "ansible-local"),
        "ANSIBLE_SSH_CONTROL_PATH_DIR": os.path.join(lab.dir, "cp"),
    })
    env.update(extra)
    return env


def _parse_json_output(stdout):
    """The json callback prints one JSON document (warnings may precede it)."""
    start = stdout.find("{")
    if start < 0:
        raise ValueError("no JSON in ansible output:\n%s" % stdout)
    return json.JSONDecoder().raw_decode(stdout[start:])[0]


def _normalise(res):
    res = dict(res or {})
    res.setdefault("changed", False)
    res["failed"] = bool(res.get("failed") or res.get("unreachable"))
    res.setdefault("msg", "")
    return res


def playbook(lab, text_or_path, extra_vars=None, check=False, limit=None, diff=False, timeout=900):
    if os.path.exists(str(text_or_path)) and "\n" not in str(text_or_path):
        path, tmp = text_or_path, None
    else:
        fd, tmp = tempfile.mkstemp(prefix="play-", suffix=".yml", dir=lab.dir)
        with os.fdopen(fd, "w") as f:
            f.write(text_or_path)
        path = tmp
    argv = [_bin("ansible-playbook"), "-i", lab.inventory_path, path]
    if extra_vars:
        argv += ["-e", json.dumps(extra_vars)]
    if check:
        argv.append("--check")
    if diff:
        argv.append("--diff")
    if limit:
        argv += ["--limit", limit if isinstance(limit, str) else ",".join(limit)]
    try:
        p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                           env=ansible_env(lab), timeout=timeout, cwd=ROOT, check=False)
    finally:
        if tmp:
            os.unlink(tmp)
    try:
        doc = _parse_json_output(p.stdout)
    except ValueError:
        raise AssertionError("ansible-playbook rc=%d, no JSON output\nstdout:\n%s\nstderr:\n%s"
                             % (p.returncode, p.stdout, p.stderr))
    tasks, results = [], {}
    for play in doc.get("plays", []):
        for t in play.get("tasks", []):
            name = t["task"]["name"]
            hosts = {h: _normalise(r) for h, r in t.get("hosts", {}).items()}
            tasks.append({"name": name, "action": t["hosts"] and next(iter(t["hosts"].values())).get("action"),
                          "hosts": hosts})
            results.setdefault(name, {}).update(hosts)
    return {"rc": p.returncode, "stats": doc.get("stats", {}), "plays": doc.get("plays", []),
            "tasks": tasks, "results": results, "stdout": p.stdout, "stderr": p.stderr}


def module(lab, host, module_name, check=False, diff=False, become=False, _timeout=600, **args):
    """One module on one host through a generated single-task playbook (json callback).

    Module options go in ``args``; only ``module_name``, ``check``, ``diff``, ``become`` are ours,
    so options such as ``name`` or ``timeout`` reach the module.
    """
    timeout = _timeout
    task = {"name": "run_module", module_name: args, "register": "virtlab_result"}
    if become:
        task["become"] = True
    play = [{"hosts": host, "gather_facts": False, "tasks": [task]}]
    out = playbook(lab, json.dumps(play, indent=1) + "\n", check=check, diff=diff, timeout=timeout)
    res = out["results"].get("run_module", {}).get(host)
    if res is None:
        raise AssertionError("no result for %s (rc=%d)\nstdout:\n%s\nstderr:\n%s"
                             % (host, out["rc"], out["stdout"][-4000:], out["stderr"][-4000:]))
    res.setdefault("diff", {})
    return res
