# -*- coding: utf-8 -*-
# Copyright (c) 2026, vmhost.virt contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Build VMs on the host: machine list validation, QEMU command lines, offload entries.

Pure functions (values in, values out), used by the ``vmhost.virt.build_vm`` filters and
unit-tested without Ansible.  Private to this collection: other collections must not
import it.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import binascii
import datetime
import re

# ---------------------------------------------------------------------------
# data

# System type -> how QEMU emulates it.  ``arches`` are the host machines (uname -m)
# on which KVM can run the guest; ``console`` is the guest's serial console device.
SYSTEMS = {
    "x86_64-linux": {"qemu": "qemu-system-x86_64", "machine": [], "console": "ttyS0",
                     "arches": ("x86_64",)},
    "i686-linux": {"qemu": "qemu-system-i386", "machine": [], "console": "ttyS0",
                   "arches": ("x86_64", "i686", "i586", "i386")},
    "aarch64-linux": {"qemu": "qemu-system-aarch64", "machine": ["-M", "virt"], "console": "ttyAMA0",
                      "arches": ("aarch64",)},
    # Without LPAE, ECAM collides with the high PCIe window: highmem=off (as Guix does).
    "armhf-linux": {"qemu": "qemu-system-arm", "machine": ["-M", "virt,highmem=off"], "console": "ttyAMA0",
                    "arches": ("armv7l", "armv8l")},
    # The Hurd runs on the x86_64 emulator (Guix works around "Bad ram pointer" in the i386 one).
    "i586-gnu": {"qemu": "qemu-system-x86_64", "machine": [], "console": "ttyS0",
                 "arches": ("x86_64",)},
}

# Intel x86_64 CPU models by release date (QEMU's -cpu names), oldest first.  A VM whose
# clock is set to DATE gets the newest model released strictly before DATE.
CPU_MODELS_BY_DATE = (
    ("2006-01-01", "core2duo"),
    ("2008-01-01", "Nehalem"),
    ("2010-01-01", "Westmere"),
    ("2011-01-01", "SandyBridge"),
    ("2012-01-01", "IvyBridge"),
    ("2013-01-01", "Haswell"),
    ("2014-01-01", "Broadwell"),
    ("2015-01-01", "Skylake-Client"),
)

DEFAULTS = {
    "kernel": None,
    "initrd": None,
    "append": "",
    "systems": ["x86_64-linux"],
    "cpu": None,
    "date": "2020-01-01",
    "cpu_count": 4,
    "memory": 2048,
    "ssh_port": 11022,
    "secrets_transport": "virtio-serial",
    "secrets_port": 11044,
    "secrets_timeout": 300,
    "start_timeout": 1200,
    "restart_limit": 5,
    "deliver_secrets": True,
    "auto_start": True,
    "accelerator": "auto",
    "qemu_extra_args": [],
    "enabled": True,
    "max_jobs": 1,
    "speed_factor": 1,
    "features": [],
    "mandatory_features": [],
    "preset": "",
    "id": 0,
    "snapshot": True,
    "nic_model": "virtio-net-pci",
    "disk_interface": "virtio",
    "image_format": "",
    "vnc_port": None,
    "offloading_user": "offloading",
}

# The Hurd-in-a-VM defaults of the reference (ports + 1000 x id, rtl8139, IDE disk).
CHILDHURD = {
    "systems": ["i586-gnu"],
    "memory": 2048,
    "snapshot": True,
    "nic_model": "rtl8139",
    "disk_interface": "ide",
    "secrets_transport": "tcp",
    "ssh_port_base": 10022,
    "secrets_port_base": 11004,
    "vnc_port_base": 15900,
}

PRESETS = ("", "childhurd")
TRANSPORTS = ("virtio-serial", "tcp")
ACCELERATORS = ("auto", "kvm", "tcg")
SECRETS_GUEST_PORT = 1004
SECRETS_PORT_NAME = "org.vmhost.secrets.0"
QGA_PORT_NAME = "org.qemu.guest_agent.0"
UNIT_PREFIX = "build-vm-"
USER_MAX = 32
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
CPU_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.,=+-]*$")
SECRET_SERVICE = "/usr/local/libexec/vmhost-virt/secret-service"
SECRET_ROOT = "/etc/vmhost/build-vms"
OFFLOAD_KEY_DIR = "/etc/vmhost/offload/ssh"
KNOWN_HOSTS = "/etc/vmhost/offload/known_hosts"


class BuildVMError(ValueError):
    """Invalid machine list; ``messages`` holds one line per problem."""

    def __init__(self, messages):
        self.messages = list(messages)
        ValueError.__init__(self, "\n".join(self.messages))


# ---------------------------------------------------------------------------
# small lookups

def qemu_for(system):
    """``(binary, machine args)`` for a system type."""
    try:
        info = SYSTEMS[system]
    except KeyError:
        raise BuildVMError(["unknown system type %r (known: %s)" % (system, ", ".join(sorted(SYSTEMS)))])
    return info["qemu"], list(info["machine"])


def _parse_date(text):
    if not isinstance(text, str) or not DATE_RE.match(text):
        raise ValueError("not a YYYY-MM-DD date: %r" % (text,))
    return datetime.date(*[int(p) for p in text.split("-")])


def cpu_model_for_date(systems, date):
    """CPU model of a VM whose clock is at ``date``: for x86_64 systems the newest Intel
    model released strictly before ``date`` (None before the first one: QEMU's default),
    ``host`` for every other system type (what the reference does)."""
    if not any(s.startswith("x86_64-") for s in systems):
        return "host"
    when = _parse_date(date)
    best = None
    for released, model in CPU_MODELS_BY_DATE:
        if _parse_date(released) < when:
            best = model
    return best


def unit_name(name):
    return "%s%s.service" % (UNIT_PREFIX, name)


def user_name(name):
    return UNIT_PREFIX + name


def host_alias(name):
    return UNIT_PREFIX + name


def runtime_dir(name):
    return "/run/%s%s" % (UNIT_PREFIX, name)


def secret_root(name):
    return "%s/%s" % (SECRET_ROOT, name)


def offload_key(name):
    return "%s/%s" % (OFFLOAD_KEY_DIR, name)


# ---------------------------------------------------------------------------
# validation

def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _as_int(value):
    """Ansible hands numbers over as int or numeric strings; anything else is an error."""
    if _is_int(value):
        return value
    if isinstance(value, str) and re.match(r"^[0-9]+$", value.strip()):
        return int(value.strip())
    raise ValueError("not an integer: %r" % (value,))


def _as_bool(value):
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("yes", "true", "1", "on", "no", "false", "0", "off"):
        return value.lower() in ("yes", "true", "1", "on")
    if _is_int(value) and value in (0, 1):
        return bool(value)
    raise ValueError("not a boolean: %r" % (value,))


def _label(index, raw):
    name = raw.get("name") if isinstance(raw, dict) else None
    if isinstance(name, str) and name:
        return "build_vm_machines[%d] (VM %r)" % (index, name)
    return "build_vm_machines[%d]" % index


def normalize(raw, index=0):
    """One machine entry with every field filled in; raises BuildVMError naming the VM and field."""
    label = _label(index, raw)
    if not isinstance(raw, dict):
        raise BuildVMError(["%s: must be a dict, got %s" % (label, type(raw).__name__)])
    errors = []

    def err(field, msg):
        errors.append("%s: field '%s': %s" % (label, field, msg))

    unknown = sorted(set(raw) - set(DEFAULTS) - {"name", "image"})
    for field in unknown:
        err(field, "unknown field (known: %s)" % ", ".join(sorted(set(DEFAULTS) | {"name", "image"})))

    vm = dict(DEFAULTS)
    vm["systems"] = list(DEFAULTS["systems"])
    preset = raw.get("preset") or ""
    if preset not in PRESETS:
        err("preset", "must be one of %s, got %r" % (", ".join(repr(p) for p in PRESETS), preset))
        preset = ""
    if preset == "childhurd":
        vm.update(dict((k, v) for k, v in CHILDHURD.items() if not k.endswith("_base")))
        vm["systems"] = list(CHILDHURD["systems"])
    for key, value in raw.items():
        if key in DEFAULTS and value is not None:
            vm[key] = value
    vm["preset"] = preset

    name = raw.get("name")
    if not isinstance(name, str) or not name:
        err("name", "required, a non-empty string")
        name = ""
    elif not NAME_RE.match(name):
        err("name", "%r is not a valid unit/user name suffix: use lower-case letters, digits, "
                    "'-' and '_', starting with a letter or digit" % name)
    elif len(user_name(name)) > USER_MAX:
        err("name", "user name %r would be %d characters, more than %d: shorten the name to %d"
            % (user_name(name), len(user_name(name)), USER_MAX, USER_MAX - len(UNIT_PREFIX)))
    vm["name"] = name

    image = raw.get("image")
    if not isinstance(image, str) or not image.startswith("/"):
        err("image", "required, an absolute path to the disk image, got %r" % (image,))
    elif "," in image:
        err("image", "%r contains a comma, which QEMU cannot parse" % image)
    vm["image"] = image
    for field in ("kernel", "initrd"):
        value = vm[field]
        if value is not None and (not isinstance(value, str) or not value.startswith("/") or "," in value):
            err(field, "an absolute path without commas, got %r" % (value,))
    if vm["initrd"] and not vm["kernel"]:
        err("initrd", "needs 'kernel' (without a kernel QEMU boots the disk itself)")
    if not isinstance(vm["append"], str):
        err("append", "must be a string")
    elif vm["append"] and not vm["kernel"]:
        err("append", "needs 'kernel': a kernel command line only applies to a kernel QEMU loads")

    systems = vm["systems"]
    if isinstance(systems, str):
        systems = [systems]
    if not isinstance(systems, list) or not systems:
        err("systems", "a non-empty list of system types")
        systems = []
    for system in systems:
        if system not in SYSTEMS:
            err("systems", "unknown system type %r (known: %s)" % (system, ", ".join(sorted(SYSTEMS))))
    vm["systems"] = [str(s) for s in systems]

    try:
        _parse_date(vm["date"])
    except ValueError as exc:
        err("date", str(exc))
    if vm["cpu"] is not None and (not isinstance(vm["cpu"], str) or not CPU_RE.match(vm["cpu"])):
        err("cpu", "a QEMU CPU model name (see qemu-system-ARCH -cpu help), got %r" % (vm["cpu"],))

    limits = {"cpu_count": (1, 255), "memory": (128, 1 << 22), "ssh_port": (1, 65535),
              "secrets_port": (1, 65535), "secrets_timeout": (1, 86400), "start_timeout": (10, 86400),
              "restart_limit": (1, 100), "max_jobs": (1, 1024), "speed_factor": (1, 1000), "id": (0, 50)}
    for field, (low, high) in sorted(limits.items()):
        try:
            value = _as_int(vm[field])
        except ValueError as exc:
            err(field, str(exc))
            continue
        if not low <= value <= high:
            what = "port" if field.endswith("_port") else "value"
            err(field, "%s %d out of range %d-%d" % (what, value, low, high))
        vm[field] = value
    if preset == "childhurd" and not errors:
        for field in ("ssh_port", "secrets_port", "vnc_port"):
            if raw.get(field) is None:
                vm[field] = CHILDHURD[field + "_base"] + 1000 * vm["id"]
    if vm["vnc_port"] is not None:
        try:
            vm["vnc_port"] = _as_int(vm["vnc_port"])
            if not 1 <= vm["vnc_port"] <= 65535:
                err("vnc_port", "port %d out of range 1-65535" % vm["vnc_port"])
        except ValueError as exc:
            err("vnc_port", str(exc))

    for field in ("deliver_secrets", "auto_start", "enabled", "snapshot"):
        try:
            vm[field] = _as_bool(vm[field])
        except ValueError as exc:
            err(field, str(exc))
    for field, choices in (("secrets_transport", TRANSPORTS), ("accelerator", ACCELERATORS),
                           ("disk_interface", ("virtio", "ide", "scsi")),
                           ("image_format", ("", "qcow2", "raw"))):
        if vm[field] not in choices:
            err(field, "must be one of %s, got %r" % (", ".join(repr(c) for c in choices), vm[field]))
    if not isinstance(vm["nic_model"], str) or not CPU_RE.match(vm["nic_model"]):
        err("nic_model", "a QEMU NIC model, got %r" % (vm["nic_model"],))
    if not isinstance(vm["offloading_user"], str) or not NAME_RE.match(vm["offloading_user"]):
        err("offloading_user", "a user name, got %r" % (vm["offloading_user"],))
    for field in ("qemu_extra_args", "features", "mandatory_features"):
        value = vm[field]
        if not isinstance(value, list) or not all(isinstance(v, (str, int)) for v in value):
            err(field, "a list of strings")
            continue
        vm[field] = [str(v) for v in value]
        if field != "qemu_extra_args":
            for feature in vm[field]:
                if not re.match(r"^[A-Za-z0-9_.+-]+$", feature):
                    err(field, "feature %r: letters, digits, '.', '_', '+', '-' only" % feature)
    for arg in vm["qemu_extra_args"] if isinstance(vm["qemu_extra_args"], list) else []:
        if "\n" in arg:
            err("qemu_extra_args", "argument %r contains a newline" % arg)
    if errors:
        raise BuildVMError(errors)
    if not vm["image_format"]:
        vm["image_format"] = "qcow2" if image.endswith(".qcow2") else "raw"
    return vm


def forwards(vm):
    """``[(host port, guest port, field)]`` the VM forwards from 127.0.0.1."""
    out = [(vm["ssh_port"], 22, "ssh_port")]
    if vm["secrets_transport"] == "tcp":
        out.append((vm["secrets_port"], SECRETS_GUEST_PORT, "secrets_port"))
    if vm.get("vnc_port"):
        out.append((vm["vnc_port"], 5900, "vnc_port"))
    return out


def validate(machines, listening=None):
    """Normalise every entry; returns the list or raises BuildVMError with every problem.

    ``listening``: TCP ports already bound on the host (by anything but these VMs'
    own units), checked for enabled VMs.
    """
    if not isinstance(machines, list):
        raise BuildVMError(["build_vm_machines: must be a list, got %s" % type(machines).__name__])
    errors, out, names, ports = [], [], {}, {}
    listening = set(int(p) for p in (listening or []))
    for index, raw in enumerate(machines):
        try:
            vm = normalize(raw, index)
        except BuildVMError as exc:
            errors.extend(exc.messages)
            continue
        label = _label(index, raw)
        if vm["name"] in names:
            errors.append("%s: field 'name': %r is also the name of build_vm_machines[%d]"
                          % (label, vm["name"], names[vm["name"]]))
        names[vm["name"]] = index
        for port, _guest, field in forwards(vm) if vm["enabled"] else ():
            if port in ports:
                errors.append("%s: field '%s': port %d is already used by %s"
                              % (label, field, port, ports[port]))
            else:
                ports[port] = "%s field '%s'" % (label, field)
            if port in listening:
                errors.append("%s: field '%s': port %d is already listening on this host"
                              % (label, field, port))
        out.append(vm)
    if errors:
        raise BuildVMError(errors)
    return out


def listening_ports(ss_output, own_pids=()):
    """TCP ports listening on the host, except those held by ``own_pids`` (the build VMs'
    running QEMU processes, which hold their own ports legitimately).

    ``ss_output``: text of ``ss -Htlnp`` (state, queues, local address, peer, process).
    """
    own = set(str(p) for p in own_pids if str(p) not in ("", "0"))
    busy = set()
    for line in ss_output.splitlines():
        parts = line.split()
        if len(parts) < 4:
            continue
        port = parts[3].rsplit(":", 1)[-1]
        if not port.isdigit():
            continue
        pids = set(re.findall(r"pid=(\d+)", " ".join(parts[5:])))
        if pids and pids <= own:
            continue
        busy.add(int(port))
    return sorted(busy)


# ---------------------------------------------------------------------------
# QEMU command line

def guest_append(vm):
    """Kernel command line: the image's own plus the guest's secrets timeout."""
    parts = [vm["append"]] if vm["append"] else []
    parts.append("vmhost.secrets_timeout=%d" % vm["secrets_timeout"])
    return " ".join(parts)


def effective_cpu(vm, accel):
    """The -cpu value: the entry's model, else the date table's; ``host`` needs KVM (TCG: max)."""
    cpu = vm["cpu"] if vm["cpu"] else cpu_model_for_date(vm["systems"], vm["date"])
    if cpu == "host" and accel != "kvm":
        return "max"
    return cpu


def qemu_argv(vm, accel="tcg", qemu=None):
    """The full QEMU command of one normalised VM entry (a list of strings)."""
    if accel not in ("kvm", "tcg"):
        raise BuildVMError(["accelerator must be kvm or tcg once probed, got %r" % (accel,)])
    binary, machine = qemu_for(vm["systems"][0])
    name = vm["name"]
    argv = [qemu or "/usr/bin/" + binary, "-name", "build-vm-%s" % name] + machine
    argv += ["-accel", "kvm" if accel == "kvm" else "tcg,thread=multi"]
    cpu = effective_cpu(vm, accel)
    if cpu:
        argv += ["-cpu", cpu]
    argv += ["-smp", str(vm["cpu_count"]), "-m", str(vm["memory"]),
             "-rtc", "base=%s" % vm["date"],
             "-nodefaults", "-no-user-config", "-display", "none",
             "-serial", "stdio", "-no-reboot"]
    if vm["snapshot"]:
        argv.append("-snapshot")
    argv += ["-drive", "file=%s,if=%s,format=%s" % (vm["image"], vm["disk_interface"], vm["image_format"])]
    if vm["kernel"]:
        argv += ["-kernel", vm["kernel"]]
        if vm["initrd"]:
            argv += ["-initrd", vm["initrd"]]
        argv += ["-append", guest_append(vm)]
    fwd = ",".join("hostfwd=tcp:127.0.0.1:%d-:%d" % (host, guest) for host, guest, _f in forwards(vm))
    argv += ["-nic", "user,model=%s,%s" % (vm["nic_model"], fwd)]
    argv += ["-device", "virtio-rng-pci"] if vm["disk_interface"] == "virtio" else []
    run = runtime_dir(name)
    argv += ["-device", "virtio-serial-pci,id=vs0"]
    if vm["secrets_transport"] == "virtio-serial":
        argv += ["-chardev", "socket,id=secrets,path=%s/secrets.sock,server=on,wait=off" % run,
                 "-device", "virtserialport,bus=vs0.0,chardev=secrets,name=%s" % SECRETS_PORT_NAME]
    argv += ["-chardev", "socket,id=qga0,path=%s/qga.sock,server=on,wait=off" % run,
             "-device", "virtserialport,bus=vs0.0,chardev=qga0,name=%s" % QGA_PORT_NAME]
    argv += list(vm["qemu_extra_args"])
    return argv


def sender_argv(vm, python="/usr/bin/python3", program=SECRET_SERVICE):
    """The host's secret sender for ExecStartPost (None when secrets are not delivered)."""
    if not vm["deliver_secrets"]:
        return None
    if vm["secrets_transport"] == "virtio-serial":
        target = ["--unix", "%s/secrets.sock" % runtime_dir(vm["name"])]
    else:
        target = ["--tcp", "127.0.0.1:%d" % vm["secrets_port"]]
    return [python, program, "send"] + target + [
        "--secret-root", secret_root(vm["name"]), "--timeout", str(vm["start_timeout"])]


_SYSTEMD_SPECIAL = re.compile(r'[\s"\'\\;]')


def systemd_quote(arg):
    """One argument as systemd's ExecStart= parses it back (specifiers and $ escaped)."""
    arg = arg.replace("%", "%%").replace("$", "$$")
    if arg and not _SYSTEMD_SPECIAL.search(arg):
        return arg
    return '"%s"' % arg.replace("\\", "\\\\").replace('"', '\\"')


def systemd_command(argv):
    return " ".join(systemd_quote(a) for a in argv)


# ---------------------------------------------------------------------------
# offload entries

def _public_key_fields(line):
    """``(type, base64 blob)`` of an OpenSSH public key line, checked."""
    parts = (line or "").strip().split()
    if len(parts) < 2 or not parts[0].startswith(("ssh-", "ecdsa-", "sk-")):
        raise BuildVMError(["not an OpenSSH public key: %r" % ((line or "")[:40],)])
    try:
        base64.b64decode(parts[1].encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise BuildVMError(["not an OpenSSH public key (bad base64): %r" % (parts[1][:40],)])
    return parts[0], parts[1]


def nix_machine_line(vm, host_key):
    """One /etc/nix/machines line; the 8th field pins ``host_key`` through the ssh_config alias."""
    kind, blob = _public_key_fields(host_key)
    pinned = base64.b64encode(("%s %s" % (kind, blob)).encode("ascii")).decode("ascii")
    fields = ["ssh-ng://%s" % host_alias(vm["name"]),
              ",".join(vm["systems"]),
              offload_key(vm["name"]),
              str(vm["max_jobs"]),
              str(vm["speed_factor"]),
              ",".join(vm["features"]) or "-",
              ",".join(vm["mandatory_features"]) or "-",
              pinned]
    return " ".join(fields)


def ssh_config_block(vm, known_hosts=KNOWN_HOSTS):
    lines = ["Host %s" % host_alias(vm["name"]),
             "    HostName 127.0.0.1",
             "    Port %d" % vm["ssh_port"],
             "    User %s" % vm["offloading_user"],
             "    IdentityFile %s" % offload_key(vm["name"]),
             "    IdentitiesOnly yes",
             "    HostKeyAlias %s" % host_alias(vm["name"]),
             "    StrictHostKeyChecking yes",
             "    UserKnownHostsFile %s" % known_hosts,
             "    BatchMode yes"]
    return "\n".join(lines) + "\n"


def known_hosts_lines(vm, host_keys):
    """Pinned lines for the alias and for [127.0.0.1]:PORT, one per host key line."""
    names = "%s,[127.0.0.1]:%d" % (host_alias(vm["name"]), vm["ssh_port"])
    out = []
    for line in host_keys:
        kind, blob = _public_key_fields(line)
        out.append("%s %s %s" % (names, kind, blob))
    return out


def _scheme_string(text):
    return '"%s"' % text.replace("\\", "\\\\").replace('"', '\\"')


def guix_machine_entry(vm, host_key):
    """One (build-machine ...) form for /etc/guix/machines.scm."""
    kind, blob = _public_key_fields(host_key)
    systems = " ".join(_scheme_string(s) for s in vm["systems"])
    lines = ["(build-machine",
             "  (name \"localhost\")",
             "  (port %d)" % vm["ssh_port"],
             "  (systems (list %s))" % systems,
             "  (user %s)" % _scheme_string(vm["offloading_user"]),
             "  (host-key %s)" % _scheme_string("%s %s" % (kind, blob)),
             "  (private-key %s)" % _scheme_string(offload_key(vm["name"])),
             "  (parallel-builds %d)" % vm["max_jobs"],
             "  (speed %d.0)" % vm["speed_factor"]]
    if vm["features"]:
        lines.append("  (features (list %s))" % " ".join(_scheme_string(f) for f in vm["features"]))
    return "\n".join(lines) + ")"


# ---------------------------------------------------------------------------
# what the role's assert task reports

def problems(machines, ss_output="", own_pids=(), missing_paths=()):
    """Every problem of the machine list as one message each ([] when all is well).

    ``ss_output``/``own_pids``: see :func:`listening_ports`; ``missing_paths``: files
    (image, kernel, initrd) that a stat on the host did not find.
    """
    try:
        vms = validate(machines, listening_ports(ss_output or "", own_pids))
    except BuildVMError as exc:
        return exc.messages
    missing = set(missing_paths or ())
    out = []
    for index, vm in enumerate(vms):
        if not vm["enabled"]:
            continue
        for field in ("image", "kernel", "initrd"):
            if vm[field] and vm[field] in missing:
                out.append("build_vm_machines[%d] (VM %r): field '%s': %s does not exist on the host"
                           % (index, vm["name"], field, vm[field]))
    return out


def kvm_possible(system, machine):
    """Whether KVM can run a ``system`` guest on a host whose ``uname -m`` is ``machine``."""
    return machine in SYSTEMS[system]["arches"]


def console_for(system):
    return SYSTEMS[system]["console"]
