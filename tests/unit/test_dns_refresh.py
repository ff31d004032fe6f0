"""dns_refresh: reload NGINX exactly when the load balancer's address set changes."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.nginx import dns_refresh


class FakeDns:
    """The load balancer's DNS answers, changed by the test."""

    def __init__(self, *addresses: str) -> None:
        self.addresses = list(addresses)

    def __call__(self, host: str, port: int) -> list[str]:
        if not self.addresses:
            raise dns_refresh.RefreshError(f"cannot resolve {host}")
        return list(self.addresses)  # in the order given, as DNS does


class Reloads:
    def __init__(self, fail: bool = False) -> None:
        self.count = 0
        self.fail = fail

    def __call__(self) -> None:
        if self.fail:
            raise dns_refresh.RefreshError("nginx -t failed")
        self.count += 1


UPSTREAM = "internal-hosp.example:80"


def test_first_run_records_without_reloading_and_same_addresses_do_nothing(tmp_path: Path) -> None:
    state, dns, reloads = tmp_path / "state", FakeDns("10.0.1.5", "10.0.2.7"), Reloads()

    assert dns_refresh.refresh(UPSTREAM, state, dns, reloads) is False
    assert dns_refresh.refresh(UPSTREAM, state, dns, reloads) is False
    assert reloads.count == 0
    assert state.read_text() == "10.0.1.5\n10.0.2.7\n"


def test_changed_addresses_reload_once(tmp_path: Path) -> None:
    state, dns, reloads = tmp_path / "state", FakeDns("10.0.1.5", "10.0.2.7"), Reloads()
    dns_refresh.refresh(UPSTREAM, state, dns, reloads)

    dns.addresses = ["10.0.2.7", "10.0.3.9"]
    assert dns_refresh.refresh(UPSTREAM, state, dns, reloads) is True
    assert dns_refresh.refresh(UPSTREAM, state, dns, reloads) is False
    assert reloads.count == 1


def test_order_of_answers_is_not_a_change(tmp_path: Path) -> None:
    state, reloads = tmp_path / "state", Reloads()
    dns_refresh.refresh(UPSTREAM, state, FakeDns("10.0.2.7", "10.0.1.5"), reloads)

    assert dns_refresh.refresh(UPSTREAM, state, FakeDns("10.0.1.5", "10.0.2.7"), reloads) is False


def test_a_failed_lookup_keeps_the_recorded_addresses(tmp_path: Path) -> None:
    state, reloads = tmp_path / "state", Reloads()
    dns_refresh.refresh(UPSTREAM, state, FakeDns("10.0.1.5"), reloads)

    with pytest.raises(dns_refresh.RefreshError):
        dns_refresh.refresh(UPSTREAM, state, FakeDns(), reloads)
    assert state.read_text() == "10.0.1.5\n"
    assert reloads.count == 0


def test_a_failed_reload_is_tried_again_on_the_next_run(tmp_path: Path) -> None:
    state = tmp_path / "state"
    dns_refresh.refresh(UPSTREAM, state, FakeDns("10.0.1.5"), Reloads())

    with pytest.raises(dns_refresh.RefreshError):
        dns_refresh.refresh(UPSTREAM, state, FakeDns("10.0.9.9"), Reloads(fail=True))
    working = Reloads()
    assert dns_refresh.refresh(UPSTREAM, state, FakeDns("10.0.9.9"), working) is True
    assert working.count == 1


def test_real_resolution_of_localhost() -> None:
    assert "127.0.0.1" in dns_refresh.resolve("localhost", 80)


def test_duplicate_answers_are_one_address(tmp_path: Path) -> None:
    state = tmp_path / "state"
    dns_refresh.refresh(UPSTREAM, state, FakeDns("10.0.1.5", "10.0.1.5"), Reloads())

    assert state.read_text() == "10.0.1.5\n"


def test_cli_runs_the_reload_commands_on_a_change(tmp_path: Path) -> None:
    state, marker = tmp_path / "state", tmp_path / "reloaded"
    state.write_text("10.9.9.9\n")  # what an earlier run saw

    code = dns_refresh.main(
        ["--upstream", "localhost:80", "--state-file", str(state), "--reload-command", f"touch {marker}"]
    )

    assert code == 0
    assert marker.exists()


def test_cli_rejects_an_upstream_without_port(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = dns_refresh.main(["--upstream", "hosp.example", "--state-file", str(tmp_path / "s")])

    assert code == 1
    assert "HOST:PORT" in capsys.readouterr().err
