"""Field tables, validation, serialization and socket planning of libvirt_conf."""
import pathlib
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.vmhost.virt.plugins.module_utils import libvirt_conf as lc

DATA = pathlib.Path(__file__).parent / "data" / "libvirt_conf_keys.txt"
LENS_TYPE = {"bool": "bool", "int": "int", "str": "str", "list": "str_array"}


def shipped_keys():
    keys = {}
    for line in DATA.read_text().splitlines():
        if line and not line.startswith("#"):
            conf, key, typ = line.split()
            keys[(conf, key)] = typ
    return keys


SHIPPED = shipped_keys()


@pytest.mark.parametrize("daemon", ["libvirtd", "virtlogd"])
def test_every_table_key_is_in_the_shipped_commented_file(daemon):
    for field in lc.table(daemon):
        assert (daemon, field.key) in SHIPPED, (
            "%s is not a key of Debian's commented %s.conf" % (field.key, daemon))


@pytest.mark.parametrize("daemon", ["libvirtd", "virtlogd"])
def test_table_types_match_libvirts_augeas_lens(daemon):
    for field in lc.table(daemon):
        assert SHIPPED[(daemon, field.key)] == LENS_TYPE[field.base_type], field.key


def test_reference_names_that_libvirtd_does_not_read_are_renamed_or_dropped():
    keys = set(f.key for f in lc.LIBVIRTD_FIELDS)
    for wrong, right in lc.REFERENCE_RENAMES.items():
        assert ("libvirtd", wrong) not in SHIPPED and wrong not in keys
        assert ("libvirtd", right) in SHIPPED and right in keys
    for dropped in lc.DROPPED_REFERENCE_FIELDS:
        assert ("libvirtd", dropped) not in SHIPPED and dropped not in keys


def test_every_reference_field_is_covered():
    # The Guix libvirt-configuration field names (minus the package fields), mechanically
    # derived as the reference does: dashes to underscores, "?" dropped.
    reference = """listen-tls? listen-tcp? tls-port tcp-port listen-addr mdns-adv? mdns-name
        unix-sock-group unix-sock-ro-perms unix-sock-rw-perms unix-sock-admin-perms unix-sock-dir
        auth-unix-ro auth-unix-rw auth-tcp auth-tls access-drivers key-file cert-file ca-file
        crl-file tls-no-sanity-cert tls-no-verify-cert tls-allowed-dn-list sasl-allowed-usernames
        tls-priority max-clients max-queued-clients max-anonymous-clients min-workers max-workers
        prio-workers max-requests max-client-requests admin-min-workers admin-max-workers
        admin-max-clients admin-max-queued-clients admin-max-client-requests log-level log-filters
        log-outputs audit-level audit-logging host-uuid host-uuid-source keepalive-interval
        keepalive-count admin-keepalive-interval admin-keepalive-count ovs-timeout""".split()
    keys = set(f.key for f in lc.LIBVIRTD_FIELDS)
    for name in reference:
        key = name.replace("?", "").replace("-", "_")
        key = lc.REFERENCE_RENAMES.get(key, key)
        assert key in keys or key in lc.DROPPED_REFERENCE_FIELDS, key


def test_virtlogd_reference_defaults():
    assert lc.defaults("virtlogd") == {
        "log_level": 3, "log_filters": "3:remote 4:event", "log_outputs": "3:syslog:virtlogd",
        "max_clients": 1024, "max_size": 2097152, "max_backups": 3, "admin_max_clients": 5}


def test_default_rendering_types():
    text = lc.render("libvirtd", {})
    assert "listen_tcp = 0\n" in text
    assert "max_clients = 5000\n" in text
    assert 'log_filters = "3:remote 4:event"\n' in text
    assert '# host_uuid = ""\n' in text
    assert "# access_drivers = []\n" in text
    assert "# tcp_min_ssf is unset\n" in text


def test_values_render_in_libvirt_syntax():
    text = lc.render("libvirtd", {"listen_tcp": True, "max_clients": "42",
                                  "sasl_allowed_username_list": ["joe", "fred@EXAMPLE.COM"],
                                  "access_drivers": ["polkit"], "tcp_min_ssf": 112})
    assert "listen_tcp = 1\n" in text
    assert "max_clients = 42\n" in text
    assert 'sasl_allowed_username_list = ["joe","fred@EXAMPLE.COM"]\n' in text
    assert 'access_drivers = ["polkit"]\n' in text
    assert "tcp_min_ssf = 112\n" in text


def test_extra_settings_are_typed_by_yaml_type():
    text = lc.render("libvirtd", {}, extra={"new_bool": True, "new_int": 7,
                                            "new_str": "x", "new_list": ["a", "b"], "new_empty": ""})
    assert "new_bool = 1\n" in text
    assert "new_int = 7\n" in text
    assert 'new_str = "x"\n' in text
    assert 'new_list = ["a","b"]\n' in text
    assert "# new_empty is unset\n" in text


@pytest.mark.parametrize("values, extra, var", [
    ({"max_clients": "many"}, None, "libvirt_max_clients"),
    ({"max_clients": True}, None, "libvirt_max_clients"),
    ({"auth_tcp": "kerberos"}, None, "libvirt_auth_tcp"),
    ({"log_level": 7}, None, "libvirt_log_level"),
    ({"listen_tcp": "maybe"}, None, "libvirt_listen_tcp"),
    ({"tcp_port": "libvirt"}, None, "libvirt_tcp_port"),
    ({"tcp_port": "70000"}, None, "libvirt_tcp_port"),
    ({"listen_addr": "example.org"}, None, "libvirt_listen_addr"),
    ({"unix_sock_rw_perms": "rwx"}, None, "libvirt_unix_sock_rw_perms"),
    ({"host_uuid": "00000000-0000-0000-0000-000000000000"}, None, "libvirt_host_uuid"),
    ({"host_uuid": "nope"}, None, "libvirt_host_uuid"),
    ({"log_outputs": "3:syslog:x 9:stderr"}, None, "libvirt_log_outputs"),
    ({"log_filters": "remote"}, None, "libvirt_log_filters"),
    ({"tls_priority": 'NORMAL"x'}, None, "libvirt_tls_priority"),
    ({"access_drivers": ["selinux"]}, None, "libvirt_access_drivers"),
    ({"sasl_allowed_username_list": "joe"}, None, "libvirt_sasl_allowed_username_list"),
    ({"mdns_adv": True}, None, "libvirt_mdns_adv"),
    ({}, {"max_clients": 3}, "libvirt_extra_settings.max_clients"),
    ({}, {"Bad-Key": 3}, "libvirt_extra_settings.Bad-Key"),
    ({}, {"x": {"a": 1}}, "libvirt_extra_settings.x"),
])
def test_bad_values_name_the_variable(values, extra, var):
    with pytest.raises(lc.LibvirtConfError) as err:
        lc.render("libvirtd", values, extra=extra)
    assert var in str(err.value)


def test_virtlogd_errors_use_its_prefix():
    with pytest.raises(lc.LibvirtConfError, match="virtlogd_log_level"):
        lc.render("virtlogd", {"log_level": 7})


@pytest.mark.parametrize("values, var", [
    ({"listen_tcp": True, "auth_tcp": "none"}, "libvirt_auth_tcp"),
    ({"listen_tls": True, "tls_no_verify_certificate": True}, "libvirt_tls_no_verify_certificate"),
    ({"unix_sock_admin_perms": "0770"}, "libvirt_unix_sock_admin_perms"),
    ({"unix_sock_rw_perms": "0777", "auth_unix_rw": "none"}, "libvirt_unix_sock_rw_perms"),
])
def test_insecure_combinations_refused_unless_allowed(values, var):
    with pytest.raises(lc.LibvirtConfError) as err:
        lc.render("libvirtd", values)
    assert var in str(err.value) and "libvirt_allow_insecure" in str(err.value)
    assert lc.render("libvirtd", values, allow_insecure=True)


def test_secure_variants_pass():
    lc.render("libvirtd", {"listen_tcp": True, "auth_tcp": "sasl"})
    lc.render("libvirtd", {"tls_no_verify_certificate": True})  # TLS not listening
    lc.render("libvirtd", {"unix_sock_rw_perms": "0770", "auth_unix_rw": "none"})


def test_virtqemud_takes_the_local_subset_only():
    text = lc.render("virtqemud", dict(lc.defaults("libvirtd"), listen_tcp=True))
    assert "listen_tcp" not in text and "auth_tcp" not in text and "tls_priority" not in text
    assert 'unix_sock_group = "libvirt"' in text
    with pytest.raises(lc.LibvirtConfError, match="virtproxyd"):
        lc.render("virtqemud", {}, extra={"auth_tcp": "sasl"})


def test_parse_reads_back_the_shipped_style_and_ours():
    text = lc.render("libvirtd", {"tls_allowed_dn_list": ["C=GB,CN=*"]})
    parsed = lc.parse(text)
    assert parsed["tls_allowed_dn_list"] == ["C=GB,CN=*"]
    assert parsed["max_clients"] == 5000 and parsed["listen_tls"] == 0
    assert "host_uuid" not in parsed


_text = st.text(alphabet=st.characters(blacklist_characters='"\r\n', blacklist_categories=("Cs",)),
                max_size=20)
_names = st.from_regex(r"[a-z][a-z0-9_]{0,15}", fullmatch=True)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(_names, st.one_of(st.booleans(), st.integers(-10 ** 9, 10 ** 9), _text,
                                         st.lists(_text, max_size=4)), max_size=6))
def test_extra_settings_round_trip(extra):
    extra = dict((k, v) for k, v in extra.items() if k not in lc.fields_by_key("libvirtd"))
    parsed = lc.parse(lc.render("libvirtd", {}, extra=extra))
    for key, value in extra.items():
        if value in ("", []):
            assert key not in parsed
        elif isinstance(value, bool):
            assert parsed[key] == int(value)
        else:
            assert parsed[key] == value


def test_socket_plan_monolithic_with_tcp():
    settings_ = lc.normalize("libvirtd", {"listen_tcp": True, "listen_addr": "127.0.0.1",
                                          "tcp_port": "16519", "unix_sock_group": "virt"})[0]
    plan = lc.socket_plan(settings_, "monolithic")
    assert plan["enable"] == ["libvirtd.socket", "libvirtd-ro.socket", "libvirtd-admin.socket",
                              "libvirtd-tcp.socket"]
    assert plan["disable"] == ["libvirtd-tls.socket"]
    assert plan["services"] == ["libvirtd.service"]
    assert plan["dropins"]["libvirtd-tcp.socket"] == "[Socket]\nListenStream=\nListenStream=127.0.0.1:16519\n"
    rw = plan["dropins"]["libvirtd.socket"]
    assert "ListenStream=/run/libvirt/libvirt-sock\n" in rw
    assert "SocketGroup=virt\n" in rw and "SocketMode=0770\n" in rw
    assert "SocketMode=0700" in plan["dropins"]["libvirtd-admin.socket"]


def test_socket_plan_modular_ipv6_tls():
    settings_ = lc.normalize("libvirtd", {"listen_tls": True, "listen_addr": "::1"})[0]
    plan = lc.socket_plan(settings_, "modular")
    assert "virtqemud.socket" in plan["enable"] and "virtproxyd.socket" in plan["enable"]
    assert "virtproxyd-tls.socket" in plan["enable"] and "virtproxyd-tcp.socket" in plan["disable"]
    assert "ListenStream=[::1]:16514" in plan["dropins"]["virtproxyd-tls.socket"]
    assert plan["services"] == ["virtqemud.service", "virtproxyd.service"]
    assert not any(re.search("--listen", v) for v in plan["dropins"].values())


def test_keepalive_required_fields():
    text = lc.render("libvirtd", {})
    assert "keepalive_required = 0\n" in text and "admin_keepalive_required = 0\n" in text
    text = lc.render("virtqemud", {"keepalive_required": "yes", "admin_keepalive_required": True})
    assert "keepalive_required = 1\n" in text and "admin_keepalive_required = 1\n" in text
    with pytest.raises(lc.LibvirtConfError, match="libvirt_keepalive_required must be a boolean"):
        lc.render("libvirtd", {"keepalive_required": "sometimes"})
    # now a field: setting it through extra settings names the variable to use instead
    with pytest.raises(lc.LibvirtConfError, match="set libvirt_keepalive_required instead"):
        lc.render("libvirtd", {}, extra={"keepalive_required": False})


def test_virtlogd_admin_max_clients():
    assert "admin_max_clients = 5\n" in lc.render("virtlogd", {})
    assert "admin_max_clients = 9\n" in lc.render("virtlogd", {"admin_max_clients": 9})
    with pytest.raises(lc.LibvirtConfError, match="virtlogd_admin_max_clients must be at least 1"):
        lc.render("virtlogd", {"admin_max_clients": 0})


def test_extra_settings_reach_each_daemon_file_they_concern():
    extra = {"shared_knob": 3, "virtqemud": {"qemu_only": "q"},
             "virtproxyd": {"proxy_only": 1}, "libvirtd": {"mono_only": ["m"]}}
    files = dict((d, lc.parse(lc.render(d, {}, extra=extra)))
                 for d in ("libvirtd", "virtqemud", "virtproxyd"))
    # top-level keys: every daemon file the role writes
    assert all(f["shared_knob"] == 3 for f in files.values())
    # sections: only their own daemon's file
    assert files["virtqemud"]["qemu_only"] == "q" and "qemu_only" not in files["virtproxyd"]
    assert files["virtproxyd"]["proxy_only"] == 1 and "proxy_only" not in files["libvirtd"]
    assert files["libvirtd"]["mono_only"] == ["m"] and "mono_only" not in files["virtqemud"]
    # virtlogd has its own variable; sections mean nothing there
    assert lc.select_extra("virtqemud", {"a": 1, "virtproxyd": {"b": 2}}) == {"a": 1}


@pytest.mark.parametrize("extra, match", [
    ({"virtnetworkd": {"a": 1}}, "only a daemon section"),
    ({"a": 1, "virtqemud": {"a": 2}}, "both at the top level and in the virtqemud section"),
    ({"virtqemud": {"a": {"b": 1}}}, "libvirt_extra_settings.virtqemud.a must be"),
    ({"virtqemud": {"max_clients": 3}}, "set libvirt_max_clients instead"),
    ({"virtqemud": {"listen_tcp": True}}, "remote-access setting that virtqemud does not read"),
])
def test_extra_sections_refused(extra, match):
    with pytest.raises(lc.LibvirtConfError, match=match):
        lc.render("virtqemud", {}, extra=extra)


def test_socket_plan_retires_the_other_mode():
    settings_ = lc.normalize("libvirtd", {})[0]
    mono = lc.socket_plan(settings_, "monolithic")
    modular = lc.socket_plan(settings_, "modular")
    # modular retires every libvirtd unit, including the TCP/TLS sockets
    assert modular["retire_services"] == ["libvirtd.service"]
    assert sorted(modular["retire_sockets"]) == sorted(
        ["libvirtd.socket", "libvirtd-ro.socket", "libvirtd-admin.socket",
         "libvirtd-tcp.socket", "libvirtd-tls.socket"])
    # monolithic retires virtqemud, virtproxyd and every secondary driver daemon
    assert "virtqemud.service" in mono["retire_services"]
    assert "virtproxyd.service" in mono["retire_services"]
    for daemon in lc.SECONDARY_DAEMONS:
        assert daemon + ".service" in mono["retire_services"]
        assert daemon + "-admin.socket" in mono["retire_sockets"]
    assert "virtproxyd-tls.socket" in mono["retire_sockets"]
    # one mode never enables what it retires, and no two wanted sockets share a path
    for plan in (mono, modular):
        wanted = plan["enable"] + plan["secondary_sockets"]
        assert not set(wanted) & set(plan["retire_sockets"])
        assert not set(plan["services"]) & set(plan["retire_services"])
        paths = [re.findall(r"ListenStream=(\S+)", text)[0] for text in plan["dropins"].values()]
        assert len(paths) == len(set(paths))
    # the legacy socket path is bound by libvirtd.socket or virtproxyd.socket, and the
    # other one is retired in that mode
    assert "/run/libvirt/libvirt-sock" in mono["dropins"]["libvirtd.socket"]
    assert "/run/libvirt/libvirt-sock" in modular["dropins"]["virtproxyd.socket"]
    assert "virtproxyd.socket" in mono["retire_sockets"]
    assert "libvirtd.socket" in modular["retire_sockets"]
    assert mono["secondary_sockets"] == [] and "virtnetworkd.socket" in modular["secondary_sockets"]
