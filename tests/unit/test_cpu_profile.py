"""The CPU profile bench's pure parts: perf's report split into groups of code, wrk's
request count, the table's per-GET arithmetic, and its refusals."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bench import cpu_profile
from bench.cpu_profile import Profile, group, requests_sent, shares, table
from bench.servers import BenchError

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
        ("[JIT] tid 19155", "Lua"),
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
        {"kernel": 0.6096, "proxy": 0.2699, "Lua": 0.0733, "njs": 0.0012, "libc": 0.0428, "other": 0.0033}
    )
    assert sum(split.values()) == pytest.approx(1.0001)  # what perf printed, rounded, summed


def test_comment_lines_are_not_samples() -> None:
    assert shares("# Samples: 23K of event 'cpu-clock'\n    100.00%  haproxy\n", "haproxy")["proxy"] == 1.0


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
    return Profile(rps=1000.0, cpu_us=cpu_us, shares=split)


def test_the_table_gives_microseconds_per_group_and_the_gap_outside_and_inside_the_kernel() -> None:
    runs = {
        "nginx": [profile(25.0, 0.6, 0.08), profile(30.0, 0.6, 0.08), profile(20.0, 0.6, 0.08)],
        "nginx, access log off": [profile(21.0, 0.6), profile(29.0, 0.6), profile(17.0, 0.6)],
        "haproxy": [profile(20.0, 0.75), profile(25.0, 0.75), profile(25.0, 0.75)],
    }
    out = table(runs, seconds=8)
    nginx = dict(zip(out.headers, out.rows[0], strict=True))
    cells = (nginx["CPU us per GET"], nginx["CPU vs haproxy"], nginx["kernel us"], nginx["Lua us"], nginx["runs"])
    # Paired round by round: 25/20, 30/25, 20/25.
    assert cells == ("25.00", "1.20x", "15.00", "2.00", "3")
    assert "1.25, 1.20, 0.80." in out.notes[0]
    # Outside the kernel, round by round: nginx 10, 12, 8; haproxy 5, 6.25, 6.25.
    assert "nginx 10.00 us, haproxy 6.25 us a GET (+3.75)" in out.notes[1]
    assert "15.00 against 18.75 (-3.75)" in out.notes[1]
    # nginx minus the variant, round by round: 4, 1, 3.
    assert "access log off +3.00 us." in out.notes[2]


def test_each_variant_is_the_rendered_proxy_less_one_part_and_passes_nginx_t(tmp_path: Path) -> None:
    for index, (name, edits) in enumerate(cpu_profile.VARIANTS.items()):
        proxy = cpu_profile.EditedProxy("127.0.0.1:9", tmp_path / str(index), port=1, internal_port=2, edits=edits)
        proxy.render()
        config = proxy.config_path.read_text()
        assert ("log_by_lua_block" in config) is (name != "nginx, no budget log phase")
        assert ("set $hosp_new_request_id $request_id;" in config) is (name == "nginx, $request_id")
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
    monkeypatch.setattr(cpu_profile.os, "geteuid", lambda: 1000)
    with pytest.raises(BenchError, match="perf_event_paranoid=1"):
        cpu_profile.check_perf()
