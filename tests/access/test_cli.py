"""`datagate access ...` against a running gateway: every subcommand, output and exit codes."""

from __future__ import annotations

import asyncio
import json

import pytest

from gateway.cli import main
from tests.access.conftest import Workflow
from tests.gateway.conftest import closed_port

pytestmark = pytest.mark.parametrize("workflow", ["memory"], indirect=True)


async def access(capsys, workflow: Workflow, token: str, *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    argv = ["access", *args, "--url", workflow.gw.url, "--token", token]
    try:
        code = await asyncio.to_thread(main, argv)
    except SystemExit as exc:  # argparse's own usage errors
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    # The gateway's own log lines share stdout in this process.
    out = "\n".join(line for line in out.splitlines() if " [info " not in line)
    return code, out, err


async def test_request_list_approve_withdraw_reject(capsys, workflow: Workflow) -> None:
    auditor = workflow.token("auditor-he", "taxation", purpose="tax-audit")
    officer = workflow.token("officer-hr", "human-resources", roles=["data-officer"])
    code, out, _ = await access(
        capsys,
        workflow,
        auditor,
        "request",
        "--dataset",
        "accounts",
        "--actions",
        "read,list",
        "--fields",
        "id_card",
        "--purpose",
        "tax-audit",
        "--duration",
        "2h",
        "--justification",
        "case 2026-113",
        "-o",
        "json",
    )
    assert code == 0
    request = json.loads(out)["access_request"]
    assert (request["state"], request["duration"], request["fields"]) == (
        "pending",
        7200.0,
        ["id_card"],
    )
    code, out, _ = await access(capsys, workflow, officer, "list", "--state", "pending")
    assert code == 0
    header, row = out.splitlines()
    assert header.split()[:4] == ["ID", "STATE", "REQUESTER", "DEPARTMENT"]
    assert row.split()[:5] == [request["id"], "pending", "auditor-he", "taxation", "accounts"]

    code, _, err = await access(capsys, workflow, auditor, "approve", request["id"])
    assert code == 1  # a negative answer
    assert "refused (403) self_approval: a requester can never decide its own request" in err
    code, out, _ = await access(capsys, workflow, officer, "approve", request["id"], "--note", "ok")
    assert code == 0 and " approved " in out
    code, _, err = await access(capsys, workflow, auditor, "withdraw", request["id"])
    assert code == 1 and "refused (409) not_pending" in err

    code, out, _ = await access(
        capsys,
        workflow,
        auditor,
        "request",
        "--dataset",
        "accounts",
        "--purpose",
        "tax-audit",
        "--duration",
        "10m",
        "--justification",
        "another",
        "-o",
        "json",
    )
    second = json.loads(out)["access_request"]["id"]
    code, _, err = await access(capsys, workflow, officer, "reject", second)
    assert code == 2 and "--note" in err  # argparse: the note is required
    code, out, _ = await access(capsys, workflow, officer, "reject", second, "--note", "no")
    assert code == 0 and " rejected " in out


async def test_usage_errors_and_unreachable(capsys, workflow: Workflow) -> None:
    auditor = workflow.token("auditor-he", "taxation")
    code, _, err = await access(
        capsys,
        workflow,
        auditor,
        "request",
        "--dataset",
        "accounts",
        "--purpose",
        "p",
        "--duration",
        "forever",
        "--justification",
        "x",
    )
    assert code == 2 and "--duration: expected a positive number with s, m, h or d" in err
    code, _, err = await access(
        capsys,
        workflow,
        auditor,
        "request",
        "--dataset",
        "accounts",
        "--purpose",
        "p",
        "--duration",
        "9d",
        "--justification",
        "x",
    )
    assert code == 2 and "refused (400) over_cap: duration: a grant on level-3 dataset" in err
    code, _, err = await access(
        capsys,
        workflow,
        auditor,
        "request",
        "--dataset",
        "nope",
        "--purpose",
        "p",
        "--duration",
        "1h",
        "--justification",
        "x",
    )
    assert code == 2 and "unknown_dataset: dataset: unknown dataset 'nope'" in err
    code, _, err = await access(capsys, workflow, "not-a-token", "list")
    assert code == 1 and "refused (401)" in err
    argv = ["access", "list", "--url", f"http://127.0.0.1:{closed_port()}", "--token", auditor]
    code = await asyncio.to_thread(main, argv)
    assert code == 3
    assert "cannot reach the gateway" in capsys.readouterr().err
