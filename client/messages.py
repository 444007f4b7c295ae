"""Commit messages that read well in a repository's history.

A runner's auto-commit names the Meltano command and the files it changed
(`meltano config set tap-github start_date: meltano.yml`). Values given to `config set` may
be secrets, so they never reach a message; neither do the arguments `invoke` passes on to a
plugin. A manual commit without `-m` summarises its files (`Update meltano.yml and 2 lock
files`).

Names that come from a repository or a forge (file paths, branches, URLs) may hold control
characters: an ESC or OSC sequence re-titles or repaints a terminal, and a newline or CR
forges whole lines (`status` printing "nothing to commit, working tree clean"). Every
human-readable line the CLI prints goes through `printable`, and each name in it through
`shown`, which quotes it the way git quotes paths (`"a\nb"`, `"\033]0;x\a"`). JSON output
is escaped by the JSON encoder instead.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence

from providers.contract import Author

HEADLINE = 72
"""git's customary headline width."""
REDACTED = "***"
_OTHER_CONTROLS = "\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
"""DEL, the C1 controls, and the bidirectional marks and overrides ("Trojan Source")."""
_CONTROL = re.compile("[\x00-\x1f" + _OTHER_CONTROLS + "]")
_CONTROL_BUT_LAYOUT = re.compile("[\x00-\x08\x0b-\x1f" + _OTHER_CONTROLS + "]")
"""Everything but the tab and the newline that lay out a command's own lines."""
_NAMED = {"\a": "a", "\b": "b", "\t": "t", "\n": "n", "\v": "v", "\f": "f", "\r": "r"}


def plural(count: int, word: str, words: str | None = None) -> str:
    """`1 file`, `2 files`."""
    return f"{count} {word if count == 1 else (words or word + 's')}"


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    if char in _NAMED:
        return "\\" + _NAMED[char]
    if ord(char) < 0x100:
        return f"\\{ord(char):03o}"
    return f"\\u{ord(char):04x}"


def shown(name: object) -> str:
    """A name as a terminal may print it: unchanged when it holds no control character,
    else in double quotes with C escapes, as git quotes paths."""
    text = str(name)
    if not _CONTROL.search(text):
        return text
    quoted = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + _CONTROL.sub(_escape, quoted) + '"'


def printable(text: str, *, lines: bool = True) -> str:
    """Text for a terminal with every control character escaped; `lines` keeps the tabs
    and newlines that lay out its lines (so a name inside must already be `shown`)."""
    return (_CONTROL_BUT_LAYOUT if lines else _CONTROL).sub(_escape, text)


def shown_command(cmd: Sequence[str]) -> str:
    """The command as a person would type it, with secret-bearing arguments removed."""
    args = list(cmd)
    if args and args[0].rsplit("/", 1)[-1] == "meltano":
        args[0] = "meltano"
        words = [a for a in args[1:] if not a.startswith("-")]
        if "config" in words and "set" in words[words.index("config") :]:
            args = _without_value(args, args.index("config"))
        elif "invoke" in words and words[-1] != "invoke":
            plugin = words[words.index("invoke") + 1]
            args = args[: args.index(plugin) + 1]  # a plugin's own arguments may hold secrets
    return shlex.join(args)


def _without_value(args: list[str], config_at: int) -> list[str]:
    """`meltano config set PLUGIN NAME... VALUE` (or the older `config PLUGIN set NAME
    VALUE`) without VALUE. A value after `--` goes with everything after it."""
    if "--" in args:
        return args[: args.index("--")]
    values = [
        i for i, a in enumerate(args) if i > config_at and a != "set" and not a.startswith("-")
    ]
    if len(values) < 3:  # PLUGIN and NAME only (`--interactive`): no value to hide
        return args
    return [a for i, a in enumerate(args) if i != values[-1]]


def summarize(paths: Sequence[str]) -> str:
    """`meltano.yml`, `meltano.yml and 2 lock files`, `a.yml, b.yml and 3 more files`."""
    locks = [p for p in paths if p.endswith(".lock")]
    named = [p for p in paths if not p.endswith(".lock")]
    parts = named[:2]
    rest = len(named) - len(parts)
    if locks:
        parts.append(plural(len(locks), "lock file"))
    if rest:
        parts.append(f"{rest} more {'file' if rest == 1 else 'files'}")
    if not parts:
        return "no files"
    if len(parts) == 1:
        return parts[0]
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def _headline(text: str) -> str:
    return text if len(text) <= HEADLINE else text[: HEADLINE - 1] + "…"


def trailers(run_id: str, author: Author | None) -> str:
    """`Meltano-Forge-Run:` and, when someone else is the author, `Co-authored-by:`."""
    lines = [f"Meltano-Forge-Run: {run_id}"]
    if author:
        lines.append(f"Co-authored-by: {author.name} <{author.email}>")
    return "\n".join(lines)


def for_run(cmd: Sequence[str], paths: Sequence[str], run_id: str, author: Author | None) -> str:
    """The runner's auto-commit message: `COMMAND: FILES`, the files, and trailers."""
    files = summarize(paths)
    command = shown_command(cmd)
    room = HEADLINE - len(files) - 2
    if len(command) > room:  # options go first, then the command's tail; the files stay
        command = " ".join(w for w in command.split(" ") if not w.startswith("--"))
    if len(command) > room:
        command = command[: max(room - 1, 12)] + "…"
    headline = _headline(f"{command}: {files}")
    body = "Changed by the command:\n" + "\n".join(f"- {p}" for p in paths)
    return f"{headline}\n\n{body}\n\n{trailers(run_id, author)}\n"


def for_commit(paths: Sequence[str], run_id: str, author: Author | None) -> str:
    """The default message of `meltano-forge commit` without `-m`."""
    headline = _headline(f"Update {summarize(paths)}")
    body = "\n".join(f"- {p}" for p in paths)
    return f"{headline}\n\n{body}\n\n{trailers(run_id, author)}\n"
