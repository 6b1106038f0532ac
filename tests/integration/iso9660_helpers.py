"""Shared helpers of the iso9660 integration tests: run the module through Ansible, read images back."""
import os
import pathlib
import subprocess

import images_common

ROOT = pathlib.Path(__file__).resolve().parents[2]


def run_module(args, check=False, diff=False, env=None, prefix=()):
    """Run vmhost.virt.iso9660 on localhost; return (result dict, failed?)."""
    result = images_common.run_module("iso9660", args, check=check, diff=diff, env=env, prefix=prefix)
    return result, bool(result.get("failed"))


def run_ok(args, **kwargs):
    """run_module that must succeed; returns the result."""
    result, failed = run_module(args, **kwargs)
    assert not failed, result
    return result


def lsdl(image):
    """{path: (mode string, size, link target)} as xorriso reads the Rock Ridge tree."""
    proc = subprocess.run(["xorriso", "-no_rc", "-indev", image, "-find", "/", "-exec", "lsdl", "--"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, check=True)
    out = {}
    for line in proc.stdout.splitlines():
        if not line.startswith(("d", "-", "l", "e")):
            continue
        fields = line.split(None, 8)
        rest = fields[8]
        date = " ".join(fields[5:8])
        if " -> " in rest:
            name, target = rest.split(" -> ", 1)
            target = target.strip("'")
        else:
            name, target = rest, None
        assert fields[2:4] == ["0", "0"], "owner is not 0:0: " + line
        out[name.strip("'")] = (fields[0], int(fields[4]), target, date)
    return out


def pvd(image):
    """The primary volume descriptor fields xorriso reports (-pvd_info)."""
    proc = subprocess.run(["xorriso", "-no_rc", "-indev", image, "-pvd_info"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, check=True)
    info = {}
    for line in proc.stdout.splitlines():
        if ":" in line:
            key, value = line.split(":", 1)
            info[key.strip()] = value.strip()
    return info


def extract(image, iso_path, tmp):
    """Bytes of one file of the image (copied out with osirrox)."""
    dest = os.path.join(str(tmp), "extracted-" + iso_path.strip("/").replace("/", "_"))
    subprocess.run(["xorriso", "-no_rc", "-indev", image, "-osirrox", "on", "-extract", iso_path, dest],
                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=True)
    with open(dest, "rb") as f:
        data = f.read()
    os.unlink(dest)
    return data
