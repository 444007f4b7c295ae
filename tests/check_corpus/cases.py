"""The check's agreement corpus: real projects and mutations of them, as data.

Each case is a base project (a Meltano fixture or a folder under `projects/`) and a list of
edits. `generate.py` runs real `meltano` on every case and records what it did in
`expected.json`; `tests/client/test_check_agreement.py` checks `meltano-forge check`
against that record. `extra` names the check's rule for a case that Meltano accepts but
that is wrong (a literal secret, a misspelt key): there the check must fail and Meltano
passes, by design.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
BASES = {
    "meltano-config": ROOT / "tests" / "fixtures" / "meltano" / "meltano-config",
    "meltano-manifest": ROOT / "tests" / "fixtures" / "meltano" / "meltano-manifest",
    "multifile_project": ROOT / "tests" / "fixtures" / "meltano" / "multifile_project",
    "el-basic": HERE / "projects" / "el-basic",
    "multifile-custom": HERE / "projects" / "multifile-custom",
}
"""Base projects: the Meltano fixtures, and two written for the corpus whose plugins are
custom (namespace and pip_url), so real Meltano needs no Hub access to load them."""

Edit = tuple[str, str | None, str | None]
"""(path, old, new): replace `old` by `new` once; old None appends; new None deletes."""


@dataclass(frozen=True)
class Case:
    """One corpus project."""

    name: str
    base: str
    edits: tuple[Edit, ...] = ()
    extra: str | None = None
    """The check rule that must fail a project Meltano accepts."""
    warns: tuple[str, ...] = field(default_factory=tuple)
    """Warning rules the check must report."""


def files_of(case: Case) -> dict[str, bytes]:
    """The case's project as path -> bytes."""
    root = BASES[case.base]
    files = {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".meltano" not in p.relative_to(root).parts
    }
    for path, old, new in case.edits:
        if new is None:
            files.pop(path)
            continue
        text = files.get(path, b"").decode()
        if old is None:
            text += new
        else:
            if text.count(old) != 1:
                raise ValueError(f"{case.name}: {old!r} is not once in {path}")
            text = text.replace(old, new)
        files[path] = text.encode()
    return files


M = "meltano.yml"
S = "config/staging.meltano.yml"
TASK = "  - tap-orders hash-emails target-warehouse\n"
GH = "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"
AWS = "AKIA" + "IOSFODNN7EXAMPLQ"


def _task(new: str) -> Edit:
    return (M, TASK, f"  - {new}\n")


CASES: tuple[Case, ...] = (
    # The bases: real projects and the corpus's own.
    Case("fixture-meltano-config", "meltano-config"),
    Case("fixture-meltano-manifest", "meltano-manifest", warns=("moving-ref",)),
    Case("fixture-multifile_project", "multifile_project"),
    Case("el-basic", "el-basic"),
    Case("multifile-custom", "multifile-custom"),
    # YAML.
    Case("yaml-syntax", "el-basic", ((M, "    executable: dbt\n", "    executable: [dbt\n"),)),
    Case("yaml-syntax-include", "el-basic", ((S, "  - dbt-warehouse:seed\n", "  - {dbt\n"),)),
    Case("yaml-tab-indent", "el-basic", ((M, "    executable: dbt\n", "\texecutable: dbt\n"),)),
    Case(
        "yaml-duplicate-key",
        "el-basic",
        ((M, "    executable: dbt\n", "    executable: dbt\n    executable: dbt2\n"),),
    ),
    Case("yaml-duplicate-top-key", "el-basic", ((M, None, "jobs: []\n"),)),
    Case(
        "yaml-duplicate-key-include",
        "el-basic",
        ((S, "    DBT_TARGET: staging\n", "    DBT_TARGET: staging\n    DBT_TARGET: s2\n"),),
    ),
    Case(
        "yaml-include-not-mapping",
        "el-basic",
        ((S, None, None), ("config/x.meltano.yml", None, "- a\n- b\n")),
    ),
    Case("yaml-include-empty", "el-basic", (("config/empty.meltano.yml", None, ""),)),
    Case("yaml-include-empty-mapping", "el-basic", (("config/empty.meltano.yml", None, "{}\n"),)),
    Case(
        "yaml-anchors-merge",
        "el-basic",
        (
            (
                M,
                "  - name: tap-orders-eu\n    inherit_from: tap-orders\n    config:\n",
                "  - name: tap-orders-eu\n    inherit_from: tap-orders\n    config: &eu\n",
            ),
            (
                M,
                "          start_date: '2024-06-01'\n",
                "          <<: *eu\n          start_date: '2024-06-01'\n",
            ),
        ),
    ),
    # Jobs.
    Case("job-missing-plugin", "el-basic", (_task("tap-orderz hash-emails target-warehouse"),)),
    Case("job-missing-loader-name", "el-basic", (_task("tap-orders hash-emails target-x"),)),
    Case("job-missing-mapping", "el-basic", (_task("tap-orders hash-phones target-warehouse"),)),
    Case(
        "job-missing-command",
        "el-basic",
        ((M, "  - dbt-warehouse:run\n", "  - dbt-warehouse:compile\n"),),
        extra="job-command",
    ),
    Case(
        "job-command-on-include",
        "el-basic",
        ((S, "dbt-warehouse:seed", "dbt-warehouse:snapshot"),),
        extra="job-command",
    ),
    Case(
        "job-double-colon",
        "el-basic",
        ((M, "  - dbt-warehouse:run\n", "  - dbt-warehouse:run:x\n"),),
    ),
    Case("job-loader-first", "el-basic", (_task("target-warehouse tap-orders"),)),
    Case("job-no-loader", "el-basic", (_task("tap-orders hash-emails"),)),
    Case("job-loader-alone", "el-basic", (_task("target-warehouse"),)),
    Case(
        "job-mapper-own-name",
        "el-basic",
        (_task("tap-orders meltano-map-transformer target-warehouse"),),
    ),
    Case("job-extractor-then-utility", "el-basic", (_task("tap-orders dbt-warehouse:run"),)),
    Case(
        "job-two-blocks-one-task",
        "el-basic",
        (_task("tap-orders target-warehouse tap-orders-eu target-warehouse dbt-warehouse:test"),),
    ),
    Case(
        "job-utility-no-command",
        "el-basic",
        ((M, "  - dbt-warehouse:run\n", "  - dbt-warehouse\n"),),
    ),
    Case(
        "job-tasks-string",
        "el-basic",
        ((M, TASK + "  - dbt-warehouse:run\n", "    tap-orders target-warehouse\n"),),
    ),
    Case("job-missing-in-include", "el-basic", ((S, "dbt-warehouse:seed", "dbt-warehous:seed"),)),
    Case(
        "job-block-across-tasks",
        "el-basic",
        ((M, TASK, "  - tap-orders hash-emails\n  - target-warehouse\n"),),
    ),
    Case("job-double-space", "el-basic", (_task("tap-orders  target-warehouse"),)),
    Case(
        "job-inherited-extractor",
        "el-basic",
        (_task("tap-orders-eu hash-emails target-warehouse"),),
    ),
    # Schedules.
    Case(
        "schedule-missing-job",
        "el-basic",
        ((M, "  job: orders-daily\n", "  job: orders-weekly\n"),),
    ),
    Case(
        "schedule-missing-extractor",
        "el-basic",
        ((M, "  extractor: tap-orders\n", "  extractor: tap-ordrs\n"),),
    ),
    Case(
        "schedule-missing-loader",
        "el-basic",
        ((M, "  loader: target-warehouse\n", "  loader: target-wh\n"),),
    ),
    Case(
        "schedule-extractor-is-loader",
        "el-basic",
        ((M, "  extractor: tap-orders\n", "  extractor: target-warehouse\n"),),
    ),
    # inherit_from.
    Case(
        "inherit-missing",
        "el-basic",
        ((M, "    inherit_from: tap-orders\n", "    inherit_from: tap-ordrs\n"),),
    ),
    Case(
        "inherit-self",
        "el-basic",
        ((M, "    inherit_from: tap-orders\n", "    inherit_from: tap-orders-eu\n"),),
    ),
    Case(
        "inherit-other-type",
        "el-basic",
        ((M, "    inherit_from: tap-orders\n", "    inherit_from: target-warehouse\n"),),
    ),
    # Environments.
    Case(
        "default-env-missing",
        "el-basic",
        ((M, "default_environment: dev\n", "default_environment: develop\n"),),
    ),
    Case(
        "default-env-in-include",
        "el-basic",
        ((M, "default_environment: dev\n", "default_environment: staging\n"),),
    ),
    Case(
        "env-override-unknown-plugin",
        "el-basic",
        (
            (
                M,
                "      - name: tap-orders\n        config:\n          start_date: '2024-06-01'\n",
                "      - name: tap-removed\n        config:\n          start_date: '2024-06-01'\n",
            ),
        ),
        warns=("environment-plugin",),
    ),
    Case("env-duplicate-name", "el-basic", ((S, "- name: staging\n", "- name: prod\n"),)),
    # Duplicate names.
    Case(
        "duplicate-plugin-same-file",
        "el-basic",
        (
            (
                M,
                "  mappers:\n",
                "  - name: target-warehouse\n    namespace: target_warehouse\n"
                "    pip_url: tw==1\n\n  mappers:\n",
            ),
        ),
    ),
    Case(
        "duplicate-plugin-include",
        "el-basic",
        (
            (
                S,
                None,
                "plugins:\n  utilities:\n  - name: dbt-warehouse\n"
                "    namespace: dbt_warehouse\n    pip_url: dbt-core==1.7.0\n",
            ),
        ),
    ),
    Case(
        "duplicate-plugin-two-includes",
        "multifile-custom",
        (
            (
                "subconfig_2.yml",
                "  - name: tap-subconfig-2-yml\n",
                "  - name: tap-subconfig-1-yml\n",
            ),
        ),
    ),
    Case(
        "duplicate-schedule-two-includes",
        "multifile-custom",
        (
            (
                "subconfig_2.yml",
                "- name: test-subconfig-2-yml\n  extractor",
                "- name: test-subconfig-1-yml\n  extractor",
            ),
        ),
    ),
    Case("duplicate-job-name", "el-basic", ((S, "- name: seed\n", "- name: orders-eu\n"),)),
    Case(
        "duplicate-same-name-other-type",
        "el-basic",
        (
            (M, "  - name: dbt-warehouse\n", "  - name: tap-orders\n"),
            (M, "  - dbt-warehouse:run\n", "  - tap-orders:run\n"),
            (M, "  - dbt-warehouse:test\n", "  - tap-orders:test\n"),
            (S, "dbt-warehouse:seed", "tap-orders:seed"),
        ),
    ),
    # include_paths.
    Case(
        "include-no-match",
        "el-basic",
        ((M, "- ./config/*.meltano.yml\n", "- ./config/*.meltano.yml\n- ./extra/*.yml\n"),),
        warns=("include-paths",),
    ),
    Case(
        "include-absolute",
        "el-basic",
        ((M, "- ./config/*.meltano.yml\n", "- /etc/meltano/*.yml\n"),),
    ),
    Case(
        "include-recursive",
        "multifile-custom",
        (("subfolder/deeper/subconfig_3.yml", None, "environments:\n- name: deep\n"),),
    ),
    # Meltano's schema.
    Case(
        "schema-unknown-top-key", "el-basic", ((M, "schedules:\n", "schedule:\n"),), extra="schema"
    ),
    Case("schema-unknown-plugin-type", "el-basic", ((M, "  mappers:\n", "  mapperz:\n"),)),
    Case("schema-plugins-list", "el-basic", ((S, None, "plugins: []\n"),)),
    Case(
        "schema-plugin-no-name",
        "el-basic",
        ((M, "  - name: dbt-warehouse\n", "  - label: dbt-warehouse\n"),),
    ),
    Case(
        "schema-environment-no-name", "el-basic", ((S, "- name: staging\n", "- label: staging\n"),)
    ),
    Case(
        "schema-tasks-number",
        "el-basic",
        ((S, "  tasks:\n  - dbt-warehouse:seed\n", "  tasks: 5\n"),),
    ),
    Case(
        "schema-interval-list",
        "el-basic",
        ((M, "  interval: '@daily'\n", "  interval: ['@daily']\n"),),
        extra="schema",
    ),
    # Secrets (Meltano accepts them; the check refuses).
    Case(
        "secret-password-literal",
        "el-basic",
        ((M, "${TAP_ORDERS_API_KEY}", "sk-live-0a9b8c7d6e5f"),),
        extra="literal-secret",
    ),
    Case(
        "secret-env-override-literal",
        "el-basic",
        ((M, "${WAREHOUSE_PASSWORD}", "hunter2-is-not-safe"),),
        extra="literal-secret",
    ),
    Case(
        "secret-inherited-literal",
        "el-basic",
        (
            (
                M,
                "      api_url: https://eu.api.example.com\n",
                "      api_url: https://eu.api.example.com\n      api_key: eu-key-123456\n",
            ),
        ),
        extra="literal-secret",
    ),
    Case(
        "secret-sensitive-in-include",
        "el-basic",
        (
            (
                S,
                "          host: db.staging.internal\n",
                "          host: db.staging.internal\n          password: staging-pw-1\n",
            ),
        ),
        extra="literal-secret",
    ),
    Case(
        "secret-multifile-token",
        "multifile-custom",
        (
            (
                M,
                "  - name: tap-meltano-yml # Comment on array element\n",
                "  - name: tap-meltano-yml # Comment on array element\n"
                "    config:\n      token: abc123def456\n",
            ),
        ),
        extra="literal-secret",
    ),
    Case(
        "secret-github-token-env",
        "el-basic",
        ((M, "    DBT_TARGET: prod\n", f"    DBT_TARGET: prod\n    GH_TOKEN: {GH}\n"),),
        extra="token",
    ),
    Case(
        "secret-aws-key-config",
        "el-basic",
        ((M, "      host: db.internal\n", f"      host: db.internal\n      extra_key: {AWS}\n"),),
        extra="token",
    ),
    Case(
        "secret-url-password",
        "el-basic",
        (
            (
                M,
                "      api_url: https://api.example.com\n",
                "      api_url: https://bot:Sup3rS3cret@api.example.com\n",
            ),
        ),
        extra="token",
    ),
    Case(
        "secret-default-value",
        "el-basic",
        (
            (
                M,
                "      start_date: '2024-01-01'\n",
                "      start_date: '2024-01-01'\n      region: eu-west-1\n",
            ),
        ),
    ),
    Case(
        "secret-reference-dollar",
        "el-basic",
        ((M, "${TAP_ORDERS_API_KEY}", "$TAP_ORDERS_API_KEY"),),
    ),
    Case(
        "secret-url-placeholder",
        "el-basic",
        (
            (
                M,
                "      api_url: https://api.example.com\n",
                "      api_url: https://bot:${API_PASSWORD}@api.example.com\n",
            ),
        ),
    ),
    # Sources a cold runner needs (warnings).
    Case(
        "moving-ref-branch",
        "el-basic",
        (
            (
                M,
                "target-warehouse.git@1f3c5e7a9b2d4f6a8c0e1b3d5f7a9c2e4b6d8f0a",
                "target-warehouse.git@main",
            ),
        ),
        warns=("moving-ref",),
    ),
    Case(
        "moving-ref-none",
        "el-basic",
        (
            (
                M,
                "target-warehouse.git@1f3c5e7a9b2d4f6a8c0e1b3d5f7a9c2e4b6d8f0a",
                "target-warehouse.git",
            ),
        ),
        warns=("moving-ref",),
    ),
    Case(
        "pinned-tag",
        "el-basic",
        (
            (
                M,
                "target-warehouse.git@1f3c5e7a9b2d4f6a8c0e1b3d5f7a9c2e4b6d8f0a",
                "target-warehouse.git@v1.4.2",
            ),
        ),
    ),
)
