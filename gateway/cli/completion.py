"""`datagate completion SHELL`: the shell code that completes datagate's commands (argcomplete)."""

from __future__ import annotations

import argparse

SHELLS = ("bash", "zsh", "fish", "tcsh")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "completion",
        help="print shell completion code",
        description="Print the code that makes SHELL complete datagate's commands and flags. "
        'bash: eval "$(datagate completion bash)" in ~/.bashrc; zsh: the same in ~/.zshrc; '
        "fish: datagate completion fish > ~/.config/fish/completions/datagate.fish.",
    )
    parser.add_argument("shell", choices=SHELLS, help="the shell to complete in")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import argcomplete

    print(argcomplete.shellcode(["datagate"], shell=args.shell), end="")
    return 0
