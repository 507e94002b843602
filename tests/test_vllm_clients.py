"""The vLLM-client harness (benchmarks/vllm_clients.py) without the network: module extraction
and caching, the workload, and the checks applied to what the request functions return.
``make bench-clients`` runs it for real against the wheels' modules."""

from __future__ import annotations

import hashlib
import json
import subprocess
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from benchmarks import vllm_clients as vc
from dummy_vllm.protocol.profiles import profile_for

MODULE_TEXT = b"ASYNC_REQUEST_FUNCS = {}\n"


@dataclass
class Output:
    """The fields of vLLM's RequestFuncOutput that the checks read."""

    success: bool = True
    output_tokens: int = 0
    ttft: float = 0.0
    itl: list[float] = field(default_factory=list)
    latency: float = 0.0
    prompt_len: int = 0
    error: str = ""


def _wheel(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def test_extract_member_copies_one_file_and_hashes_it(tmp_path: Path) -> None:
    wheel = _wheel(
        tmp_path / "vllm-0.11.0-cp38-abi3-manylinux1_x86_64.whl",
        {vc.LIB_MODULE: MODULE_TEXT, "vllm/other.py": b"x = 1\n"},
    )
    dest = tmp_path / "out" / vc.MODULE_NAME
    sha = vc.extract_member(wheel, vc.LIB_MODULE, dest)
    assert dest.read_bytes() == MODULE_TEXT
    assert sha == hashlib.sha256(MODULE_TEXT).hexdigest()
    assert sorted(p.name for p in dest.parent.iterdir()) == [vc.MODULE_NAME]


def test_extract_member_missing_names_the_wheel(tmp_path: Path) -> None:
    wheel = _wheel(tmp_path / "vllm-9.9.9.whl", {"vllm/other.py": b""})
    with pytest.raises(SystemExit, match=r"vllm-9\.9\.9\.whl has no vllm/benchmarks"):
        vc.extract_member(wheel, vc.LIB_MODULE, tmp_path / vc.MODULE_NAME)


def _fake_pip(calls: list[list[str]], member: str) -> Any:
    def run(cmd: list[str], check: bool) -> subprocess.CompletedProcess[bytes]:
        calls.append(cmd)
        dest = Path(cmd[cmd.index("--dest") + 1])
        version = next(a for a in cmd if a.startswith("vllm==")).removeprefix("vllm==")
        _wheel(dest / f"vllm-{version}-cp38-abi3-manylinux1_x86_64.whl", {member: MODULE_TEXT})
        return subprocess.CompletedProcess(cmd, 0)

    return run


def test_fetch_module_downloads_extracts_and_deletes_the_wheel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = vc.RELEASES["0.33.0"]
    calls: list[list[str]] = []
    monkeypatch.setattr(subprocess, "run", _fake_pip(calls, release.member))
    source = vc.fetch_module(release, tmp_path, lambda _: None)

    assert len(calls) == 1
    assert {"download", "vllm==0.33.0", "--no-deps", "--only-binary=:all:"} <= set(calls[0])
    assert source.wheel == "vllm-0.33.0-cp38-abi3-manylinux1_x86_64.whl"
    assert source.sha256 == hashlib.sha256(MODULE_TEXT).hexdigest()
    folder = tmp_path / "0.33.0"
    assert (folder / vc.MODULE_NAME).read_bytes() == MODULE_TEXT
    assert json.loads((folder / "source.json").read_text())["wheel"] == source.wheel
    # Only the module and its provenance are kept: no wheel, no temporary folder.
    assert sorted(p.name for p in tmp_path.rglob("*")) == [
        "0.33.0",
        "endpoint_request_func.py",
        "source.json",
    ]


def test_fetch_module_reuses_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    release = vc.RELEASES["0.8.5.post1"]
    calls: list[list[str]] = []
    monkeypatch.setattr(subprocess, "run", _fake_pip(calls, release.member))
    first = vc.fetch_module(release, tmp_path, lambda _: None)
    again = vc.fetch_module(release, tmp_path, lambda _: None)
    assert again == first
    assert len(calls) == 1


def test_every_release_runs_against_its_own_era() -> None:
    for release in vc.RELEASES.values():
        era, reported = profile_for(release.profile)
        assert era is profile_for(release.version)[0], release.version
        assert release.version.startswith(reported.rsplit(".", 1)[0])
    assert set(vc.DEFAULT_VERSIONS) == {"0.11.0", "0.33.0"}


def test_workload_varies_lengths_and_includes_the_edge_cases() -> None:
    samples = vc.workload(40, 160, seed=3)
    assert len(samples) == 40
    outs = [s.output_len for s in samples]
    assert 1 in outs
    assert 2 in outs
    assert max(outs) <= 160
    assert len(set(outs)) > 20
    assert all(s.prompt_len == len(s.prompt.split()) for s in samples)
    assert len({s.prompt_len for s in samples}) > 20
    assert vc.workload(40, 160, seed=3) == samples
    assert vc.workload(40, 160, seed=4) != samples


COMPLETIONS = vc.Backend("vllm", vc.COMPLETIONS)
CHAT_011 = vc.RELEASES["0.11.0"].backends[1]
TIMING = vc.Timing(ttft_ms=100.0, itl_ms=10.0, ttft_tol_ms=75.0, itl_tol_ms=2.0)


def _good(backend: vc.Backend, output_len: int, ttft: float = 0.11) -> Output:
    n = vc.expected_itl_count(backend, output_len)
    itl = [0.0] * backend.untimed_lead_events + [0.01] * (n - backend.untimed_lead_events)
    return Output(output_tokens=output_len, ttft=ttft, itl=itl, latency=ttft + sum(itl))


def test_itl_count_follows_what_each_client_times() -> None:
    assert CHAT_011.untimed_lead_events == 1
    assert vc.RELEASES["0.33.0"].backends[1].untimed_lead_events == 0
    assert vc.expected_itl_count(COMPLETIONS, 1) == 0
    assert vc.expected_itl_count(COMPLETIONS, 5) == 4
    assert vc.expected_itl_count(CHAT_011, 1) == 1
    assert vc.expected_itl_count(CHAT_011, 5) == 5


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"success": False, "error": "Traceback ...\nKeyError: 'choices'\n"}, "KeyError"),
        ({"output_tokens": 0}, "output_tokens=0, asked 7"),
        ({"itl": [0.01] * 7}, "len(itl)=7, expected 6"),
        ({"ttft": 0.09}, "earlier than the configured 100.0 ms"),
    ],
)
def test_check_output_names_the_failure(change: dict[str, Any], reason: str) -> None:
    sample = vc.Sample("a b c", 3, 7)
    assert vc.check_output(COMPLETIONS, sample, _good(COMPLETIONS, 7), TIMING) is None
    bad = _good(COMPLETIONS, 7)
    for key, value in change.items():
        setattr(bad, key, value)
    why = vc.check_output(COMPLETIONS, sample, bad, TIMING)
    assert why is not None
    assert reason in why


def test_check_output_of_a_pooling_backend_needs_usage() -> None:
    sample = vc.Sample("a b c", 3, 7)
    assert vc.check_output(vc.EMBEDDINGS, sample, Output(prompt_len=3), TIMING) is None
    assert vc.check_output(vc.EMBEDDINGS, sample, Output(prompt_len=0), TIMING) is not None


def test_summarize_pools_itl_and_expects_the_role_chunk_gap() -> None:
    samples = [vc.Sample("a", 1, n) for n in (1, 4, 9)]
    outputs = [_good(CHAT_011, s.output_len) for s in samples]
    result = vc.BackendResult("0.11.0", "0.11", CHAT_011.name, CHAT_011.route)
    vc.summarize(result, CHAT_011, samples, outputs, TIMING)
    assert result.ok, result.failures
    # 11 decode steps of 10 ms over 14 timed gaps (one role-chunk gap per request).
    assert result.expected_itl_ms == pytest.approx(10.0 * 11 / 14)
    assert result.itl_ms == pytest.approx(10.0 * 11 / 14)
    assert result.ttft_ms == pytest.approx(110.0)


def test_summarize_fails_late_ttft_and_wrong_itl() -> None:
    samples = [vc.Sample("a", 1, 5) for _ in range(3)]
    late = [_good(COMPLETIONS, 5, ttft=0.2) for _ in samples]
    result = vc.BackendResult("0.33.0", "0.33", "vllm", vc.COMPLETIONS)
    vc.summarize(result, COMPLETIONS, samples, late, TIMING)
    assert result.failures == ["mean TTFT 200.00 ms exceeds 100.0 + 75.0 ms"]

    slow = [_good(COMPLETIONS, 5) for _ in samples]
    for out in slow:
        out.itl = [0.013] * 4
    result = vc.BackendResult("0.33.0", "0.33", "vllm", vc.COMPLETIONS)
    vc.summarize(result, COMPLETIONS, samples, slow, TIMING)
    assert result.failures == ["mean ITL 13.00 ms, expected 10.00 ± 2.0 ms"]
