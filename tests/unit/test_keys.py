"""Unit tests for the plugins/module_utils/keys package (no root, no Ansible run)."""
import base64
import os
import signal
import subprocess
import sys
import textwrap

import pytest
from hypothesis import given, settings, strategies as st

from ansible_collections.vmhost.virt.plugins.module_utils.keys import guix, install, nix, sexp, ssh, trust
from ansible_collections.vmhost.virt.plugins.module_utils.keys.errors import KeysError
from ansible_collections.vmhost.virt.plugins.module_utils.keys.layout import check_name, secret_layout

# Two key pairs made by libgcrypt 1.10.1 with guix archive's default parameters
# "(genkey (ecdsa (curve Ed25519) (flags rfc6979)))", printed with
# gcry_sexp_sprint(GCRYSEXP_FMT_ADVANCED) exactly as `guix archive --generate-key` writes them.
LIBGCRYPT_PAIRS = [
    (b"(private-key \n (ecc \n  (curve Ed25519)\n"
     b"  (q #09F97CC1027E176B5468DAB52C875B8B10494CC670204B4452DF6296009D1848#)\n"
     b"  (d #6E3B8D8F4D52EFD36ADD168CFDB29215A6E9B0A34D169B112FBF2C0012F5FE28#)\n  )\n )\n",
     b"(public-key \n (ecc \n  (curve Ed25519)\n"
     b"  (q #09F97CC1027E176B5468DAB52C875B8B10494CC670204B4452DF6296009D1848#)\n  )\n )\n"),
    (b"(private-key \n (ecc \n  (curve Ed25519)\n"
     b"  (q #3DB34F717B3E3BDD480662045C993CC0B0ACADBCC7D88A22BC2593ED8CE76A67#)\n"
     b"  (d #6FD08A0D51FEE5AF9B4F42A8530FF3070A9E67C75CFDE3B77BA48B676F4F86A0#)\n  )\n )\n",
     b"(public-key \n (ecc \n  (curve Ed25519)\n"
     b"  (q #3DB34F717B3E3BDD480662045C993CC0B0ACADBCC7D88A22BC2593ED8CE76A67#)\n  )\n )\n"),
]


# --- s-expressions ---------------------------------------------------------

atoms = st.binary(min_size=0, max_size=40)
trees = st.recursive(st.lists(atoms, max_size=4),
                     lambda children: st.lists(st.one_of(atoms, children), max_size=4), max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(trees)
def test_sexp_advanced_print_reads_back(tree):
    assert sexp.sexp_parse(sexp.sexp_dump(tree)) == tree


@settings(max_examples=200, deadline=None)
@given(trees)
def test_sexp_canonical_reads_back(tree):
    assert sexp.sexp_parse(sexp.sexp_dump_canonical(tree)) == tree


def test_sexp_reader_accepts_every_transport_form():
    tree = sexp.sexp_parse(b'(a 3:b c #6465# "x\\n\\x41" |Zm9v| 2"hi")')
    assert tree == [b"a", b"b c", b"de", b"x\nA", b"foo", b"hi"]


@pytest.mark.parametrize("bad", [b"", b"abc", b"(a", b"(a))", b"(#12)", b"(3:ab)", b'("abc)', b"(1a)",
                                 b"(|@@|)", b"(a)(b)"])
def test_sexp_reader_rejects_garbage(bad):
    with pytest.raises(KeysError):
        sexp.sexp_parse(bad)


def test_sexp_printer_chooses_encodings_like_libgcrypt():
    assert sexp.sexp_dump([b"a", b"tok-en", b"12", b"with space", b"\x00\x01", b"\xff", b""]) == \
        b'(a tok-en "12" "with space" #0001# #FF# "")\n'
    assert sexp.sexp_dump([b"acl"]) == b"(acl)\n"


# --- Guix keys ---------------------------------------------------------------

@pytest.mark.parametrize("secret,public", LIBGCRYPT_PAIRS)
def test_guix_keys_match_libgcrypt_bytes(secret, public):
    d, q = guix.parse_guix_secret(secret)
    assert guix.guix_key_from_scalar(d) == (secret, public)
    assert guix.parse_guix_public(public) == q


def test_guix_generated_key_is_consistent():
    secret, public = guix.generate_guix_key()
    d, q = guix.parse_guix_secret(secret)
    assert guix.parse_guix_public(public) == q
    # libgcrypt's clamping: bit 255 clear, bit 254 set, d = 0 mod 8.
    assert d >> 254 == 1 and d % 8 == 0
    assert secret.startswith(b"(private-key \n (ecc \n  (curve Ed25519)\n  (q #")


def test_guix_secret_with_wrong_q_is_rejected():
    secret = LIBGCRYPT_PAIRS[0][0].replace(b"09F97CC1", b"19F97CC1")
    with pytest.raises(KeysError, match="q does not match d"):
        guix.parse_guix_secret(secret, what="x.sec")


def test_guix_secret_mpi_leading_zero_stripped():
    # A scalar below 2**248 prints as a 31-byte MPI, as libgcrypt does.
    secret, _public = guix.guix_key_from_scalar(0x1234)
    assert b"(d #1234#)" in secret
    assert guix.parse_guix_secret(secret)[0] == 0x1234


# --- ACL ---------------------------------------------------------------------

def _pub_tree(i):
    return sexp.sexp_parse(LIBGCRYPT_PAIRS[i][1])


def test_acl_round_trip_and_layout():
    text = trust.acl_dump([_pub_tree(0), _pub_tree(1)])
    assert text.startswith(b"(acl \n (entry \n  (public-key \n   (ecc \n    (curve Ed25519)\n    (q #09F97CC1")
    assert b"  (tag \n   (guix import)\n   )\n  )\n (entry" in text
    assert trust.parse_acl(text) == [_pub_tree(0), _pub_tree(1)]
    assert trust.parse_acl(b"(acl)") == []


def test_acl_merge_prepends_keeps_and_deduplicates():
    a, b = _pub_tree(0), _pub_tree(1)
    assert trust.acl_merge([a], add=[b]) == [b, a]
    assert trust.acl_merge([a, b, a], add=[b]) == [b, a]
    assert trust.acl_merge([a, b], add=[], remove=[a]) == [b]
    # A reformatted copy of the same key is the same key.
    same = sexp.sexp_parse(sexp.sexp_dump_canonical(a))
    assert trust.acl_merge([a], add=[same]) == [same]


@pytest.mark.parametrize("bad,msg", [
    (b"(public-key (ecc (curve Ed25519)))", "does not start with"),
    (b"not an acl", "not a Guix ACL"),
    (b"(acl (entry (public-key (ecc)) (tag (guix export))))", "entry 1"),
    (b"(acl (foo))", "entry 1"),
])
def test_acl_rejects_non_acls(bad, msg):
    with pytest.raises(KeysError, match=msg):
        trust.parse_acl(bad, what="/etc/guix/acl")


# --- Nix keys ----------------------------------------------------------------

def test_nix_key_layout():
    seed = bytes(range(32))
    secret, public = nix.nix_key_from_seed("cache-1", seed)
    raw = base64.b64decode(secret.split(":", 1)[1])
    assert len(raw) == 64 and raw[:32] == seed
    assert base64.b64decode(public.split(":", 1)[1]) == raw[32:]
    assert nix.parse_nix_secret(secret) == ("cache-1", seed, public)
    assert nix.parse_nix_public(public) == public


@pytest.mark.parametrize("bad", ["", "nocolon", "n:notbase64!", "n:" + base64.b64encode(b"x" * 32).decode(),
                                 "n:" + base64.b64encode(b"x" * 64).decode()])
def test_nix_secret_rejects_bad(bad):
    with pytest.raises(KeysError):
        nix.parse_nix_secret(bad)


def test_nix_name_must_not_contain_colon():
    with pytest.raises(KeysError):
        nix.nix_key_from_seed("a:b", bytes(32))


def test_nix_conf_trust():
    key = "vm-1:AAAA"
    assert trust.nix_conf_trust("", key) == "extra-trusted-public-keys = vm-1:AAAA\n"
    assert trust.nix_conf_trust("a = b", key) == "a = b\nextra-trusted-public-keys = vm-1:AAAA\n"
    text = "trusted-public-keys = cache.nixos.org-1:X\nx = y\n"
    once = trust.nix_conf_trust(text, key)
    assert once == "trusted-public-keys = cache.nixos.org-1:X vm-1:AAAA\nx = y\n"
    assert trust.nix_conf_trust(once, key) == once
    assert trust.nix_conf_trust(once, "vm-1:BBBB", remove=[key]) == \
        "trusted-public-keys = cache.nixos.org-1:X vm-1:BBBB\nx = y\n"
    extra = "extra-trusted-public-keys = other:Y # mine\n"
    assert trust.nix_conf_trust(extra, key) == "extra-trusted-public-keys = other:Y vm-1:AAAA # mine\n"


# --- SSH keys ----------------------------------------------------------------

@pytest.mark.parametrize("kind,bits", [("ed25519", 256), ("ecdsa", 256), ("rsa", 3072)])
def test_ssh_key_generation(kind, bits):
    private, public = ssh.generate_ssh_key(kind)
    assert private.startswith(b"-----BEGIN OPENSSH PRIVATE KEY-----\n")
    key = ssh.load_ssh_private(private)
    assert ssh.ssh_key_kind(key) == (kind, bits)
    assert ssh.ssh_public_line(key) == public
    assert ssh.ssh_fingerprint(public).startswith("SHA256:") and not ssh.ssh_fingerprint(public).endswith("=")


def test_ssh_rejects_small_rsa_and_unknown_types():
    with pytest.raises(KeysError, match="3072"):
        ssh.generate_ssh_key("rsa", 2048)
    with pytest.raises(KeysError, match="unknown SSH key type"):
        ssh.generate_ssh_key("dsa")


def test_ssh_corrupt_private_key_named():
    with pytest.raises(KeysError, match="/x/key"):
        ssh.load_ssh_private(b"-----BEGIN OPENSSH PRIVATE KEY-----\ngarbage\n", what="/x/key")


def test_known_hosts_line():
    _priv, public = ssh.generate_ssh_key("ed25519")
    assert ssh.known_hosts_line("localhost", 11022, public) == "[localhost]:11022 " + public
    assert ssh.known_hosts_line("localhost", 22, public) == "localhost " + public


@pytest.mark.parametrize("name", ["a/b", "", ".", "..", "-x", "a b"])
def test_check_name_rejects(name):
    with pytest.raises(KeysError):
        check_name(name)


def test_layout():
    layout = secret_layout("/s", ["ed25519"])
    assert layout["host_keys"]["ed25519"] == ("/s/etc/ssh/ssh_host_ed25519_key", "/s/etc/ssh/ssh_host_ed25519_key.pub")
    assert layout["authorized"] == "/s/etc/ssh/authorized_keys.d/offloading"
    assert layout["guix_sec"] == "/s/etc/guix/signing-key.sec"


# --- grouped writes, killed at every step -------------------------------------

CHILD = textwrap.dedent("""
    import os, signal, sys
    from ansible_collections.vmhost.virt.plugins.module_utils.keys import install
    d, stop = sys.argv[1], sys.argv[2]
    files = [(os.path.join(d, "k.pub"), b"NEW-PUBLIC\\n" * 50, 0o644),
             (os.path.join(d, "k"), b"NEW-PRIVATE\\n" * 50, 0o600)]
    steps = []
    def hook(stage):
        steps.append(stage)
        if stage == stop:
            os.kill(os.getpid(), signal.SIGKILL)
    install.write_group(files, unlink_first=[os.path.join(d, "k")] if os.path.exists(os.path.join(d, "k")) else [],
                  hook=hook)
    print("\\n".join(steps))
""")


def _run_child(tmp_path, stop):
    env = dict(os.environ)
    # install.__file__ is <root>/ansible_collections/vmhost/virt/plugins/module_utils/keys/install.py
    coll_root = os.path.abspath(os.path.join(os.path.dirname(install.__file__), *[".."] * 6))
    env["PYTHONPATH"] = os.pathsep.join([coll_root] + [p for p in [env.get("PYTHONPATH")] if p])
    return subprocess.run([sys.executable, "-c", CHILD, str(tmp_path), stop], capture_output=True, text=True,
                          env=env, check=False)


@pytest.mark.parametrize("replace", [False, True])
def test_write_group_killed_at_every_step_never_leaves_private_alone(tmp_path, replace):
    if replace:
        (tmp_path / "k.pub").write_bytes(b"OLD-PUBLIC\n")
        (tmp_path / "k").write_bytes(b"OLD-PRIVATE\n")
    done = _run_child(tmp_path, "never")
    assert done.returncode == 0, done.stderr
    stages = done.stdout.split()
    assert stages == ["written:%s/k.pub" % tmp_path, "written:%s/k" % tmp_path] + \
        (["unlinked:%s/k" % tmp_path] if replace else []) + \
        ["renamed:%s/k.pub" % tmp_path, "renamed:%s/k" % tmp_path]
    for stage in stages:
        for name in os.listdir(tmp_path):
            os.unlink(os.path.join(tmp_path, name))
        if replace:
            (tmp_path / "k.pub").write_bytes(b"OLD-PUBLIC\n")
            (tmp_path / "k").write_bytes(b"OLD-PRIVATE\n")
        proc = _run_child(tmp_path, stage)
        assert proc.returncode == -signal.SIGKILL
        pub = tmp_path / "k.pub"
        priv = tmp_path / "k"
        if priv.exists():
            assert pub.exists(), "private key without public half after kill at %s" % stage
            pair = (pub.read_bytes()[:3], priv.read_bytes()[:3])
            assert pair in [(b"OLD", b"OLD"), (b"NEW", b"NEW")], (stage, pair)
        for f in (pub, priv):
            if f.exists():
                body = f.read_bytes()
                assert body in (b"OLD-PUBLIC\n", b"OLD-PRIVATE\n", b"NEW-PUBLIC\n" * 50, b"NEW-PRIVATE\n" * 50)
        if priv.exists() and priv.read_bytes().startswith(b"NEW"):
            assert oct(priv.stat().st_mode & 0o777) == oct(0o600)
        for tmp in install.temp_files(str(tmp_path)):
            assert oct(os.stat(tmp).st_mode & 0o777) in (oct(0o600), oct(0o644))


# -- finding 8: a deeply nested Guix ACL is a KeysError, not a RecursionError
def test_deep_acl_is_refused():
    data = b"(acl " + b"(entry " * 100000 + b")" * 100001
    with pytest.raises(KeysError, match="nested more than 32 lists deep"):
        trust.parse_acl(data)
    with pytest.raises(KeysError, match="nested more than"):
        sexp.sexp_parse(b"(" * 50 + b")" * 50)
    assert sexp.sexp_parse(b"(" * 32 + b")" * 32) is not None
