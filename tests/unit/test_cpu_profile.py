"""The CPU profile bench's pure parts: perf's report split into groups of code, wrk's
request count, the table's per-GET arithmetic, and its refusals."""

from __future__ import annotations

import re
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bench import cpu_profile
from bench.cpu_profile import Profile, group, requests_sent, shares, table
from bench.servers import BareProxy, BenchError, HAProxy

# `perf report -q --no-children --sort dso --stdio` of an NGINX worker, as perf prints it.
NGINX_REPORT = """\
    60.96%  [kernel.kallsyms]
    26.99%  nginx
     5.80%  libluajit-5.1.so.2.1.0
     4.28%  libc.so.6
     0.87%  ngx_http_lua_module.so
     0.63%  [JIT] tid 19155
     0.29%  libpcre2-8.so.0.11.2
     0.12%  ngx_http_js_module.so
     0.04%  [vdso]
     0.03%  ndk_http_module.so

"""


@pytest.mark.parametrize(
    ("dso", "expected"),
    [
        ("[kernel.kallsyms]", "kernel"),
        ("nginx", "proxy"),
        ("ngx_http_headers_more_filter_module.so", "proxy"),
        ("libluajit-5.1.so.2.1.0", "Lua"),
        ("[JIT] tid 19155", "JIT"),
        ("[nf_conntrack]", "kernel"),
        ("[unknown]", "other"),
        ("ngx_http_lua_module.so", "Lua"),
        ("ndk_http_module.so", "Lua"),
        ("ngx_http_js_module.so", "njs"),
        ("libc.so.6", "libc"),
        ("libpcre2-8.so.0.11.2", "other"),
        ("[vdso]", "other"),
    ],
)
def test_each_library_of_an_nginx_worker_falls_in_its_group(dso: str, expected: str) -> None:
    assert group(dso, "nginx") == expected


def test_the_proxy_group_is_the_binary_profiled() -> None:
    assert group("haproxy", "haproxy") == "proxy"
    assert group("haproxy", "nginx") == "other"


def test_a_report_is_split_into_shares_of_the_samples() -> None:
    split = shares(NGINX_REPORT, "nginx")
    assert split == pytest.approx(
        {"kernel": 0.6096, "proxy": 0.2699, "Lua": 0.067, "JIT": 0.0063, "njs": 0.0012, "libc": 0.0428, "other": 0.0033}
    )
    assert sum(split.values()) == pytest.approx(1.0001)  # what perf printed, rounded, summed


def test_header_lines_are_not_samples() -> None:
    report = "# Samples: 23K of event 'cpu-clock'\n#    12.00%  nginx\n    100.00%  haproxy\n"
    assert shares(report, "haproxy")["proxy"] == 1.0


def test_a_report_of_two_events_is_refused_rather_than_summed() -> None:
    with pytest.raises(BenchError, match="200%"):
        shares(
            "    60.00%  [kernel.kallsyms]\n    40.00%  nginx\n    70.00%  [kernel.kallsyms]\n    30.00%  nginx\n",
            "nginx",
        )


def test_a_report_without_samples_is_refused() -> None:
    with pytest.raises(BenchError, match="no samples"):
        shares("# nothing\n\n", "nginx")


def test_the_request_count_is_read_from_wrk() -> None:
    output = "Running 8s test @ http://127.0.0.1:1/patients/1\n  312045 requests in 8.00s, 45.21MB read\n"
    assert requests_sent(output) == 312045
    with pytest.raises(BenchError, match="requests in"):
        requests_sent("Requests/sec: 100\n")


def profile(cpu_us: float, kernel: float, lua: float = 0.0) -> Profile:
    split = dict.fromkeys(cpu_profile.GROUPS, 0.0) | {"kernel": kernel, "Lua": lua}
    split["proxy"] = 1 - kernel - lua
    return Profile(rps=30000.0, cpu_us=cpu_us, shares=split)


def test_the_table_gives_microseconds_per_group_and_the_gap_outside_and_inside_the_kernel() -> None:
    runs = {
        "nginx": [profile(25.0, 0.6, 0.08), profile(30.0, 0.6, 0.08), profile(20.0, 0.6, 0.08)],
        "nginx, access log off": [profile(21.0, 0.6), profile(29.0, 0.6), profile(17.0, 0.6)],
        "haproxy": [profile(20.0, 0.75), profile(25.0, 0.75), profile(25.0, 0.75)],
    }
    out = table(runs, seconds=8, started=datetime(2026, 12, 7, 9, 12, tzinfo=UTC))
    nginx = dict(zip(out.headers, out.rows[0], strict=True))
    cells = (nginx["CPU us per GET"], nginx["CPU vs haproxy"], nginx["kernel us"], nginx["Lua us"], nginx["runs"])
    # Paired round by round: 25/20, 30/25, 20/25.
    assert cells == ("25.00", "1.20x", "15.00", "2.00", "3")
    # 25 us a GET at 30,000 GETs a second: three quarters of a core.
    assert nginx["core busy"] == "75%"
    assert "1.25, 1.20, 0.80." in out.notes[0]
    # Round by round: all 25-20, 30-25, 20-25; kernel 15-15, 18-18.75, 12-18.75; outside 10-5, 12-6.25, 8-6.25.
    assert "all +5.00, +5.00, -5.00; median +5.00" in out.notes[1]
    assert "in the kernel +0.00, -0.75, -6.75; median -0.75" in out.notes[1]
    assert "outside it +5.00, +5.75, +1.75; median +5.00" in out.notes[1]
    # nginx minus the variant, round by round: 4, 1, 3; the Lua the variant does not have: 2, 2.4, 1.6.
    assert "what access log off costs" in out.notes[2]
    assert "+4.00, +1.00, +3.00; median +3.00" in out.notes[2]
    assert "Lua +2.00" in out.notes[2]
    assert "2026-12-07 09:12 UTC" in out.notes[-1]


def test_without_perf_the_table_has_no_split_by_code_and_says_so() -> None:
    def run(cpu_us: float) -> Profile:
        return Profile(rps=40000.0, cpu_us=cpu_us, shares={})

    runs = {
        "nginx": [run(26.0), run(27.0), run(25.0)],
        "nginx, empty budget log phase": [run(25.0), run(25.5), run(24.0)],
        "haproxy": [run(25.0), run(25.0), run(25.0)],
    }
    out = table(runs, seconds=3, started=datetime(2026, 12, 7, 13, 5, tzinfo=UTC))
    assert out.headers[-2:] == ["core busy", "runs"]  # no column by group of code
    assert not [header for header in out.headers if header.endswith(" us")]
    assert "not sampled" in out.title
    assert dict(zip(out.headers, out.rows[0], strict=True))["CPU vs haproxy"] == "1.04x"  # 26/25, 27/25, 25/25
    assert out.notes[1] == "nginx minus haproxy, us a GET round by round: all +1.00, +2.00, +0.00; median +1.00."
    # nginx minus the variant: 1, 1.5, 1.
    assert out.notes[2] == (
        "what empty budget log phase costs (nginx minus the variant, paired, us a GET): "
        "+1.00, +1.50, +1.00; median +1.00."
    )
    assert not [note for note in out.notes if "perf's samples" in note or "kernel" in note]
    # Only the variant that ran is described.
    assert "taken out, not targets: the log phase's work (an empty log_by_lua_block" in out.notes[-1]
    assert "access log;" not in out.notes[-1]


def test_without_the_logs_each_proxys_log_and_the_projects_configuration_are_weighed() -> None:
    def run(cpu_us: float) -> Profile:
        return Profile(rps=40000.0, cpu_us=cpu_us, shares={})

    runs = {
        "nginx": [run(26.0), run(28.0)],
        "nginx, access log off": [run(23.0), run(26.0)],
        cpu_profile.BARE: [run(19.0), run(20.0)],
        "haproxy": [run(25.0), run(25.0)],
        cpu_profile.QUIET_HAPROXY: [run(20.0), run(22.0)],
    }
    notes = table(runs, seconds=3, started=datetime(2026, 12, 7, 13, 30, tzinfo=UTC)).notes
    assert (
        "what its log costs haproxy (haproxy minus haproxy, no log, paired, us a GET): +5.00, +3.00; median +4.00."
        in notes
    )
    # Without either log: 23/20 and 26/22; the bare proxy 19/20 and 20/22.
    assert (
        "nginx, access log off against haproxy, no log, CPU per GET round by round: 1.15, 1.18; median 1.17x." in notes
    )
    assert "nginx, bare proxy against haproxy, no log, CPU per GET round by round: 0.95, 0.91; median 0.93x." in notes
    assert (
        "what the project's configuration costs over a bare proxy, its access log included (nginx minus nginx, "
        "bare proxy, paired, us a GET): +7.00, +8.00; median +7.50."
    ) in notes
    assert "(nginx, access log off minus nginx, bare proxy, paired, us a GET): +4.00, +6.00; median +5.00." in notes[-3]
    # The bare proxy is not one more "what ... costs" of an edit.
    assert not [note for note in notes if note.startswith("what bare proxy costs")]
    assert "haproxy, no log: the same HAProxy with `no log`." in notes[-1]


def test_the_variants_names_hold_no_comma_and_name_the_two_other_targets() -> None:
    assert not [name for name in cpu_profile.CHOICES if "," in name]
    assert cpu_profile.CHOICES["bare proxy"] == cpu_profile.BARE
    assert cpu_profile.CHOICES["haproxy no log"] == cpu_profile.QUIET_HAPROXY
    assert cpu_profile.CHOICES["access log off"] == "nginx, access log off"


def test_haproxy_without_its_log_writes_no_line_and_the_bare_proxy_passes_nginx_t(tmp_path: Path) -> None:
    for log, line in ((True, "log global"), (False, "no log")):
        haproxy = HAProxy("127.0.0.1:9", tmp_path / f"haproxy-{log}", port=1, log=log)
        haproxy.run_dir.mkdir()
        haproxy.render()
        config = haproxy.config_path.read_text()
        assert f"\n    {line}\n" in config
        assert ("\n    log global\n" in config) is log
    bare = BareProxy("127.0.0.1:9", tmp_path / "bare", port=1)
    bare.render()
    checked = subprocess.run(bare.command("-t"), capture_output=True, text=True, check=False, timeout=30)
    assert checked.returncode == 0, checked.stderr
    assert "access_log off;" in bare.config_path.read_text()


def test_an_unknown_variant_is_refused_with_the_names_there_are(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cpu_profile.main(["--no-perf", "--variants", "access log off,no such part"])
    assert exit_info.value.code == 2
    said = capsys.readouterr().err
    assert "no variant 'no such part'" in said
    assert "empty budget log phase" in said
    assert "haproxy no log" in said


def test_each_variant_is_the_rendered_proxy_less_one_part_and_passes_nginx_t(tmp_path: Path) -> None:
    assert set(cpu_profile.TAKEN_OUT) == set(cpu_profile.VARIANTS) - {"nginx"} | {cpu_profile.BARE}
    for index, (name, edits) in enumerate(cpu_profile.VARIANTS.items()):
        proxy = cpu_profile.EditedProxy("127.0.0.1:9", tmp_path / str(index), port=1, internal_port=2, edits=edits)
        proxy.render()
        config = proxy.config_path.read_text()
        assert ("log_by_lua_block" in config) is (name != "nginx, no budget log phase")
        assert ("log_by_lua_block { }" in config) is (name == "nginx, empty budget log phase")
        assert ("set $hosp_new_request_id $request_id;" in config) is (name == "nginx, $request_id")
        assert ("if ($hosp_retryable = 0)" in config) is (name != "nginx, no rewrite ifs")
        assert ("if ($hosp_origin_refused = 1)" in config) is (name != "nginx, no rewrite ifs")
        assert ("add_header X-Request-Id $hosp_request_id always;" in config) is (name != "nginx, no request id")
        assert ("set_md5 " in config) is (name not in ("nginx, $request_id", "nginx, no request id"))
        assert (re.search(r"access_log [^;]*hosp_json", config) is None) is (name == "nginx, access log off")
        proxy.check()


def test_an_edit_the_rendered_file_no_longer_matches_is_an_error() -> None:
    with pytest.raises(BenchError, match="VARIANTS"):
        cpu_profile.edit("worker_processes 1;\n", (("log_by_lua_block", ""),))


def test_nonsense_lengths_are_refused_before_anything_starts(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["--rounds", "0"], ["--seconds", "1"]):
        with pytest.raises(SystemExit) as exit_info:
            cpu_profile.main(argv)
        assert exit_info.value.code == 2
    assert "--rounds must be at least 1" in capsys.readouterr().err


def test_without_root_a_strict_kernel_is_refused_with_the_way_out(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    paranoid = tmp_path / "perf_event_paranoid"
    paranoid.write_text("2\n")
    monkeypatch.setattr(cpu_profile, "PARANOID", paranoid)
    monkeypatch.setattr(cpu_profile, "perf_binary", lambda: "/usr/bin/perf")
    monkeypatch.setattr(cpu_profile.os, "geteuid", lambda: 1000)
    with pytest.raises(BenchError, match="perf_event_paranoid=1"):
        cpu_profile.check_perf()


def test_a_machine_without_cpus_0_and_1_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cpu_profile, "perf_binary", lambda: "/usr/bin/perf")
    monkeypatch.setattr(cpu_profile.os, "geteuid", lambda: 0)
    monkeypatch.setattr(cpu_profile.os, "sched_getaffinity", lambda _: {0})
    with pytest.raises(BenchError, match="CPUs 0 and 1"):
        cpu_profile.check_perf()


def test_a_missing_perf_names_its_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")  # and perf is not in /usr/sbin, the other place looked in
    with pytest.raises(BenchError, match="linux-perf"):
        cpu_profile.perf_binary()
