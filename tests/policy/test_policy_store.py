"""Hot reload: validated before the swap, last good policy kept, announced to other instances."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import pytest

from gateway.errors import ConfigError
from gateway.policy.config import PolicyConfig
from gateway.policy.store import PolicyStore
from gateway.state.base import StateBackend

DENY_POLICE = "\np, dept:public-security, population, *, deny\n"


def _store(policy_dir: Path, rejected: list[str], **kw: object) -> PolicyStore:
    config = PolicyConfig(dir=policy_dir, watch=False)
    if kw:
        config = dataclasses.replace(config, **kw)  # type: ignore[arg-type]
    return PolicyStore(config, on_rejected=rejected.append)


async def test_reload_swaps_a_valid_change(policy_dir: Path) -> None:
    store = _store(policy_dir, [])
    swapped: list[str] = []
    store.on_swap(lambda b: swapped.append(b.version))
    old = store.current
    assert (await store.reload()).status == "unchanged"
    (policy_dir / "policy.csv").write_text(
        (policy_dir / "policy.csv").read_text() + "p, dept:taxation, enterprise, export, allow\n"
    )
    result = await store.reload()
    assert result.status == "loaded" and result.version != old.version
    assert store.current.version == result.version == swapped[0]
    assert store.current.loaded_at >= old.loaded_at


@pytest.mark.parametrize(
    "file, text, message",
    [
        ("policy.csv", "p, dept:x, population, read\n", "policy.csv:1: a row needs at least"),
        ("model.conf", "[matchers]\nm = \n", "model.conf:2: expected 'key = value'"),
        ("catalog.yaml", "version: 1\ndatasets: [\n", "catalog.yaml:3: invalid YAML"),
        # Nested past the YAML parser's recursion limit: a bad file, not a crash.
        ("catalog.yaml", "[" * 20000, "catalog.yaml: nested too deeply to parse"),
    ],
)
async def test_invalid_change_keeps_last_good_policy(
    policy_dir: Path, file: str, text: str, message: str
) -> None:
    rejected: list[str] = []
    store = _store(policy_dir, rejected)
    good = store.current
    (policy_dir / file).write_text(text)
    result = await store.reload()
    assert result.status == "rejected" and store.current is good
    assert message in result.message and rejected == [result.message]
    assert result.message.startswith(f"policy change rejected, keeping version {good.version}: ")


async def test_a_test_case_file_nested_too_deeply_rejects_the_change(policy_dir: Path) -> None:
    rejected: list[str] = []
    store = _store(policy_dir, rejected)
    good = store.current
    (policy_dir / "tests" / "deep.yaml").write_text("cases: " + "[" * 20000)
    (policy_dir / "policy.csv").write_text((policy_dir / "policy.csv").read_text() + DENY_POLICE)
    result = await store.reload()
    assert result.status == "rejected" and store.current is good
    assert result.message.endswith("deep.yaml:1: invalid YAML: exceeded maximum nesting depth")


async def test_failing_test_case_rejects_the_change(policy_dir: Path) -> None:
    rejected: list[str] = []
    store = _store(policy_dir, rejected)
    good = store.current
    csv = policy_dir / "policy.csv"
    csv.write_text(csv.read_text() + DENY_POLICE)
    result = await store.reload()
    assert result.status == "rejected" and store.current is good
    assert "policy test failed: " in rejected[0]
    assert (
        "case 'public-security officer reads population (owner)': expected decision" in rejected[0]
    )
    assert "tests/demo.yaml:" in rejected[0]


def test_invalid_policy_at_start_is_a_config_error(policy_dir: Path) -> None:
    (policy_dir / "policy.csv").write_text("p, nobody\n")
    with pytest.raises(ConfigError, match=r"policy.csv:1: "):
        _store(policy_dir, [])


async def test_watch_picks_up_a_saved_change(policy_dir: Path) -> None:
    store = _store(policy_dir, [], watch=True, watch_interval=0.1)
    await store.start()
    try:
        old = store.current.version
        csv = policy_dir / "policy.csv"
        csv.write_text(csv.read_text() + "p, dept:taxation, enterprise, export, allow\n")
        for _ in range(100):
            if store.current.version != old:
                break
            await asyncio.sleep(0.05)
        assert store.current.version != old
    finally:
        await store.close()


async def test_the_watcher_outlives_an_unexpected_failure(policy_dir: Path) -> None:
    """A check that fails in a way nobody planned for (not a ConfigError) must not stop the
    watch: the next change is still picked up."""
    calls: list[int] = []

    def flaky(bundle: object) -> None:  # passes at start, fails on the first reload
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("boom")

    config = PolicyConfig(dir=policy_dir, watch=True, watch_interval=0.1)
    store = PolicyStore(config, validators=(flaky,))
    await store.start()
    try:
        old = store.current.version
        csv = policy_dir / "policy.csv"
        csv.write_text(csv.read_text() + "p, dept:taxation, enterprise, export, allow\n")
        async with asyncio.timeout(10):
            while len(calls) < 2:
                await asyncio.sleep(0.05)
        csv.write_text(csv.read_text() + "p, dept:health, enterprise, export, allow\n")
        async with asyncio.timeout(10):
            while store.current.version == old:
                await asyncio.sleep(0.05)
    finally:
        await store.close()


async def test_reload_is_announced_to_other_instances(
    policy_dir: Path, tmp_path: Path, backend: StateBackend, peer: StateBackend
) -> None:
    config = PolicyConfig(dir=policy_dir, watch=False)
    here = PolicyStore(config, backend=backend)
    there = PolicyStore(config, backend=peer)
    await here.start()
    await there.start()
    csv = policy_dir / "policy.csv"
    csv.write_text(csv.read_text() + "p, dept:taxation, enterprise, export, allow\n")
    result = await here.reload()
    for _ in range(100):
        if there.current.version == result.version:
            break
        await asyncio.sleep(0.02)
    assert there.current.version == result.version
    await here.close()
    await there.close()
