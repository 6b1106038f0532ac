# -*- coding: utf-8 -*-
# Copyright (c) vmhost.virt contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The files of a cloud-init NoCloud seed: user-data, meta-data, network-config (pure).

Private to vmhost.virt: other collections must not import this module.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib

from ansible_collections.vmhost.virt.plugins.module_utils.iso.names import IsoError


try:
    import yaml
    HAS_YAML = True
    YAML_IMPORT_ERROR = None
except ImportError as exc:  # pragma: no cover - PyYAML ships with ansible-core
    yaml = None
    HAS_YAML = False
    YAML_IMPORT_ERROR = exc


def _yaml(data):
    if not HAS_YAML:
        raise IsoError("PyYAML is needed to write cloud-init data: %s" % YAML_IMPORT_ERROR)
    return yaml.safe_dump(data, default_flow_style=False, sort_keys=True, allow_unicode=True)


def cidata_content(cidata):
    """content entries of a cloud-init NoCloud seed: user-data, meta-data, network-config."""
    if not isinstance(cidata, dict):
        raise IsoError("cidata must be a dictionary with user_data, meta_data and network_config")
    user = cidata.get("user_data")
    if user is None:
        user = {}
    if isinstance(user, (dict, list)):
        user_text = "#cloud-config\n" + _yaml(user)
    else:
        user_text = str(user)
        if not user_text.startswith("#"):
            raise IsoError("cidata.user_data given as text must start with a header such as #cloud-config "
                           "or #!/bin/sh; give a dictionary to have the #cloud-config document written for you")
    meta = cidata.get("meta_data")
    if meta is None:
        meta = {}
    if isinstance(meta, dict):
        meta = dict(meta)
        if "instance-id" not in meta:
            meta["instance-id"] = "iid-" + hashlib.sha256(user_text.encode("utf-8")).hexdigest()[:16]
        meta_text = _yaml(meta)
    else:
        meta_text = str(meta)
    entries = [
        {"dest": "/user-data", "content": user_text, "mode": "0644"},
        {"dest": "/meta-data", "content": meta_text, "mode": "0644"},
    ]
    network = cidata.get("network_config")
    if network is not None:
        text = _yaml(network) if isinstance(network, (dict, list)) else str(network)
        entries.append({"dest": "/network-config", "content": text, "mode": "0644"})
    return entries
