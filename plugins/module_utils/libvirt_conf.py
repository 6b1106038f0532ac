# -*- coding: utf-8 -*-
# Copyright (c) 2026, vmhost.virt contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Field tables and serializer for libvirtd.conf, virtqemud.conf, virtproxyd.conf and virtlogd.conf.

Private to vmhost.virt: other collections must not import this module.

The tables below are the single source of truth for the roles ``vmhost.virt.libvirt``
and ``vmhost.virt.virtlogd``: field names (exactly as libvirtd reads them), types,
defaults and documentation.  ``scripts/libvirt_specs.py`` generates the roles'
``defaults/main.yml`` and ``meta/argument_specs.yml`` from them, and unit tests check
that every key appears in the commented configuration files Debian's libvirt 9.0
ships (``tests/unit/data/libvirt_conf_keys.txt``).

Value typing (libvirt's own ``virConf`` syntax):

* ``bool``  -> ``1`` / ``0``
* ``int``   -> bare decimal
* ``str``   -> ``"double quoted"`` (a value containing ``"`` or a newline is refused:
  libvirt's parser has no escapes)
* ``list``  -> ``["a","b"]`` (list of strings)
* ``optional_*`` fields left empty (``""``, ``[]`` or ``None``) are written as a
  commented line, so libvirtd keeps its built-in default.

Everything here is pure: values in, text or errors out.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ipaddress
import re
import uuid


class LibvirtConfError(ValueError):
    """A setting is invalid; the message names the role variable and says what to do."""


class Field(object):
    """One configuration key."""

    __slots__ = ("key", "type", "default", "doc", "choices", "minimum", "maximum",
                 "ip", "validator", "elements_choices")

    def __init__(self, key, type, default, doc, choices=None, minimum=None, maximum=None,
                 ip=False, validator=None, elements_choices=None):
        self.key = key
        self.type = type
        self.default = default
        self.doc = doc
        self.choices = choices
        self.minimum = minimum
        self.maximum = maximum
        self.ip = ip                      # remote access (TCP/TLS): libvirtd and virtproxyd only
        self.validator = validator        # name of an extra check in _CHECKS
        self.elements_choices = elements_choices

    @property
    def optional(self):
        return self.type.startswith("optional_")

    @property
    def base_type(self):
        return self.type[len("optional_"):] if self.optional else self.type

    def __repr__(self):
        return "Field(%r, %r)" % (self.key, self.type)


AUTH_UNIX = ["none", "sasl", "polkit"]
AUTH_NET = ["none", "sasl"]


def _logging_fields(ident):
    """The three logging fields libvirtd and virtlogd share; only the syslog ident differs."""
    return (
        Field("log_level", "int", 3,
              "Logging level: 4 errors, 3 warnings, 2 information, 1 debug.", choices=[1, 2, 3, 4]),
        Field("log_filters", "str", "3:remote 4:event",
              "Space-separated logging filters C(LEVEL:NAME) or C(LEVEL:+NAME), LEVEL 1 to 4.",
              validator="log_filters"),
        Field("log_outputs", "str", "3:syslog:" + ident,
              "Space-separated logging outputs: C(LEVEL:stderr), C(LEVEL:syslog:IDENT), "
              "C(LEVEL:file:PATH) or C(LEVEL:journald), LEVEL 1 to 4.", validator="log_outputs"),
    )


# ---------------------------------------------------------------------------
# libvirtd.conf (also virtproxyd.conf; virtqemud.conf takes the non-IP subset)
# ---------------------------------------------------------------------------
LIBVIRTD_FIELDS = (
    # Network connectivity
    Field("listen_tls", "bool", False,
          "Listen for TLS connections on the public TCP/IP port. Under systemd socket activation "
          "this enables C(libvirtd-tls.socket) (C(virtproxyd-tls.socket) with modular daemons) "
          "instead of passing C(--listen). The certificate files must exist or be given as content. "
          "The reference enables this by default but never passes C(--listen) for it, so it had no "
          "effect there; here it opens a port, so the default is V(false).", ip=True),
    Field("listen_tcp", "bool", False,
          "Listen for unencrypted TCP connections on the public TCP/IP port (C(libvirtd-tcp.socket)). "
          "Requires O(auth_tcp=sasl) unless insecure settings are allowed.", ip=True),
    Field("tls_port", "str", "16514",
          "Port for TLS connections. A port number (systemd sockets cannot take service names).",
          ip=True, validator="port"),
    Field("tcp_port", "str", "16509",
          "Port for unencrypted TCP connections. A port number (systemd sockets cannot take "
          "service names).", ip=True, validator="port"),
    Field("listen_addr", "str", "0.0.0.0",
          "IP address the TCP and TLS sockets bind to (a numeric IPv4 or IPv6 address).",
          ip=True, validator="ipaddr"),
    # UNIX socket access controls
    Field("unix_sock_group", "str", "libvirt",
          "Group owning the UNIX sockets; members of it can manage the daemon without being root. "
          "The role creates it and applies it to the socket units (C(SocketGroup=)).",
          validator="name"),
    Field("unix_sock_ro_perms", "str", "0777",
          "Permissions of the read-only socket (monitoring only).", validator="perms"),
    Field("unix_sock_rw_perms", "str", "0770",
          "Permissions of the read-write socket (full management).", validator="perms"),
    Field("unix_sock_admin_perms", "str", "0700",
          "Permissions of the admin socket. Anything wider than V(0700) is refused unless "
          "insecure settings are allowed (the reference's V(0777) contradicts its own "
          "documentation, which says the default allows only root).", validator="perms"),
    Field("unix_sock_dir", "str", "/run/libvirt",
          "Directory holding the UNIX sockets (the reference's C(/var/run/libvirt) is a "
          "symbolic link to this path on current systems).", validator="abspath"),
    # Authentication
    Field("auth_unix_ro", "str", "polkit",
          "Authentication scheme for the read-only UNIX socket.", choices=AUTH_UNIX),
    Field("auth_unix_rw", "str", "polkit",
          "Authentication scheme for the read-write UNIX socket.", choices=AUTH_UNIX),
    Field("auth_tcp", "str", "sasl",
          "Authentication scheme for the TCP socket. V(none) sends everything in clear text "
          "without authentication and is refused with O(listen_tcp) unless insecure settings "
          "are allowed.", choices=AUTH_NET, ip=True),
    Field("auth_tls", "str", "none",
          "Authentication scheme for the TLS socket (TLS client certificates already "
          "authenticate; V(sasl) adds SASL on top).", choices=AUTH_NET, ip=True),
    Field("tcp_min_ssf", "optional_int", None,
          "Minimum SASL security strength factor on TCP sockets. Unset keeps libvirt's default.",
          minimum=0, ip=True),
    Field("access_drivers", "optional_list", [],
          "API access control drivers (V(polkit), V(nop)). Empty keeps libvirt's default.",
          elements_choices=["nop", "polkit"]),
    # TLS x509 certificates
    Field("key_file", "optional_str", "",
          "Server private key path. Empty keeps libvirt's default "
          "(C(/etc/pki/libvirt/private/serverkey.pem)).", ip=True, validator="abspath"),
    Field("cert_file", "optional_str", "",
          "Server certificate path. Empty keeps libvirt's default "
          "(C(/etc/pki/libvirt/servercert.pem)).", ip=True, validator="abspath"),
    Field("ca_file", "optional_str", "",
          "CA certificate path. Empty keeps libvirt's default (C(/etc/pki/CA/cacert.pem)).",
          ip=True, validator="abspath"),
    Field("crl_file", "optional_str", "",
          "Certificate revocation list path. Empty loads no CRL.", ip=True, validator="abspath"),
    # Authorization
    Field("tls_no_sanity_certificate", "bool", False,
          "Skip the sanity checks libvirtd runs on its own server certificates "
          "(the reference's C(tls_no_sanity_cert) is not a key libvirtd reads).", ip=True),
    Field("tls_no_verify_certificate", "bool", False,
          "Accept TLS clients without verifying their certificates. Refused together with "
          "O(listen_tls) unless insecure settings are allowed (the reference's "
          "C(tls_no_verify_cert) is not a key libvirtd reads).", ip=True),
    Field("tls_allowed_dn_list", "optional_list", [],
          "Allowed x509 Distinguished Names (wildcards allowed). Empty checks no DN.", ip=True),
    Field("tls_priority", "str", "NORMAL",
          "GnuTLS priority string.", ip=True),
    Field("sasl_allowed_username_list", "optional_list", [],
          "Allowed SASL user names (wildcards allowed). Empty checks no user name "
          "(the reference's C(sasl_allowed_usernames) is not a key libvirtd reads)."),
    # Processing controls
    Field("max_clients", "int", 5000,
          "Maximum number of concurrent client connections over all sockets.", minimum=1),
    Field("max_queued_clients", "int", 1000,
          "Maximum length of the queue of connections waiting to be accepted.", minimum=0),
    Field("max_anonymous_clients", "int", 20,
          "Maximum number of accepted but not yet authenticated clients (0 turns the limit off).",
          minimum=0),
    Field("min_workers", "int", 5, "Number of worker threads started initially.", minimum=1),
    Field("max_workers", "int", 20, "Maximum number of worker threads.", minimum=1),
    Field("prio_workers", "int", 5,
          "Number of priority workers that run high-priority calls (such as domainDestroy) "
          "when all other workers are stuck.", minimum=0),
    Field("max_client_requests", "int", 5,
          "Limit on concurrent requests from one client connection.", minimum=1),
    Field("admin_min_workers", "int", 1, "Like O(min_workers), for the admin interface.", minimum=1),
    Field("admin_max_workers", "int", 5, "Like O(max_workers), for the admin interface.", minimum=1),
    Field("admin_max_clients", "int", 5, "Like O(max_clients), for the admin interface.", minimum=1),
    Field("admin_max_queued_clients", "int", 5,
          "Like O(max_queued_clients), for the admin interface.", minimum=0),
    Field("admin_max_client_requests", "int", 5,
          "Like O(max_client_requests), for the admin interface.", minimum=1),
    # Logging: the fields virtlogd shares, from _logging_fields()
) + _logging_fields("libvirtd") + (
    # Auditing
    Field("audit_level", "int", 1,
          "Auditing: 0 off, 1 on if the host audits, 2 on and exit if the host does not.",
          choices=[0, 1, 2]),
    Field("audit_logging", "bool", False,
          "Also send audit messages through libvirt's logging."),
    # Host UUID
    Field("host_uuid", "optional_str", "",
          "Host UUID (its hexadecimal digits must not all be the same). Empty reads it from "
          "O(host_uuid_source).", validator="uuid"),
    Field("host_uuid_source", "str", "smbios",
          "Where the host UUID comes from: V(smbios) (C(dmidecode)) or V(machine-id) "
          "(C(/etc/machine-id)).", choices=["smbios", "machine-id"]),
    # Keepalive
    Field("keepalive_interval", "int", 5,
          "Seconds of inactivity before a keepalive message is sent to a client; -1 disables.",
          minimum=-1),
    Field("keepalive_count", "int", 5,
          "Keepalive messages sent without answer before the connection is considered broken.",
          minimum=0),
    Field("admin_keepalive_interval", "int", 5,
          "Like O(keepalive_interval), for the admin interface.", minimum=-1),
    Field("admin_keepalive_count", "int", 5,
          "Like O(keepalive_count), for the admin interface.", minimum=0),
    Field("keepalive_required", "bool", False,
          "Refuse clients that do not support the keepalive protocol."),
    Field("admin_keepalive_required", "bool", False,
          "Like O(keepalive_required), for the admin interface."),
    # Open vSwitch
    Field("ovs_timeout", "int", 5, "Timeout in seconds for C(ovs-vsctl) calls.", minimum=1),
)

# Reference (Guix libvirt-configuration) fields that libvirtd no longer reads; kept out of
# the table on purpose (docs/libvirt.md explains each).
DROPPED_REFERENCE_FIELDS = {
    "mdns_adv": "mDNS advertisement was removed from libvirt; the key is absent from libvirtd.conf",
    "mdns_name": "mDNS advertisement was removed from libvirt; the key is absent from libvirtd.conf",
    "max_requests": "no longer read by libvirtd; the key is absent from libvirtd.conf",
}

# Reference names derived mechanically from field names -> the key libvirtd really reads.
REFERENCE_RENAMES = {
    "tls_no_sanity_cert": "tls_no_sanity_certificate",
    "tls_no_verify_cert": "tls_no_verify_certificate",
    "sasl_allowed_usernames": "sasl_allowed_username_list",
}

# ---------------------------------------------------------------------------
# virtlogd.conf
# ---------------------------------------------------------------------------
VIRTLOGD_FIELDS = _logging_fields("virtlogd") + (
    Field("max_clients", "int", 1024,
          "Maximum number of concurrent client connections (one per running guest).", minimum=1),
    Field("max_size", "int", 2097152,
          "Maximum size in bytes of a guest console log before it is rolled over.", minimum=1),
    Field("max_backups", "int", 3,
          "Number of rolled-over log files kept per guest.", minimum=0),
    Field("admin_max_clients", "int", 5,
          "Maximum number of concurrent connections to the admin socket "
          "(C(virt-admin virtlogd)).", minimum=1),
)

TABLES = {
    "libvirtd": LIBVIRTD_FIELDS,
    "virtproxyd": LIBVIRTD_FIELDS,
    "virtqemud": tuple(f for f in LIBVIRTD_FIELDS if not f.ip),
    "virtlogd": VIRTLOGD_FIELDS,
}

_REMOTE_KEYS = frozenset(f.key for f in LIBVIRTD_FIELDS if f.ip)

# Role variable prefix per configuration file.
PREFIXES = {"libvirtd": "libvirt_", "virtproxyd": "libvirt_", "virtqemud": "libvirt_",
            "virtlogd": "virtlogd_"}

_KEY_RE = re.compile(r"^[a-z][a-z0-9_]*$")
_TRUE = ("yes", "on", "1", "true", "y", "t")
_FALSE = ("no", "off", "0", "false", "n", "f")


def table(daemon):
    try:
        return TABLES[daemon]
    except KeyError:
        raise LibvirtConfError("unknown configuration file %r; choose one of %s"
                               % (daemon, ", ".join(sorted(TABLES))))


def fields_by_key(daemon):
    return dict((f.key, f) for f in table(daemon))


def defaults(daemon):
    """Default value of every field, keyed by libvirt key."""
    return dict((f.key, _copy(f.default)) for f in table(daemon))


def _copy(value):
    return list(value) if isinstance(value, list) else value


# ---------------------------------------------------------------------------
# Type coercion and checks
# ---------------------------------------------------------------------------
def _coerce_bool(var, value):
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    raise LibvirtConfError("%s must be a boolean (true/false), got %r" % (var, value))


def _coerce_int(var, value):
    if isinstance(value, bool):
        raise LibvirtConfError("%s must be an integer, got the boolean %r" % (var, value))
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.match(r"^\s*-?[0-9]+\s*$", value):
        return int(value)
    raise LibvirtConfError("%s must be an integer, got %r" % (var, value))


def _coerce_str(var, value):
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise LibvirtConfError("%s must be a string, got %r" % (var, value))
    value = str(value)
    if '"' in value or "\n" in value or "\r" in value:
        raise LibvirtConfError('%s must not contain a double quote or a line break '
                               '(libvirt configuration strings have no escapes), got %r' % (var, value))
    return value


def _coerce_list(var, value):
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise LibvirtConfError("%s must be a list of strings, got %r" % (var, value))
    return [_coerce_str("%s[%d]" % (var, i), v) for i, v in enumerate(value)]


_COERCE = {"bool": _coerce_bool, "int": _coerce_int, "str": _coerce_str, "list": _coerce_list}


def _check_port(var, value):
    if not re.match(r"^[0-9]+$", value) or not 0 < int(value) < 65536:
        raise LibvirtConfError("%s must be a TCP port number 1-65535 (systemd socket units cannot "
                               "resolve service names), got %r" % (var, value))


def _check_ipaddr(var, value):
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise LibvirtConfError("%s must be a numeric IPv4 or IPv6 address (systemd socket units "
                               "bind before name resolution), got %r" % (var, value))


def _check_perms(var, value):
    if not re.match(r"^0?[0-7]{3}$", value):
        raise LibvirtConfError("%s must be an octal permission string such as \"0770\", got %r"
                               % (var, value))


def _check_abspath(var, value):
    if value and not value.startswith("/"):
        raise LibvirtConfError("%s must be an absolute path, got %r" % (var, value))


def _check_name(var, value):
    if not re.match(r"^[a-z_][a-z0-9_.-]*\$?$", value, re.I):
        raise LibvirtConfError("%s must be a group name, got %r" % (var, value))


def _check_uuid(var, value):
    if not value:
        return
    try:
        parsed = uuid.UUID(value)
    except ValueError:
        raise LibvirtConfError("%s must be a UUID such as the output of uuidgen, got %r" % (var, value))
    if len(set(parsed.hex)) == 1:
        raise LibvirtConfError("%s must not have all digits the same (libvirt rejects it), got %r"
                               % (var, value))


def _check_log_filters(var, value):
    for token in value.split():
        if not re.match(r"^[1-4]:\+?[^\s:]+$", token):
            raise LibvirtConfError("%s: filter %r is not LEVEL:NAME or LEVEL:+NAME with LEVEL 1-4"
                                   % (var, token))


def _check_log_outputs(var, value):
    for token in value.split():
        if not re.match(r"^[1-4]:(stderr|journald|syslog:\S+|file:/\S+)$", token):
            raise LibvirtConfError("%s: output %r is not LEVEL:stderr, LEVEL:journald, "
                                   "LEVEL:syslog:IDENT or LEVEL:file:/PATH with LEVEL 1-4"
                                   % (var, token))


_CHECKS = {"port": _check_port, "ipaddr": _check_ipaddr, "perms": _check_perms,
           "abspath": _check_abspath, "name": _check_name, "uuid": _check_uuid,
           "log_filters": _check_log_filters, "log_outputs": _check_log_outputs}


def check_field(field, value, var):
    """Coerce and check one value for ``field``; ``var`` names it in errors."""
    if field.optional and (value is None or value == "" or value == []):
        return None
    if value is None:
        raise LibvirtConfError("%s must be set (%s)" % (var, field.type))
    value = _COERCE[field.base_type](var, value)
    if field.choices is not None and value not in field.choices:
        raise LibvirtConfError("%s must be one of %s, got %r"
                               % (var, ", ".join(str(c) for c in field.choices), value))
    if field.minimum is not None and value < field.minimum:
        raise LibvirtConfError("%s must be at least %d, got %r" % (var, field.minimum, value))
    if field.maximum is not None and value > field.maximum:
        raise LibvirtConfError("%s must be at most %d, got %r" % (var, field.maximum, value))
    if field.elements_choices is not None:
        for item in value:
            if item not in field.elements_choices:
                raise LibvirtConfError("%s: %r is not one of %s"
                                       % (var, item, ", ".join(field.elements_choices)))
    if field.validator:
        _CHECKS[field.validator](var, value)
    return value


def _infer(var, value):
    """Type of an extra setting from its YAML value."""
    if value is None or value == "" or value == []:
        return None, None
    if isinstance(value, bool):
        return "bool", value
    if isinstance(value, int):
        return "int", value
    if isinstance(value, str):
        return "str", _coerce_str(var, value)
    if isinstance(value, (list, tuple)):
        return "list", _coerce_list(var, value)
    raise LibvirtConfError("%s must be a boolean, integer, string or list of strings, got %r"
                           % (var, value))


# Daemons whose files ``libvirt_extra_settings`` can address in a section of their own
# (``{"virtproxyd": {KEY: VALUE}}``); top-level keys go to every one of them the role writes.
EXTRA_SCOPES = ("libvirtd", "virtqemud", "virtproxyd")


def select_extra(daemon, extra, prefix="libvirt_"):
    """The extra settings of ``daemon``'s file: top-level keys plus its own section.

    A key whose value is a dictionary must be one of :data:`EXTRA_SCOPES` (a section);
    sections of other daemons are left out.  A key set both at the top level and in the
    section is refused (two places for one setting).
    """
    if extra is None:
        return {}
    if not isinstance(extra, dict):
        raise LibvirtConfError("%sextra_settings must be a dictionary, got %r" % (prefix, extra))
    selected = {}
    for key, value in extra.items():
        if isinstance(value, dict):
            if key not in EXTRA_SCOPES:
                raise LibvirtConfError("%sextra_settings.%s: only a daemon section (%s) may hold "
                                       "a dictionary" % (prefix, key, ", ".join(EXTRA_SCOPES)))
            continue
        selected[key] = value
    section = extra.get(daemon)
    if isinstance(section, dict):
        for key, value in section.items():
            if key in selected:
                raise LibvirtConfError("%sextra_settings.%s is set both at the top level and in "
                                       "the %s section; keep one" % (prefix, key, daemon))
            if isinstance(value, dict):
                raise LibvirtConfError("%sextra_settings.%s.%s must be a boolean, integer, string "
                                       "or list of strings" % (prefix, daemon, key))
            selected[key] = value
    return selected


def normalize(daemon, values, extra=None, prefix=None):
    """Check every value and return ``(settings, extra_settings)`` with coerced values.

    ``values`` maps libvirt keys to values (missing keys take the table default);
    ``extra`` maps further keys to values, typed by their YAML type.  Errors name
    the role variable (``prefix + key``, ``prefix + "extra_settings.KEY"``).
    """
    prefix = PREFIXES[daemon] if prefix is None else prefix
    fields = table(daemon)
    known = dict((f.key, f) for f in fields)
    if daemon == "virtqemud" and values:
        # The role hands over its full libvirtd settings; remote access is virtproxyd's.
        values = dict((k, v) for k, v in values.items() if k not in _REMOTE_KEYS)
    unknown = sorted(set(values or {}) - set(known))
    if unknown:
        raise LibvirtConfError("%s is not a %s.conf field known to the role; put new libvirt "
                               "options in %sextra_settings" % (prefix + unknown[0], daemon, prefix))
    settings = {}
    for field in fields:
        raw = (values or {}).get(field.key, _copy(field.default))
        settings[field.key] = check_field(field, raw, prefix + field.key)
    extras = []
    if extra is None:
        extra = {}
    if not isinstance(extra, dict):
        raise LibvirtConfError("%sextra_settings must be a dictionary, got %r" % (prefix, extra))
    if daemon in EXTRA_SCOPES:
        extra = select_extra(daemon, extra, prefix)
    for key in sorted(extra):
        var = "%sextra_settings.%s" % (prefix, key)
        if not isinstance(key, str) or not _KEY_RE.match(key):
            raise LibvirtConfError("%s: key must be lower case letters, digits and underscores" % var)
        if key in known:
            raise LibvirtConfError("%s duplicates a field the role knows; set %s%s instead"
                                   % (var, prefix, key))
        if daemon == "virtqemud" and key in _REMOTE_KEYS:
            raise LibvirtConfError("%s is a remote-access setting that virtqemud does not read "
                                   "(virtproxyd handles remote access); set %s%s instead"
                                   % (var, prefix, key))
        typ, value = _infer(var, extra[key])
        extras.append((key, typ, value))
    return settings, extras


def insecure_reasons(settings, prefix="libvirt_"):
    """Settings that open the daemon to anyone; each reason names its variables."""
    reasons = []
    if settings.get("listen_tcp") and settings.get("auth_tcp") == "none":
        reasons.append("%slisten_tcp with %sauth_tcp: none lets anyone on the network manage the "
                       "host without authentication, in clear text" % (prefix, prefix))
    if settings.get("listen_tls") and settings.get("tls_no_verify_certificate"):
        reasons.append("%stls_no_verify_certificate with %slisten_tls accepts TLS clients "
                       "without checking their certificates" % (prefix, prefix))
    admin = settings.get("unix_sock_admin_perms")
    if admin and int(admin, 8) & 0o077:
        reasons.append("%sunix_sock_admin_perms %s is wider than 0700: the admin socket "
                       "controls the daemon itself" % (prefix, admin))
    rw = settings.get("unix_sock_rw_perms")
    if rw and settings.get("auth_unix_rw") == "none" and int(rw, 8) & 0o007:
        reasons.append("%sunix_sock_rw_perms %s with %sauth_unix_rw: none gives every local "
                       "user root-equivalent access" % (prefix, rw, prefix))
    return reasons


def validate(daemon, values, extra=None, allow_insecure=False, prefix=None):
    """Normalize and refuse insecure combinations; returns ``(settings, extras)``."""
    prefix = PREFIXES[daemon] if prefix is None else prefix
    settings, extras = normalize(daemon, values, extra, prefix)
    if not allow_insecure:
        reasons = insecure_reasons(settings, prefix)
        if reasons:
            raise LibvirtConfError("insecure settings refused (set %sallow_insecure: true to "
                                   "accept them): %s" % (prefix, "; ".join(reasons)))
    return settings, extras


# ---------------------------------------------------------------------------
# Serialization
# ---------------------------------------------------------------------------
def format_value(typ, value):
    """One value in libvirt syntax."""
    if typ == "bool":
        return "1" if value else "0"
    if typ == "int":
        return str(int(value))
    if typ == "str":
        return '"%s"' % value
    if typ == "list":
        return "[" + ",".join('"%s"' % v for v in value) + "]"
    raise LibvirtConfError("cannot serialize type %r" % typ)


def _empty_line(key, typ):
    return {"str": '# %s = ""', "list": "# %s = []"}.get(typ, "# %s is unset").replace("%s", key, 1)


def render_lines(daemon, settings, extras=()):
    """Lines (without newline) of a configuration file for normalized settings."""
    lines = []
    for field in table(daemon):
        value = settings[field.key]
        if value is None:
            lines.append(_empty_line(field.key, field.base_type))
        else:
            lines.append("%s = %s" % (field.key, format_value(field.base_type, value)))
    if extras:
        lines.append("# extra settings")
    for key, typ, value in extras:
        if typ is None:
            lines.append("# %s is unset" % key)
        else:
            lines.append("%s = %s" % (key, format_value(typ, value)))
    return lines


def render(daemon, values, extra=None, allow_insecure=False, prefix=None):
    """Validate and serialize: the body of ``<daemon>.conf`` (ends with a newline)."""
    settings, extras = validate(daemon, values, extra, allow_insecure, prefix)
    return "\n".join(render_lines(daemon, settings, extras)) + "\n"


def parse(text):
    """Read back what :func:`render` writes (and libvirt's commented files): ``{key: value}``.

    Supports the subset of libvirt's syntax this module writes: ``key = 1``, ``key = "s"``,
    ``key = ["a","b"]``; comments and blank lines are skipped.
    """
    result = {}
    for number, line in enumerate(text.split("\n"), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        m = re.match(r'^([a-z][a-z0-9_]*)\s*=\s*(.*?)\s*$', stripped)
        if not m:
            raise LibvirtConfError("line %d is not KEY = VALUE: %r" % (number, line))
        key, raw = m.groups()
        if re.match(r'^-?[0-9]+$', raw):
            result[key] = int(raw)
        elif re.match(r'^"[^"]*"$', raw):
            result[key] = raw[1:-1]
        elif re.match(r'^\[\s*("[^"]*"\s*(,\s*"[^"]*"\s*)*)?\]$', raw):
            result[key] = re.findall(r'"([^"]*)"', raw)
        else:
            raise LibvirtConfError("line %d: cannot parse value %r" % (number, raw))
    return result


# ---------------------------------------------------------------------------
# systemd socket units
# ---------------------------------------------------------------------------
SOCKET_NAMES = {
    # daemon: (rw socket file, ro socket file, admin socket file)
    "libvirtd": ("libvirt-sock", "libvirt-sock-ro", "libvirt-admin-sock"),
    "virtproxyd": ("libvirt-sock", "libvirt-sock-ro", "virtproxyd-admin-sock"),
    "virtqemud": ("virtqemud-sock", "virtqemud-sock-ro", "virtqemud-admin-sock"),
}


def _listen_inet(addr, port):
    ip = ipaddress.ip_address(addr)
    if ip.version == 6:
        return "[%s]:%s" % (addr, port)
    return "%s:%s" % (addr, port)


def _dropin(listen, group=None, mode=None):
    lines = ["[Socket]", "ListenStream=", "ListenStream=%s" % listen]
    if group is not None:
        lines.append("SocketGroup=%s" % group)
    if mode is not None:
        lines.append("SocketMode=%s" % mode)
    return "\n".join(lines) + "\n"


# Modular daemons of the secondary drivers: in modular mode virtqemud asks them for
# networks, storage, node devices, secrets, filters and host interfaces; libvirtd does all
# of that itself.  Only those installed are used (the role checks the unit files).
SECONDARY_DAEMONS = ("virtnetworkd", "virtstoraged", "virtnodedevd", "virtsecretd",
                     "virtnwfilterd", "virtinterfaced")

# Every unit of a mode, for retiring the other mode when switching.
_MODE_UNITS = {
    "monolithic": (["libvirtd"], "libvirtd"),
    "modular": (["virtqemud", "virtproxyd"] + list(SECONDARY_DAEMONS), "virtproxyd"),
}


def _mode_units(mode):
    """``(sockets, services)`` of every daemon of ``mode`` (TCP/TLS sockets included)."""
    daemons, remote = _MODE_UNITS[mode]
    sockets = []
    for daemon in daemons:
        sockets += ["%s%s.socket" % (daemon, s) for s in ("", "-ro", "-admin")]
    sockets += ["%s-tcp.socket" % remote, "%s-tls.socket" % remote]
    return sockets, ["%s.service" % d for d in daemons]


def socket_plan(settings, mode="monolithic"):
    """Socket units for normalized libvirtd settings.

    ``mode`` is ``monolithic`` (libvirtd) or ``modular`` (virtqemud for the local
    sockets, virtproxyd for the legacy socket paths and remote access).  Returns a dict:
    ``enable`` / ``disable`` (lists of socket unit names), ``dropins`` (unit -> drop-in
    text for ``/etc/systemd/system/<unit>.d/vmhost-virt.conf``), ``service`` (the daemon's
    service) and ``sockets`` (every socket unit the role manages, for restarts).

    Switching modes: ``retire_sockets`` / ``retire_services`` are every unit of the other
    mode, to stop (sockets first, so nothing re-activates a daemon) and disable before a
    socket of this mode binds the same path (``libvirtd.socket`` and
    ``virtproxyd.socket`` both listen on ``libvirt-sock``).  Stopping a daemon never
    stops its domains (libvirt's units use C(KillMode=process)); the next daemon
    reconnects to them from the shared state directory.  ``secondary_sockets`` /
    ``secondary_services`` (modular only) are the secondary drivers' daemons, enabled
    when installed.
    """
    if mode not in ("monolithic", "modular"):
        raise LibvirtConfError("libvirt daemon mode must be monolithic or modular, got %r" % mode)
    sock_dir = settings["unix_sock_dir"].rstrip("/")
    group = settings["unix_sock_group"]
    perms = (settings["unix_sock_rw_perms"], settings["unix_sock_ro_perms"],
             settings["unix_sock_admin_perms"])
    local = ["libvirtd"] if mode == "monolithic" else ["virtqemud", "virtproxyd"]
    remote = "libvirtd" if mode == "monolithic" else "virtproxyd"
    dropins = {}
    enable = []
    for daemon in local:
        names = SOCKET_NAMES[daemon]
        for suffix, name, perm in zip(("", "-ro", "-admin"), names, perms):
            unit = "%s%s.socket" % (daemon, suffix)
            dropins[unit] = _dropin("%s/%s" % (sock_dir, name), group, perm)
            enable.append(unit)
    disable = []
    addr = settings["listen_addr"]
    for flag, kind, port in (("listen_tcp", "tcp", settings["tcp_port"]),
                             ("listen_tls", "tls", settings["tls_port"])):
        unit = "%s-%s.socket" % (remote, kind)
        if settings[flag]:
            dropins[unit] = _dropin(_listen_inet(addr, port))
            enable.append(unit)
        else:
            disable.append(unit)
    other = "modular" if mode == "monolithic" else "monolithic"
    retire_sockets, retire_services = _mode_units(other)
    secondary = SECONDARY_DAEMONS if mode == "modular" else ()
    return {"enable": enable, "disable": disable, "dropins": dropins,
            "services": ["%s.service" % d for d in local],
            "sockets": enable + disable,
            "retire_sockets": retire_sockets, "retire_services": retire_services,
            "secondary_sockets": ["%s%s.socket" % (d, s) for d in secondary
                                  for s in ("", "-ro", "-admin")],
            "secondary_services": ["%s.service" % d for d in secondary]}
