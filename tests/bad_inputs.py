# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Bad inputs and the message a user sees, shared by the backend unit tests and the
tests that run the module through Ansible (docs/security.md lists them)."""

# build_vm_secrets: refused by its backend, before anything is written
SECRETS_BAD = [
    ({"name": "a/b"}, "name 'a/b' must be a single path component"),
    ({"name": ".."}, "name '..' must be a single path component"),
    ({"name": "-x"}, "name '-x' must be a single path component"),
    ({"name": "a b"}, "name 'a b' may only contain letters, digits and . _ @ + -"),
    ({"offloading_user": "../root"}, "offloading_user: name '../root' must be a single path component"),
    ({"ssh_rsa_bits": 2048}, "ssh_rsa_bits=2048 is too small: RSA keys need 3072 bits or more"),
    ({"ssh_port": 0}, "ssh_port=0 is not a TCP port"),
    ({"ssh_port": 65536}, "ssh_port=65536 is not a TCP port"),
    ({"nix_key_name": "a:b"}, "nix_key_name 'a:b' must be non-empty, without ':' or spaces"),
    ({"nix_key_name": "a b"}, "nix_key_name 'a b' must be non-empty, without ':' or spaces"),
    ({"nix_key_name": " "}, "nix_key_name ' ' must be non-empty, without ':' or spaces"),
]
