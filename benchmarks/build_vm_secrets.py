# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Race the keys package's key generation against the tools the reference shells out to.

- SSH host keys: ``generate_ssh_key`` for ed25519, ecdsa and rsa (3072) against
  ``ssh-keygen -A -f DIR`` (the reference's activation), one full set per round.
- Nix: ``generate_nix_key`` against ``nix key generate-secret``.
- Guix: ``generate_guix_key`` against libgcrypt's ``gcry_pk_genkey`` with guix
  archive's parameters (through ctypes; ``guix`` itself is not installed here).

Prints medians in milliseconds and the ratio reference / ours (> 1: ours faster).
Run: .venv/bin/python benchmarks/build_vm_secrets.py [rounds]
"""
import ctypes
import ctypes.util
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / ".tmp" / "collections"))

from ansible_collections.vmhost.virt.plugins.module_utils.keys import guix, nix, ssh  # noqa: E402


def median_ms(func, rounds):
    times = []
    for dummy in range(rounds):
        start = time.perf_counter()
        func()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def ssh_ours():
    for kind in ssh.SSH_KEY_TYPES:
        ssh.generate_ssh_key(kind)


def ssh_reference():
    work = tempfile.mkdtemp(prefix="bench-ssh.")
    try:
        os.makedirs(os.path.join(work, "etc", "ssh"))
        subprocess.run(["ssh-keygen", "-A", "-f", work], check=True, capture_output=True)
    finally:
        shutil.rmtree(work)


def nix_reference():
    subprocess.run(["nix", "--extra-experimental-features", "nix-command", "key", "generate-secret",
                    "--key-name", "bench-1"], check=True, capture_output=True)


def gcrypt_genkey():
    lib = ctypes.CDLL(ctypes.util.find_library("gcrypt") or "libgcrypt.so.20")
    lib.gcry_check_version.restype = ctypes.c_char_p
    lib.gcry_check_version(None)
    params = ctypes.c_void_p()
    text = b"(genkey (ecdsa (curve Ed25519) (flags rfc6979)))"
    lib.gcry_sexp_new(ctypes.byref(params), text, len(text), 1)

    def run():
        key = ctypes.c_void_p()
        if lib.gcry_pk_genkey(ctypes.byref(key), params):
            raise RuntimeError("gcry_pk_genkey failed")
    return run


def report(name, ours, reference, ref_name):
    print("%-28s ours %8.2f ms   %-28s %8.2f ms   ratio %.2f" % (name, ours, ref_name, reference, reference / ours))


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 15
    print("median of %d rounds, %s" % (rounds, time.strftime("%Y-%m-%d")))
    if shutil.which("ssh-keygen"):
        report("ssh host keys (3 types)", median_ms(ssh_ours, rounds), median_ms(ssh_reference, rounds),
               "ssh-keygen -A")
    if shutil.which("nix"):
        report("nix signing key", median_ms(lambda: nix.generate_nix_key("bench-1"), rounds),
               median_ms(nix_reference, rounds), "nix key generate-secret")
    try:
        genkey = gcrypt_genkey()
    except OSError:
        genkey = None
    if genkey:
        report("guix signing key", median_ms(guix.generate_guix_key, rounds), median_ms(genkey, rounds),
               "libgcrypt gcry_pk_genkey")


if __name__ == "__main__":
    main()
