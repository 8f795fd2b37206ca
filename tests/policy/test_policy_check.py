"""`datagate policy check` refuses (exit 2, one line naming file and key) what the gateway would."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import pytest

from gateway.app import Gateway
from gateway.cli import load_config
from gateway.cli import policy as policy_cli
from gateway.errors import ConfigError


def _check(directory: Path, config=None) -> int:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    policy_cli.register(sub)
    if config is None:
        args = parser.parse_args(["policy", "check", "--dir", str(directory)])
        return policy_cli.run(args, lambda p: None)
    args = parser.parse_args(["policy", "check", "--config", "gw.yaml"])
    return policy_cli.run(args, lambda p: config)


def _config(directory: Path):
    demo = load_config(None)
    policy = dataclasses.replace(demo.policy, dir=directory, watch=False)
    return dataclasses.replace(demo, policy=policy)


FIELD = "      - {name: gender, level: 2, strategy: redact}"


@pytest.mark.parametrize(
    "file, old, new, message",
    [
        ("catalog.yaml", FIELD, "      - {name: gender, level: 2, strategy: blur}",
         "datasets[0].fields[5]: dataset 'population' field 'gender': unknown strategy 'blur'"),
        ("catalog.yaml", "strategy: bucket, params: {size: 1000}",
         "strategy: bucket, params: {size: -5}",
         "datasets[2].fields[3]: dataset 'social-security' field 'monthly_pension': "
         "strategy 'bucket'"),
        ("catalog.yaml", "strategy: redact}", "strategy: redact, params: {colour: red}}",
         "datasets[0].fields[5]: dataset 'population' field 'gender'"),
        ("catalog.yaml", FIELD, "      - {name: gender, level: 2, strategy: redact, paths: [a..b]}",
         "datasets[0].fields[5]: dataset 'population' field 'gender': bad JSON path 'a..b'"),
        ("catalog.yaml", FIELD, "      - {name: gender, level: 7, strategy: redact}",
         "datasets[0].fields[5].level"),
        ("catalog.yaml", "    sharing: none", "    sharing: private", "datasets[3].sharing"),
        ("policy.csv", "p, catalog, *, *, allow, *, *, *, *",
         "p, catalog, *, *, allow, *, *, *, *\np, dept:x, population, read",
         "policy.csv:27: a row needs at least sub, dataset, act, eft"),
        ("policy.csv", "p, catalog, *, *, allow, *, *, *, *",
         'p, catalog, *, *, allow, *, *, *, *\np, "dept:x, population, read, allow',
         "policy.csv:27: not a CSV row"),
        ("policy.csv", "p, catalog, *, *, allow, *, *, *, *", "p, catalog, medical, *, allow",
         "policy.csv:26: the 'catalog' row stands for the catalog's sharing rules"),
        ("model.conf", "clearance_match(r.sub, p.clearance)", "level_match(r.sub, p.clearance)",
         "model.conf:19: matcher calls an unknown function 'level_match'"),
        ("model.conf", "&& sharing_match(", "|| sharing_match(",
         "model.conf:19: sharing_match may only end the matcher"),
        ("tests/demo.yaml", "expect: {decision: allow, reason: owner, mask_clearance: 4}",
         "expect: {decision: deny}", "policy test failed:"),
    ],
)
def test_check_refuses_what_the_gateway_refuses(
    policy_dir: Path, capsys: pytest.CaptureFixture[str], file: str, old: str, new: str,
    message: str,
) -> None:
    path = policy_dir / file
    assert old in path.read_text()
    path.write_text(path.read_text().replace(old, new, 1))
    assert _check(policy_dir) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("datagate: ") and f"{policy_dir}/" in err[0], err[0]
    assert message in err[0]
    # The gateway refuses the same directory at start, with the same words.
    with pytest.raises(ConfigError) as refused:
        Gateway(_config(policy_dir))
    assert message in str(refused.value)


def test_check_with_config_names_an_unknown_upstream(
    policy_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    catalog = policy_dir / "catalog.yaml"
    catalog.write_text(catalog.read_text().replace("upstream: demo", "upstream: dmeo", 1))
    assert _check(policy_dir) == 0  # without a config the upstream names are unknown
    assert "upstream names" in capsys.readouterr().err
    assert _check(policy_dir, _config(policy_dir)) == 2
    assert capsys.readouterr().err.strip() == (
        f"datagate: {catalog}: datasets[0].upstream: dataset 'population' names upstream "
        "'dmeo', which the config's upstreams do not define"
    )


def test_check_with_config_needs_the_pseudonym_secret(
    policy_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    catalog = policy_dir / "catalog.yaml"
    catalog.write_text(catalog.read_text().replace("strategy: redact}", "strategy: pseudonym}"))
    config = _config(policy_dir)
    config = dataclasses.replace(
        config, masking=dataclasses.replace(config.masking, pseudonym_secret=None)
    )
    assert _check(policy_dir) == 0
    capsys.readouterr()
    assert _check(policy_dir, config) == 2
    assert "needs masking.pseudonym_secret" in capsys.readouterr().err


def test_check_reports_what_keeps_plain_casbin_from_deciding_alike(
    policy_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv, model = policy_dir / "policy.csv", policy_dir / "model.conf"
    csv.write_text(
        csv.read_text().replace("p, catalog, *, *, allow, *, *, *, *\n", "")
        + "p, user:someone-else, medical, export, deny\n"
    )
    model.write_text(
        model.read_text().replace(
            " && sharing_match(r.sub, r.dataset, r.act, r.env, p.sub, p.eft)", ""
        )
    )
    assert _check(policy_dir) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[:3] == [
        f"{csv}:26: 4 of 8 fields: standard Casbin tools refuse rows shorter than the model "
        "(invalid policy size); write '*' for the rest",
        f"{model}:19: the matcher does not end with "
        "'&& sharing_match(r.sub, r.dataset, r.act, r.env, p.sub, p.eft)': standard Casbin "
        "tools will not apply the catalog's rules",
        f"{csv}: no 'p, catalog, *, *, allow, *, *, *, *' row: standard Casbin tools will "
        "refuse what the catalog (owners, unconditional datasets) and grants allow",
    ]
    assert out[-1].endswith(": 3 problem(s)")
