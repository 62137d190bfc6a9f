# SPDX-License-Identifier: GPL-3.0-or-later
"""The model is the network module's input: every model key is an option, and every model read
from libvirt's corpus passes the module's argument spec unchanged (network_info output is valid
input to network)."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import glob
import os

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.virtops.virtnet.plugins.module_utils.libvirt import _network as N
from ansible_collections.virtops.virtnet.plugins.modules import network as network_module


def _validator():
    return ArgumentSpecValidator(network_module.argument_spec())


def test_every_model_key_is_an_option():
    spec = network_module.argument_spec()
    assert set(N.MODEL_KEYS) <= set(spec)
    assert set(network_module.STRUCTURED) == set(N.MODEL_KEYS) - {'name', 'uuid'}


def test_corpus_models_are_valid_module_input(shared_dir):
    checked = 0
    for path in sorted(glob.glob(os.path.join(shared_dir, 'corpus', 'libvirt-networkxml', '*', '*.xml'))):
        with open(path) as fh:
            text = fh.read()
        try:
            model = N.public_model(N.from_xml(text))
        except N.ModelError:
            continue  # the non-XML files (see test_network_model.NOT_XML)
        result = _validator().validate(dict(model))
        assert not result.error_messages, (path, result.error_messages)
        params = result.validated_parameters
        again = N.model_from_params(params)
        assert N.canonical(again) == N.canonical(model), path
        checked += 1
    assert checked >= 70


def test_structured_params_fill_nones_that_are_dropped():
    result = _validator().validate({'name': 'x', 'ips': [{'address': '10.0.0.1', 'prefix': 24,
                                                          'hosts': [{'mac': '52:54:00:00:00:01', 'ip': '10.0.0.2'}]}]})
    assert not result.error_messages, result.error_messages
    model = N.model_from_params(result.validated_parameters)
    assert model['ips'][0]['hosts'] == [{'mac': '52:54:00:00:00:01', 'ip': '10.0.0.2'}]
    assert model['forward'] == 'nat'
    N.validate(model)
