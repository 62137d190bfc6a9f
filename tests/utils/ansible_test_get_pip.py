# SPDX-License-Identifier: GPL-3.0-or-later
"""Offline stand-in for ansible-test's pip bootstrap script (``get-pip-<version>.py``).

ansible-test bootstraps pip in each sanity virtualenv by downloading a ``get-pip`` script from
a CI file server that this build environment cannot reach (only the package registries are
reachable). ``make sanity`` copies this file to ``~/.ansible/test/cache/get_pip_<version>.py``,
which ansible-test uses as its cached bootstrap script. It does what get-pip does with the same
arguments: put pip into the running interpreter's environment (from the stdlib's ``ensurepip``)
and then ``pip install`` the requested packages (``pip==<version>`` among them) from PyPI.
"""
import ensurepip
import os
import ssl
import subprocess
import sys


def _site_config():
    """Give the new virtualenv the machine's CA bundle (ansible-test runs pip with a clean env)."""
    candidates = (os.environ.get('PIP_CERT'), os.environ.get('SSL_CERT_FILE'),
                  '/etc/ssl/certs/ca-certificates.crt', '/etc/pki/tls/certs/ca-bundle.crt',
                  ssl.get_default_verify_paths().openssl_cafile)
    for candidate in candidates:
        if candidate and os.path.isfile(candidate):
            with open(os.path.join(sys.prefix, 'pip.conf'), 'w') as handle:
                handle.write('[global]\ncert = %s\n' % candidate)
            return


def main(argv):
    args = [a for a in argv if a not in ('--no-setuptools', '--no-wheel')]
    _site_config()
    env = dict(os.environ)
    ensurepip.bootstrap(upgrade=True, default_pip=True)  # sets PIP_CONFIG_FILE=/dev/null in os.environ
    return subprocess.call([sys.executable, '-m', 'pip', 'install'] + args, env=env)


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
