# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The guest's signing keys, checked with the build daemons' own tools.

Nix: Debian's nix-bin (no daemon). A file is added to a throw-away local store
(``--store DIR``, a chroot store the nix command opens directly, as root), signed
there with ``nix store sign --key-file <generated secret key>``, and copied to a
``file://`` binary cache. Content-addressed paths count as trusted without any
signature, so the test removes the ``CA:`` line from the cached NAR info; then
``nix store verify --sigs-needed 1 --trusted-public-keys <generated public key>``
must accept the path and must refuse it with another key.

Guix: libgcrypt, the library Guix signs and verifies with (through guile-gcrypt).
The key files are read by libgcrypt, which prints them back byte for byte;
``gcry_pk_testkey`` checks q against d; a signature made with the secret key over
the data Guix signs (``(data (flags rfc6979) (hash sha256 #...#))``) verifies with
the public key. An independent reader and textbook Ed25519 arithmetic check the
files too.
"""
import hashlib
import os
import shutil
import subprocess

import pytest

from build_vm_secrets_common import CanonicalSexp, Gcrypt, base_args, ed25519_point, find, run

from ansible_collections.vmhost.virt.plugins.module_utils.keys import guix, nix, sexp

pytestmark = pytest.mark.root

NIX = ["nix", "--extra-experimental-features", "nix-command", "--option", "substituters", ""]


def _gcrypt():
    try:
        return Gcrypt()
    except OSError as exc:
        pytest.skip("libgcrypt not loadable: %s" % exc)


@pytest.fixture(scope="module")
def generated(tmp_path_factory, ansible_module):
    tmp = tmp_path_factory.mktemp("signing")
    host = tmp / "host-guix"
    host.mkdir()
    host_secret, host_public = guix.generate_guix_key()
    (host / "signing-key.pub").write_bytes(host_public)
    args = base_args(tmp, name="sig", ssh_host_key_types=["ed25519"])
    done = run(ansible_module, args)
    assert not done.get("failed"), done
    root = args["secret_root"]
    return {"done": done, "tmp": tmp, "host": host, "host_public": host_public,
            "guix_sec": os.path.join(root, "etc/guix/signing-key.sec"),
            "guix_pub": os.path.join(root, "etc/guix/signing-key.pub"),
            "guix_acl": os.path.join(root, "etc/guix/acl"),
            "nix_sec": os.path.join(root, "etc/nix/signing-key.sec"),
            "nix_pub": os.path.join(root, "etc/nix/signing-key.pub")}


@pytest.mark.skipif(shutil.which("nix") is None, reason="needs nix-bin (bindep)")
def test_nix_signs_and_verifies_with_the_generated_keys(generated, tmp_path):
    sec, pub = generated["nix_sec"], generated["nix_pub"]
    public = open(pub).read()
    assert public == generated["done"]["nix_public_key"] and public.startswith("sig-1:")
    derived = subprocess.run(NIX + ["key", "convert-secret-to-public"], stdin=open(sec), capture_output=True,
                             text=True, check=True).stdout.strip()
    assert derived == public

    store = str(tmp_path / "store")
    payload = tmp_path / "payload"
    payload.write_text("signed by a vmhost.virt build VM key\n")
    path = subprocess.run(NIX + ["--store", store, "store", "add-file", str(payload)], capture_output=True,
                          text=True, check=True).stdout.strip()
    subprocess.run(NIX + ["--store", store, "store", "sign", "--key-file", sec, path], capture_output=True,
                   text=True, check=True)
    info = subprocess.run(NIX + ["--store", store, "path-info", "--sigs", path], capture_output=True, text=True,
                          check=True).stdout
    assert " sig-1:" in info
    cache = "file://%s/cache?compression=none" % tmp_path
    subprocess.run(NIX + ["copy", "--from", store, "--to", cache, path], capture_output=True, text=True, check=True)
    narinfo = tmp_path / "cache" / (os.path.basename(path).split("-")[0] + ".narinfo")
    text = narinfo.read_text()
    assert "\nSig: sig-1:" in text
    narinfo.write_text("".join(line for line in text.splitlines(True) if not line.startswith("CA:")))

    def verify(key):
        return subprocess.run(NIX + ["--store", cache, "store", "verify", "--sigs-needed", "1",
                                     "--trusted-public-keys", key, path], capture_output=True, text=True, check=False)

    good = verify(public)
    assert good.returncode == 0, good.stderr
    other = nix.generate_nix_key("sig-1")[1]
    bad = verify(other)
    assert bad.returncode != 0 and "untrusted" in bad.stderr, bad.stderr


def test_guix_key_files_read_back_by_libgcrypt_byte_for_byte(generated):
    gcry = _gcrypt()
    for name in ("guix_sec", "guix_pub", "guix_acl"):
        data = open(generated[name], "rb").read()
        assert gcry.sprint(gcry.sexp(data)) == data, name
    host_acl = open(os.path.join(str(generated["host"]), "acl"), "rb").read()
    assert gcry.sprint(gcry.sexp(host_acl)) == host_acl


def test_guix_secret_matches_public_and_signatures_verify(generated):
    secret = open(generated["guix_sec"], "rb").read()
    public = open(generated["guix_pub"], "rb").read()
    # Independent reading of the files.
    sec_tree, pub_tree = CanonicalSexp.parse(secret), CanonicalSexp.parse(public)
    assert sec_tree[0] == b"private-key" and pub_tree[0] == b"public-key"
    sec_ecc, pub_ecc = find(sec_tree, b"ecc"), find(pub_tree, b"ecc")
    assert find(sec_ecc, b"curve") == [b"curve", b"Ed25519"] == find(pub_ecc, b"curve")
    q = find(pub_ecc, b"q")[1]
    d = int.from_bytes(find(sec_ecc, b"d")[1], "big")
    assert find(sec_ecc, b"q")[1] == q and len(q) == 32
    assert ed25519_point(d) == q
    assert generated["done"]["guix_public_key"].encode() == public

    gcry = _gcrypt()
    assert gcry.testkey(secret) == 0
    digest = hashlib.sha256(b"/gnu/store/...-hello-2.12 narinfo").hexdigest().upper()
    data = ("(data (flags rfc6979) (hash sha256 #%s#))" % digest).encode()
    signature = gcry.sign(data, secret)
    assert b"(sig-val" in signature
    assert gcry.verify(signature, data, public) == 0
    tampered = data.replace(digest[:2].encode(), b"00" if digest[:2] != "00" else b"11", 1)
    assert gcry.verify(signature, tampered, public) != 0
    assert gcry.verify(signature, data, generated["host_public"]) != 0


def test_guest_acl_holds_the_host_key_and_host_acl_the_guest_key(generated):
    guest_acl = CanonicalSexp.parse(open(generated["guix_acl"], "rb").read())
    host_acl = CanonicalSexp.parse(open(os.path.join(str(generated["host"]), "acl"), "rb").read())
    tag = [b"tag", [b"guix", b"import"]]
    assert guest_acl == [b"acl", [b"entry", CanonicalSexp.parse(generated["host_public"]), tag]]
    assert host_acl == [b"acl", [b"entry", CanonicalSexp.parse(open(generated["guix_pub"], "rb").read()), tag]]


def test_libgcrypt_printer_agrees_with_ours_on_awkward_atoms():
    gcry = _gcrypt()
    trees = [[b"a", b"tok.en-1", b"12", b"sp ace", b"\x00\x01", b"\xff\xfe", b"quo\"te", b"new\nline"],
             [b"acl"], [b"x", [b"y", [b"z"]], b"w", [b"v"]], [b"n", b"\xa1\xa2ok", b"\x7fbad", b"ok\xc3\xa9"]]
    for tree in trees:
        ours = sexp.sexp_dump(tree)
        assert gcry.sprint(gcry.sexp(sexp.sexp_dump_canonical(tree))) == ours, tree
        assert sexp.sexp_parse(ours) == tree
    # libgcrypt refuses a zero-length verbatim atom ("0:"); the empty string reads as "".
    assert gcry.sprint(gcry.sexp(b'(e "")')) == sexp.sexp_dump([b"e", b""])
