"""Names Meltano resolves at run time: jobs' tasks, schedules, `inherit_from`,
environments, and plugin names that must be unique.

Each rule follows what Meltano does when it resolves the name (`meltano run`'s block
parser, the schedule and environment services, the project files' index), so a project
that passes here does not fail a runner at its next `meltano run`. Names that Meltano
tolerates although they point nowhere (an environment overriding a plugin that was
removed) are warnings: real projects carry them.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from client.check.project import MELTANO_YML, PLUGIN_TYPES, Entry, Project, singular

EXTRACTORS, LOADERS, MAPPERS = "extractors", "loaders", "mappers"


def check_references(project: Project, environment: str | None = None) -> None:
    """Every reference rule, recorded on the project."""
    _duplicates(project)
    _inherit_from(project)
    _environments(project, environment)
    _jobs(project)
    _schedules(project)


def _duplicates(project: Project) -> None:
    """Two entries with one name. Meltano indexes the included files and refuses a name
    that two of them define (or one defines twice): an error. A duplicate involving
    `meltano.yml` loads, and the first definition wins: a warning."""
    groups: list[tuple[str, list[tuple[str, Entry]]]] = [
        ("plugins", [(f"{p.kind}:{p.name}", p) for p in project.plugins()])
    ]
    for kind in ("jobs", "schedules", "environments"):
        groups.append((kind, [(e.name, e) for e in project.entries(kind)]))
    for _, entries in groups:
        seen: dict[str, Entry] = {}
        for key, entry in entries:
            first = seen.setdefault(key, entry)
            if not entry.name or first is entry:
                continue
            refused = MELTANO_YML not in (first.file, entry.file)
            (project.error if refused else project.warn)(
                "duplicate-name",
                entry.file,
                entry.line,
                f"{_what(entry)} is defined twice (first in {first.file} line {first.line})"
                + (
                    ", and Meltano refuses a name that included files define twice"
                    if refused
                    else ", and Meltano ignores this one"
                ),
                "Keep one definition, or rename one"
                + (" and use inherit_from" if entry.kind in PLUGIN_TYPES else ""),
            )


def _what(entry: Entry) -> str:
    if entry.kind in PLUGIN_TYPES:
        return entry.what
    return f"the {entry.kind.removesuffix('s')} '{entry.name}'"


def _inherit_from(project: Project) -> None:
    for plugin in project.plugins():
        parent = plugin.data.get("inherit_from")
        if not isinstance(parent, str):
            continue
        if parent == plugin.name or project.plugin(plugin.kind, parent) is None:
            project.error(
                "inherit-from",
                plugin.file,
                plugin.line_of("inherit_from"),
                f"{plugin.what} inherits from '{parent}', "
                f"which is not another {singular(plugin.kind)} of the project",
                f"Add '{parent}' to plugins.{plugin.kind}, or fix the name",
            )


def _environments(project: Project, environment: str | None) -> None:
    names = {e.name for e in project.entries("environments")}
    default = project.root.get("default_environment")
    if isinstance(default, str) and default and default not in names:
        project.error(
            "environment",
            "meltano.yml",
            project.root.line_of("default_environment"),
            f"default_environment is '{default}', but no environment has that name, so "
            "every Meltano command fails",
            f"Add an environment named '{default}', or set default_environment to one of: "
            + (", ".join(sorted(names)) or "(none defined)"),
        )
    if environment is not None and environment not in names:
        project.error(
            "environment",
            "meltano.yml",
            None,
            f"there is no environment named '{environment}'",
            "Use one of: " + (", ".join(sorted(names)) or "(none defined)"),
        )
    known = {(p.kind, p.name) for p in project.plugins()}
    for env in project.entries("environments"):
        config = env.data.get("config")
        groups = config.get("plugins") if isinstance(config, dict) else None
        if not isinstance(groups, dict):
            continue
        for kind, items in groups.items():
            for item in items if isinstance(items, list) else ():
                name = item.get("name") if isinstance(item, dict) else None
                if isinstance(name, str) and (kind, name) not in known:
                    project.warn(
                        "environment-plugin",
                        env.file,
                        getattr(item, "line", env.line),
                        f"the environment '{env.name}' configures the {singular(kind)} '{name}', "
                        "which the project does not define, so Meltano ignores it",
                        f"Remove the override, or add '{name}' to plugins.{kind}",
                    )


def _resolver(project: Project) -> dict[str, Entry]:
    """Names `meltano run` resolves, as Meltano's `find_plugin` does: plugins by name
    (the first wins), then each mapper's mapping names."""
    names: dict[str, Entry] = {}
    for plugin in project.plugins():
        names.setdefault(plugin.name, plugin)
    for plugin in project.plugins():
        if plugin.kind == MAPPERS:
            for mapping in plugin.data.get("mappings") or []:
                if isinstance(mapping, dict) and isinstance(mapping.get("name"), str):
                    names.setdefault(mapping["name"], plugin)
    return names


def _commands(project: Project, plugin: Entry) -> set[str] | None:
    """A plugin's command names (its own, its parent's, its lock file's); None when they
    cannot be known offline (a Hub plugin without a lock file)."""
    found: set[str] = set()
    known = False
    seen: set[str] = set()
    current: Entry | None = plugin
    while current is not None and current.name not in seen:
        seen.add(current.name)
        commands = current.data.get("commands")
        if isinstance(commands, dict):
            found |= {str(c) for c in commands}
        lock = project.lock_for(current)
        if lock is not None:
            known = True
            if isinstance(lock.get("commands"), dict):
                found |= {str(c) for c in lock["commands"]}
        if current.data.get("namespace") or current.data.get("pip_url"):
            known = known or current.data.get("variant") is None
        parent = current.data.get("inherit_from")
        current = project.plugin(plugin.kind, parent) if isinstance(parent, str) else None
    return found if known or found else None


def _flat_split(items: Any) -> list[str]:
    """A job's tasks as `meltano run` reads them: every task flattened into one list of
    names, split on single spaces (Meltano's `TaskSets.flat_args`)."""
    out: list[str] = []
    for item in items:
        if isinstance(item, list):
            out += _flat_split(item)
        elif " " in str(item):
            out += _flat_split(str(item).split(" "))
        else:
            out.append(str(item))
    return out


def _item_line(tasks: list[Any], task: str, default: int) -> int:
    """The line of the first task item that holds `task` (a name or `plugin:command`), so
    the editor marks the task rather than the `tasks:` key."""
    lines = getattr(tasks, "item_lines", None)
    if not lines:
        return default
    name = task.partition(":")[0]
    for item, at in zip(tasks, lines, strict=False):
        words = _flat_split([item])
        if task in words or any(w.partition(":")[0] == name for w in words):
            return int(at)
    return default


def _jobs(project: Project) -> None:
    names = _resolver(project)
    jobs = {j.name for j in project.entries("jobs")}
    for job in project.entries("jobs"):
        line = job.line_of("tasks")
        tasks = job.data.get("tasks")
        if isinstance(tasks, str):
            project.error(
                "job-task",
                job.file,
                line,
                f"the tasks of the job '{job.name}' are one string, which Meltano reads one "
                "character at a time",
                f"Write them as a list: tasks: [{tasks!r}]",
            )
            continue
        if not isinstance(tasks, list):
            continue  # the schema reports it
        problem = _task_problem(project, names, jobs, _flat_split(tasks))
        if problem:
            rule, reason, todo, task = problem
            at = _item_line(tasks, task, line)
            project.error(rule, job.file, at, f"the job '{job.name}': {reason}", todo)


def _task_problem(
    project: Project, names: dict[str, Entry], jobs: set[str], tokens: list[str]
) -> tuple[str, str, str, str] | None:
    """(rule, reason, instruction, the task it is about) when `meltano run` would refuse a
    job's tasks, following its block parser: every name resolves, a command exists, and an extractor
    starts a block of mappers that a loader ends."""
    resolved: list[tuple[str, Entry, str | None]] = []
    for token in tokens:
        name, _, command = token.partition(":")
        plugin = names.get(name) if ":" not in command else None
        if plugin is None:
            return (
                "job-task",
                f"'{token}' names no plugin of the project",
                "Add the plugin, or fix the name (plugin or plugin:command)",
                token,
            )
        if token in jobs:
            return (
                "job-task",
                f"'{token}' is both a job and a plugin, which Meltano refuses as ambiguous",
                "Rename the job",
                token,
            )
        if command:
            commands = _commands(project, plugin)
            if commands is not None and command not in commands:
                return (
                    "job-command",
                    f"the {singular(plugin.kind)} '{name}' has no command '{command}', so "
                    "`meltano run` fails when it reaches it",
                    "Use one of: " + ", ".join(sorted(commands))
                    if commands
                    else "It defines no commands: add one under its commands:",
                    name,
                )
        if plugin.kind == MAPPERS and name == plugin.name:
            return (
                "job-task",
                f"'{name}' is a mapper's own name, but a task must name one of its mappings",
                "Use the name of one of the mapper's mappings",
                name,
            )
        resolved.append((token, plugin, command or None))
    i = 0
    while i < len(resolved):
        token, entry, _ = resolved[i]
        if entry.kind == EXTRACTORS:  # with or without a command, it starts a block
            j = i + 1
            while j < len(resolved) and resolved[j][1].kind == MAPPERS:
                j += 1
            if j >= len(resolved) or resolved[j][1].kind != LOADERS:
                return (
                    "job-task",
                    f"the extractor '{token}' is not followed by a loader",
                    "Write the task as 'extractor [mappings...] loader'",
                    token,
                )
            i = j + 1
            continue
        if entry.kind in (EXTRACTORS, LOADERS, MAPPERS):
            return (
                "job-task",
                f"'{token}' cannot run on its own here (Meltano expects an extractor first)",
                "Write the task as 'extractor [mappings...] loader', or a plugin:command",
                token,
            )
        i += 1
    return None


def _schedules(project: Project) -> None:
    jobs = {j.name for j in project.entries("jobs")}
    names = defaultdict(set)
    for plugin in project.plugins():
        names[plugin.kind].add(plugin.name)
    for schedule in project.entries("schedules"):
        job = schedule.data.get("job")
        if isinstance(job, str):
            if job not in jobs:
                project.error(
                    "schedule-target",
                    schedule.file,
                    schedule.line_of("job"),
                    f"the schedule '{schedule.name}' runs the job '{job}', which does not exist",
                    "Add the job, or fix the name",
                )
            continue
        for key, kind in (("extractor", EXTRACTORS), ("loader", LOADERS)):
            value = schedule.data.get(key)
            if isinstance(value, str) and value not in names[kind]:
                project.error(
                    "schedule-target",
                    schedule.file,
                    schedule.line_of(key),
                    f"the schedule '{schedule.name}' names the {key} '{value}', which is not "
                    f"{'an' if key == 'extractor' else 'a'} {key} of the project",
                    f"Add it to plugins.{kind}, or fix the name",
                )
