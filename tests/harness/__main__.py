"""CLI: python -m tests.harness up|down|list|info|build|tree|demo (see docs/harness.md)."""

import argparse
import json
import shlex
import subprocess
import sys

from .errors import HarnessError


def _parser():
    p = argparse.ArgumentParser(prog="python -m tests.harness",
                                description="Build and boot real Debian VMs and systemd-nspawn "
                                            "containers for vmhost.virt tests.")
    sub = p.add_subparsers(dest="cmd", required=True)

    up = sub.add_parser("up", help="boot an instance and wait for SSH and systemd")
    up.add_argument("--name", required=True)
    up.add_argument("--recipe", default="default")
    up.add_argument("--kind", default="vm", choices=("vm", "nspawn"),
                    help="vm: a QEMU VM (default); nspawn: a systemd-nspawn container")
    up.add_argument("--memory", type=int, default=None, help="vm: MiB (default 1024)")
    up.add_argument("--cpus", type=int, default=None, help="vm: default 2")
    up.add_argument("--guest-agent", action="store_const", const=True, default=None,
                    help="vm: add the org.qemu.guest_agent.0 channel on <instance_dir>/qga.sock")
    up.add_argument("--qemu-arg", action="append", default=None, metavar="ARG",
                    help="vm: extra QEMU argument (repeatable; use --qemu-arg=-foo for dashes)")
    up.add_argument("--drive", action="append", default=None, metavar="FILE",
                    help="vm: extra virtio drive (repeatable)")
    up.add_argument("--port", type=int, default=None,
                    help="vm: SSH port on 127.0.0.1 (default: a free one)")
    up.add_argument("--disk-size", default=None,
                    help="vm: root image size, e.g. 4G (default: tree + 1.5 GiB)")
    up.add_argument("--bind", action="append", default=None, metavar="SOURCE[:TARGET]",
                    help="nspawn: bind mount a host path read-write (repeatable)")
    up.add_argument("--bind-ro", action="append", default=None, metavar="SOURCE[:TARGET]",
                    help="nspawn: bind mount a host path read-only (repeatable)")
    up.add_argument("--nspawn-arg", action="append", default=None, metavar="ARG",
                    help="nspawn: extra systemd-nspawn option (repeatable; --nspawn-arg=--foo)")
    up.add_argument("--timeout", type=int, default=300, help="seconds to wait for SSH+systemd")
    up.add_argument("--reuse", action="store_true",
                    help="if the instance already runs, wait for it and print it instead of failing")
    up.add_argument("--options-json", default=None, metavar="JSON",
                    help="a JSON object of up() options (a molecule platform's harness: dict); "
                         "overrides the flags above")

    down = sub.add_parser("down", help="stop an instance by its PID and remove its files")
    down.add_argument("--name", required=True)

    sub.add_parser("list", help="list instances")

    b = sub.add_parser("build", help="build or refresh the cached root tree and image")
    b.add_argument("--recipe", default="default")
    b.add_argument("--disk-size", default=None)

    t = sub.add_parser("tree", help="print the cached root tree directory of a recipe "
                                    "(bootstrapping it if absent; no image, no boot)")
    t.add_argument("--recipe", default="default")
    t.add_argument("--json", action="store_true", help="print the whole build record")

    info = sub.add_parser("info", help="print an instance's JSON")
    info.add_argument("--name", required=True)

    sh = sub.add_parser("ssh", help="run a command in an instance (or print the ssh command)")
    sh.add_argument("--name", required=True)
    sh.add_argument("--print", action="store_true", help="print the ssh command line instead")
    sh.add_argument("command", nargs=argparse.REMAINDER, help="command (after --)")

    demo = sub.add_parser("demo", help="the `make demo` VM host and build host")
    demo.add_argument("action", choices=["up", "destroy"])
    demo.add_argument("--part", default="all", choices=("all", "vm-host", "build-host"),
                      help="up: bring up only one of the two hosts (for development)")
    demo.add_argument("--release", default=None, choices=("trixie", "bookworm"),
                      help="up: Debian release of both hosts (default: $VMHOST_DEMO_RELEASE, "
                           "else trixie, Debian 13)")
    demo.add_argument("--image", action="store_true",
                      help="destroy: remove the cached build VM image too")
    return p


def _binds(values, readonly):
    out = []
    for value in values or []:
        source, target = (value.split(":", 1) + [""])[:2]
        out.append({"source": source, "target": target or source, "readonly": readonly})
    return out


def main(argv=None):
    args = _parser().parse_args(argv)
    from . import api
    try:
        if args.cmd == "up":
            binds = _binds(args.bind, False) + _binds(args.bind_ro, True)
            opts = dict(recipe=args.recipe, kind=args.kind, memory=args.memory, cpus=args.cpus,
                        guest_agent=args.guest_agent, qemu_args=args.qemu_arg,
                        drives=args.drive, port=args.port, timeout=args.timeout,
                        disk_size=args.disk_size, reuse=args.reuse, binds=binds or None,
                        nspawn_args=args.nspawn_arg)
            if args.options_json:
                opts.update(api.parse_options(args.options_json))
            info = api.up(name=args.name, **opts)
            print(json.dumps(info, sort_keys=True))
        elif args.cmd == "down":
            removed = api.down(args.name)
            print(json.dumps({"name": args.name, "removed": removed}))
        elif args.cmd == "list":
            print(json.dumps(api.list_instances(), indent=2))
        elif args.cmd == "info":
            print(json.dumps(api.instance_info(args.name), sort_keys=True))
        elif args.cmd == "tree":
            result = api.tree(recipe=args.recipe)
            print(json.dumps(result, sort_keys=True) if args.json else result["tree"])
        elif args.cmd == "build":
            print(json.dumps(api.build(recipe=args.recipe, size=args.disk_size), sort_keys=True))
        elif args.cmd == "ssh":
            info = api.instance_info(args.name)
            words = args.command[1:] if args.command[:1] == ["--"] else args.command
            command = " ".join(words) or None
            argv = api.ssh_argv(info, command)
            if args.print:
                print(" ".join(shlex.quote(a) for a in argv))
                return 0
            return subprocess.call(argv)
        elif args.cmd == "demo":
            from . import demo
            return demo.up(part=args.part, release=args.release) if args.action == "up" else demo.destroy(image=args.image)
    except HarnessError as exc:
        sys.stderr.write("harness: error: %s\n" % exc)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
