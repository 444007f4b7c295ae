"""`CheckReporter` against both doubles over HTTP: commit statuses, the change request's
head, and the one comment per PR/MR, read back through the doubles' APIs, with the
requests each operation costs, and GitHub's traffic checked against the published
contract."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
import pytest
from pydantic import SecretStr

from providers.contract import CheckReporter, CommitStatus, StatusState
from providers.errors import InvalidRequest, NotFound, PermissionDenied
from tests.conftest import TOKEN, ForgeEnv
from tests.forges import openapi
from tests.forges.github import GitHubDouble
from tests.forges.gitlab import GitLabDouble

CONTEXT = "meltano-forge/check"
MARKER = "<!-- meltano-forge:check -->"
BOTH = pytest.mark.parametrize("env", ["github", "gitlab"], indirect=True)


@dataclass
class ChangeRequest:
    """A PR/MR opened on a double through the adapter, and where its head is."""

    env: ForgeEnv
    reporter: CheckReporter
    number: int
    head: str
    base: str

    def comments(self) -> list[str]:
        """The bodies of the PR/MR's comments, oldest first, as the double holds them."""
        double = self.env.double
        if isinstance(double, GitHubDouble):
            listed = double.reporting.comments_on(self.env.double_name, self.number)
        else:
            assert isinstance(double, GitLabDouble)
            listed = double.reporting.notes_on(self.env.double_name, self.number)
        return [str(c["body"]) for c in listed]

    def delete(self, comment_id: int) -> None:
        """Delete a comment as a person would."""
        if isinstance(self.env.double, GitHubDouble):
            self.env.double.reporting.delete_comment(self.env.double_name, comment_id)
        else:
            assert isinstance(self.env.double, GitLabDouble)
            self.env.double.reporting.delete_note(self.env.double_name, comment_id)

    def add_comment(self, body: str, user: str = "reviewer") -> int:
        """A comment by someone else."""
        if isinstance(self.env.double, GitHubDouble):
            return self.env.double.reporting.add_comment(
                self.env.double_name, self.number, body, user
            )
        assert isinstance(self.env.double, GitLabDouble)
        return self.env.double.reporting.add_note(self.env.double_name, self.number, body, user)


def open_change_request(env: ForgeEnv) -> ChangeRequest:
    """main with a project, `feature` one commit ahead, and a PR/MR from it."""
    base = env.seed({"meltano.yml": b"version: 1\n"})
    env.forge.create_branch("feature", base)
    head = env.seed({"meltano.yml": b"version: 1\nplugins: {}\n"}, "feature", parent=base)
    opened = env.forge.open_change_request("feature", "main", "Add plugins", "")
    reporter = env.forge
    assert isinstance(reporter, CheckReporter)
    env.clear_log()
    return ChangeRequest(env, reporter, opened.number, head, base)


def writes(env: ForgeEnv) -> int:
    """Requests that create or change content."""
    return sum(env.requests(m) for m in ("POST", "PATCH", "PUT"))


@pytest.fixture
def cr(env: ForgeEnv) -> ChangeRequest:
    """A PR/MR on the double of `env`."""
    return open_change_request(env)


# ---- commit statuses -------------------------------------------------------------------
@BOTH
def test_status_is_read_back(cr: ChangeRequest) -> None:
    pending = CommitStatus(StatusState.PENDING, CONTEXT, "Checking the project", None)
    cr.reporter.set_commit_status(cr.head, pending)
    assert cr.env.requests() == 1
    assert cr.env.requests("POST", r"/statuses/[0-9a-f]{40}$") == 1
    cr.env.clear_log()
    assert cr.reporter.commit_statuses(cr.head) == [pending]
    assert cr.env.requests() == 1, "one page holds every context"
    assert cr.reporter.commit_statuses(cr.base) == []


@BOTH
def test_success_replaces_pending_of_the_same_context(cr: ChangeRequest) -> None:
    url = "https://forge-service.invalid/checks/abc"
    cr.reporter.set_commit_status(cr.head, CommitStatus(StatusState.PENDING, CONTEXT, "Checking"))
    other = CommitStatus(StatusState.SUCCESS, "ci/other", "Build passed")
    cr.reporter.set_commit_status(cr.head, other)
    done = CommitStatus(StatusState.FAILURE, CONTEXT, "2 errors, 1 warning", url)
    cr.reporter.set_commit_status(cr.head, done)
    assert cr.env.requests() == 3
    assert cr.reporter.commit_statuses(cr.head) == [done, other], "newest first, one a context"
    again = CommitStatus(StatusState.SUCCESS, CONTEXT, "No problems", url)
    cr.reporter.set_commit_status(cr.head, again)
    assert cr.reporter.commit_statuses(cr.head) == [again, other]


@BOTH
def test_a_resent_pending_status_is_kept(cr: ChangeRequest) -> None:
    pending = CommitStatus(StatusState.PENDING, CONTEXT, "Checking")
    cr.reporter.set_commit_status(cr.head, pending)
    cr.reporter.set_commit_status(cr.head, pending)  # an outbox redelivery
    assert cr.reporter.commit_statuses(cr.head) == [pending]
    assert cr.env.requests("POST") == 2


@pytest.mark.parametrize("env", ["gitlab"], indirect=True)
def test_gitlab_refuses_the_same_move_twice(cr: ChangeRequest) -> None:
    """The double answers what GitLab's state machine answers (the adapter keeps it)."""
    assert isinstance(cr.env.double, GitLabDouble)
    url = f"{cr.env.double.api}/projects/{cr.env.double_name.replace('/', '%2F')}"
    headers = {"PRIVATE-TOKEN": TOKEN}
    first = httpx.post(
        f"{url}/statuses/{cr.head}", json={"state": "pending", "name": CONTEXT}, headers=headers
    )
    assert first.status_code == 201
    second = httpx.post(
        f"{url}/statuses/{cr.head}", json={"state": "pending", "name": CONTEXT}, headers=headers
    )
    assert second.status_code == 400
    assert second.json()["message"] == (
        "Cannot transition status via :enqueue from :pending (Reason(s): Status cannot "
        'transition via "enqueue")'
    )
    bad = httpx.post(f"{url}/statuses/{cr.head}", json={"state": "failure"}, headers=headers)
    assert bad.status_code == 400
    assert bad.json() == {"error": "state does not have a valid value"}


@pytest.mark.parametrize("env", ["github"], indirect=True)
def test_github_description_is_cut_to_140(cr: ChangeRequest) -> None:
    long = "x" * 300
    cr.reporter.set_commit_status(cr.head, CommitStatus(StatusState.SUCCESS, CONTEXT, long))
    (status,) = cr.reporter.commit_statuses(cr.head)
    assert len(status.description) == 140
    assert status.description.startswith("x" * 139)


@pytest.mark.parametrize("env", ["github"], indirect=True)
def test_github_combined_status_follows_github_rules(cr: ChangeRequest) -> None:
    double = cr.env.double
    assert isinstance(double, GitHubDouble)
    api = f"{double.api}/repos/{cr.env.double_name}"
    client = httpx.Client(headers={"Authorization": f"token {TOKEN}"})

    def combined() -> str:
        return str(client.get(f"{api}/commits/feature/status").json()["state"])

    assert combined() == "pending", "no statuses at all"
    cr.reporter.set_commit_status(cr.head, CommitStatus(StatusState.SUCCESS, "a", ""))
    assert combined() == "success"
    cr.reporter.set_commit_status(cr.head, CommitStatus(StatusState.PENDING, "b", ""))
    assert combined() == "pending"
    cr.reporter.set_commit_status(cr.head, CommitStatus(StatusState.ERROR, "B", ""))
    assert combined() == "failure", "contexts are case-insensitive; error counts as failure"
    cr.reporter.set_commit_status(cr.head, CommitStatus(StatusState.SUCCESS, "b", ""))
    assert combined() == "success"
    listed = client.get(f"{api}/commits/{cr.head}/statuses").json()
    assert [s["state"] for s in listed] == ["success", "error", "pending", "success"]
    client.close()


# ---- the change request's head --------------------------------------------------------
@BOTH
def test_change_request_head_follows_the_branch(cr: ChangeRequest) -> None:
    head = cr.reporter.change_request_head(cr.number)
    assert (head.number, head.head_sha, head.source, head.target, head.open) == (
        cr.number,
        cr.head,
        "feature",
        "main",
        True,
    )
    assert head.url.endswith(f"/{cr.number}")
    assert cr.env.requests() == 1
    newer = cr.env.seed(
        {"meltano.yml": b"version: 1\nplugins: {extractors: []}\n"}, "feature", parent=cr.head
    )
    assert cr.reporter.change_request_head(cr.number).head_sha == newer
    with pytest.raises(NotFound):
        cr.reporter.change_request_head(cr.number + 40)


@BOTH
def test_a_closed_change_request_is_not_open(cr: ChangeRequest) -> None:
    double = cr.env.double
    if isinstance(double, GitHubDouble):
        double.close_pull(cr.env.double_name, cr.number)
    else:
        assert isinstance(double, GitLabDouble)
        double.close_merge_request(cr.env.double_name, cr.number)
    head = cr.reporter.change_request_head(cr.number)
    assert not head.open
    assert head.head_sha == cr.head


# ---- one comment per change request ----------------------------------------------------
@BOTH
def test_comment_upserted_twice_is_one_comment_edited(cr: ChangeRequest) -> None:
    first = cr.reporter.upsert_comment(cr.number, MARKER, f"{MARKER}\n2 errors", None)
    assert cr.env.requests() == 3, "the token's user, one page of comments, one created"
    assert writes(cr.env) == 1
    cr.env.clear_log()
    second = cr.reporter.upsert_comment(cr.number, MARKER, f"{MARKER}\nNo problems", first)
    assert second == first
    assert cr.env.requests() == 2, "the known comment read back, then edited"
    assert writes(cr.env) == 1
    assert cr.comments() == [f"{MARKER}\nNo problems"]
    cr.env.clear_log()
    assert cr.reporter.upsert_comment(cr.number, MARKER, f"{MARKER}\nNo problems", first) == first
    assert cr.env.requests() == 1, "an unchanged comment is not sent again"
    assert writes(cr.env) == 0


@BOTH
def test_a_deleted_known_comment_is_found_by_its_marker(cr: ChangeRequest) -> None:
    cr.add_comment("Looks good to me")
    gone = cr.reporter.upsert_comment(cr.number, MARKER, f"{MARKER}\nfirst", None)
    cr.delete(gone)
    # another replica wrote the comment and its id was never recorded here
    kept = cr.add_comment(f"{MARKER}\nfrom the other replica", user="double-user")
    cr.env.clear_log()
    found = cr.reporter.upsert_comment(cr.number, MARKER, f"{MARKER}\nsecond", gone)
    assert found == kept
    assert cr.env.requests() == 3, "known id read (gone), one page scanned, one edit"
    assert writes(cr.env) == 1
    assert cr.comments() == ["Looks good to me", f"{MARKER}\nsecond"]
    cr.delete(kept)
    cr.env.clear_log()
    new = cr.reporter.upsert_comment(cr.number, MARKER, f"{MARKER}\nthird", kept)
    assert new not in (gone, kept)
    assert writes(cr.env) == 1
    assert cr.comments() == ["Looks good to me", f"{MARKER}\nthird"]


@BOTH
def test_the_marker_is_found_past_the_first_page(cr: ChangeRequest) -> None:
    for i in range(120):
        cr.add_comment(f"review {i}")
    kept = cr.add_comment(f"{MARKER}\nold", user="double-user")
    cr.env.clear_log()
    assert cr.reporter.upsert_comment(cr.number, MARKER, f"{MARKER}\nnew", None) == kept
    assert cr.env.requests() == 4, "the token's user, two pages of 100 scanned, one edit"
    assert writes(cr.env) == 1
    assert cr.comments().count(f"{MARKER}\nnew") == 1
    assert len(cr.comments()) == 121


@BOTH
def test_a_known_id_from_another_change_request_is_not_edited(cr: ChangeRequest) -> None:
    elsewhere = cr.reporter.upsert_comment(cr.number, MARKER, f"{MARKER}\nPR one", None)
    cr.env.forge.create_branch("other", cr.base)
    cr.env.seed({"other.yml": b"a: 1\n"}, "other", parent=cr.base)
    second = cr.env.forge.open_change_request("other", "main", "Other", "").number
    mine = cr.reporter.upsert_comment(second, MARKER, f"{MARKER}\nPR two", elsewhere)
    assert mine != elsewhere
    assert cr.comments() == [f"{MARKER}\nPR one"]


# ---- only the token's own comment is the check's ---------------------------------------
FORGED = f"{MARKER}\nAll checks passed"


@BOTH
def test_a_foreign_comment_with_the_marker_is_left_alone(cr: ChangeRequest) -> None:
    # anyone on the PR (a fork's author) may post the marker before the first check
    forged = cr.add_comment(FORGED, user="fork-author")
    cr.env.clear_log()
    mine = cr.reporter.upsert_comment(cr.number, MARKER, f"{MARKER}\n2 errors", None)
    assert mine != forged
    assert cr.env.requests() == 3, "the token's user, one page of comments, one created"
    assert writes(cr.env) == 1
    assert cr.comments() == [FORGED, f"{MARKER}\n2 errors"]
    cr.env.clear_log()
    again = cr.reporter.upsert_comment(cr.number, MARKER, f"{MARKER}\nNo problems", None)
    assert again == mine, "the scan finds the token's own comment past the forged one"
    assert cr.env.requests() == 2, "one page of comments, one edit (the user is known)"
    assert cr.comments() == [FORGED, f"{MARKER}\nNo problems"]


@BOTH
def test_a_known_id_of_a_foreign_comment_is_not_edited(cr: ChangeRequest) -> None:
    forged = cr.add_comment(FORGED, user="fork-author")
    cr.env.clear_log()
    mine = cr.reporter.upsert_comment(cr.number, MARKER, f"{MARKER}\n2 errors", forged)
    assert mine != forged
    assert cr.env.requests() == 4, "the token's user, the known id read, one page, one created"
    assert writes(cr.env) == 1
    assert cr.comments() == [FORGED, f"{MARKER}\n2 errors"]


@BOTH
def test_the_comment_scan_stops_at_its_page_cap(cr: ChangeRequest) -> None:
    for i in range(1000):
        cr.add_comment(f"review {i}")
    cr.add_comment(f"{MARKER}\nold", user="double-user")  # on page 11
    cr.env.clear_log()
    mine = cr.reporter.upsert_comment(cr.number, MARKER, f"{MARKER}\nnew", None)
    assert cr.env.requests() == 12, "the token's user, 10 pages of 100 scanned, one created"
    assert writes(cr.env) == 1
    assert cr.comments()[-2:] == [f"{MARKER}\nold", f"{MARKER}\nnew"]
    assert mine not in (None, 0)


@pytest.mark.parametrize("env", ["github"], indirect=True)
def test_an_installation_token_takes_only_a_bots_comment(cr: ChangeRequest) -> None:
    """A GitHub App's token has no GET /user (403): a person's comment is never its own."""
    double = cr.env.double
    assert isinstance(double, GitHubDouble)
    double.fine_grained(LIMITED, integration=True, contents="write", pull_requests="write")
    reporter = cr.env.new_forge(token=SecretStr(LIMITED))
    assert isinstance(reporter, CheckReporter)
    cr.add_comment(FORGED, user="fork-author")
    cr.env.clear_log()
    mine = reporter.upsert_comment(cr.number, MARKER, f"{MARKER}\n2 errors", None)
    assert cr.env.requests() == 3, "GET /user refused, one page of comments, one created"
    listed = double.reporting.comments_on(cr.env.double_name, cr.number)
    assert [(c["user"], c["body"]) for c in listed] == [
        ("fork-author", FORGED),
        ("meltano-forge-double[bot]", f"{MARKER}\n2 errors"),
    ]
    # a new adapter (the next job) finds the bot's comment, not the forged one
    later = cr.env.new_forge(token=SecretStr(LIMITED))
    assert isinstance(later, CheckReporter)
    assert later.upsert_comment(cr.number, MARKER, f"{MARKER}\nNo problems", None) == mine
    assert cr.comments() == [FORGED, f"{MARKER}\nNo problems"]


@BOTH
def test_a_body_without_its_marker_is_refused(cr: ChangeRequest) -> None:
    with pytest.raises(InvalidRequest, match="marker"):
        cr.reporter.upsert_comment(cr.number, MARKER, "no marker here", None)
    assert cr.env.requests() == 0
    assert cr.comments() == []


# ---- a token without the permission -----------------------------------------------------
LIMITED = "github_pat_LIMITED0123456789abcdef"


@pytest.mark.parametrize("env", ["github"], indirect=True)
@pytest.mark.parametrize(
    ("integration", "who"), [(False, "personal access token"), (True, "integration")]
)
def test_github_status_without_statuses_write_names_the_permission(
    cr: ChangeRequest, integration: bool, who: str
) -> None:
    double = cr.env.double
    assert isinstance(double, GitHubDouble)
    double.fine_grained(
        LIMITED, integration=integration, contents="write", statuses="read", pull_requests="write"
    )
    reporter = cr.env.new_forge(token=SecretStr(LIMITED))
    assert isinstance(reporter, CheckReporter)
    cr.env.clear_log()
    with pytest.raises(PermissionDenied) as caught:
        reporter.set_commit_status(cr.head, CommitStatus(StatusState.PENDING, CONTEXT, ""))
    message = str(caught.value)
    assert f"Resource not accessible by {who}" in message
    assert '"Commit statuses: write"' in message
    assert LIMITED not in message
    assert TOKEN not in message
    assert cr.env.requests() == 1, "a refusal is not retried"
    assert double.reporting.statuses_on(cr.env.double_name, cr.head) == []
    # the same token may still comment: the permissions are separate
    reporter.upsert_comment(cr.number, MARKER, f"{MARKER}\nok", None)
    assert cr.comments() == [f"{MARKER}\nok"]


@pytest.mark.parametrize("env", ["github"], indirect=True)
def test_github_comment_without_pull_requests_write_names_the_permission(
    cr: ChangeRequest,
) -> None:
    double = cr.env.double
    assert isinstance(double, GitHubDouble)
    double.fine_grained(LIMITED, contents="write", statuses="write", pull_requests="read")
    reporter = cr.env.new_forge(token=SecretStr(LIMITED))
    assert isinstance(reporter, CheckReporter)
    cr.env.clear_log()
    with pytest.raises(PermissionDenied) as caught:
        reporter.upsert_comment(cr.number, MARKER, f"{MARKER}\nfindings", None)
    message = str(caught.value)
    assert "Resource not accessible by personal access token" in message
    assert '"Pull requests: write"' in message
    assert LIMITED not in message
    assert cr.env.requests() == 3, "the token's user and the comments read, the write refused"
    assert cr.comments() == []
    reporter.set_commit_status(cr.head, CommitStatus(StatusState.PENDING, CONTEXT, ""))


@pytest.mark.parametrize("env", ["gitlab"], indirect=True)
def test_gitlab_status_below_developer_names_the_role(cr: ChangeRequest) -> None:
    double = cr.env.double
    assert isinstance(double, GitLabDouble)
    double.add_token(LIMITED, "read")  # Reporter
    reporter = cr.env.new_forge(token=SecretStr(LIMITED))
    assert isinstance(reporter, CheckReporter)
    cr.env.clear_log()
    with pytest.raises(PermissionDenied) as caught:
        reporter.set_commit_status(cr.head, CommitStatus(StatusState.PENDING, CONTEXT, ""))
    message = str(caught.value)
    assert "403 Forbidden" in message
    assert "api scope" in message
    assert "Developer role" in message
    assert LIMITED not in message
    assert cr.env.requests() == 1
    assert double.reporting.statuses_on(cr.env.double_name, cr.head) == []
    # a Reporter may comment on a merge request
    reporter.upsert_comment(cr.number, MARKER, f"{MARKER}\nok", None)
    assert cr.comments() == [f"{MARKER}\nok"]


@pytest.mark.parametrize("env", ["gitlab"], indirect=True)
def test_gitlab_note_without_api_scope_names_the_scope(cr: ChangeRequest) -> None:
    double = cr.env.double
    assert isinstance(double, GitLabDouble)
    double.scoped(LIMITED, "write", "read_api")
    reporter = cr.env.new_forge(token=SecretStr(LIMITED))
    assert isinstance(reporter, CheckReporter)
    cr.env.clear_log()
    with pytest.raises(PermissionDenied) as caught:
        reporter.upsert_comment(cr.number, MARKER, f"{MARKER}\nfindings", None)
    message = str(caught.value)
    assert "insufficient_scope" in message
    assert "api scope" in message
    assert LIMITED not in message
    assert cr.env.requests() == 3, "the token's user and the notes read, the write refused"
    assert cr.comments() == []
    with pytest.raises(PermissionDenied, match="api scope"):
        reporter.set_commit_status(cr.head, CommitStatus(StatusState.PENDING, CONTEXT, ""))


# ---- the contract covers the new operations ---------------------------------------------
NEW_OPERATIONS = {
    ("POST", "/repos/{owner}/{repo}/statuses/{sha}"),
    ("GET", "/repos/{owner}/{repo}/commits/{ref}/statuses"),
    ("GET", "/repos/{owner}/{repo}/commits/{ref}/status"),
    ("GET", "/repos/{owner}/{repo}/issues/{issue_number}/comments"),
    ("POST", "/repos/{owner}/{repo}/issues/{issue_number}/comments"),
    ("PATCH", "/repos/{owner}/{repo}/issues/comments/{comment_id}"),
    ("GET", "/repos/{owner}/{repo}/pulls/{pull_number}"),
    ("GET", "/repos/{owner}/{repo}/pulls/{pull_number}/files"),
}


def test_the_contract_has_the_reporting_operations() -> None:
    for method, template in NEW_OPERATIONS:
        assert method.lower() in openapi.spec()["paths"][template]


@pytest.mark.parametrize("env", ["github"], indirect=True)
def test_reporting_traffic_is_validated_against_the_contract(cr: ChangeRequest) -> None:
    """Every new operation is exercised, each request and response validated (the `env`
    fixture fails the test on any problem the double recorded)."""
    double = cr.env.double
    assert isinstance(double, GitHubDouble)
    cr.reporter.set_commit_status(cr.head, CommitStatus(StatusState.PENDING, CONTEXT, "x"))
    cr.reporter.commit_statuses(cr.head)
    cr.reporter.change_request_head(cr.number)
    first = cr.reporter.upsert_comment(cr.number, MARKER, f"{MARKER}\n1", None)
    cr.reporter.upsert_comment(cr.number, MARKER, f"{MARKER}\n2", first)
    api = f"{double.api}/repos/{cr.env.double_name}"
    with httpx.Client(headers={"Authorization": f"token {TOKEN}"}) as client:
        assert client.get(f"{api}/commits/{cr.head}/statuses").status_code == 200
        files = client.get(f"{api}/pulls/{cr.number}/files").json()
        assert [f["filename"] for f in files] == ["meltano.yml"]
        gone = client.patch(f"{api}/issues/comments/1", json={"body": "x"})
        assert gone.status_code == 404
    seen = {
        (e.method, openapi.template_for(e.method, e.path.removeprefix("/api/v3")))
        for e in double.requests()
    }
    assert seen >= NEW_OPERATIONS
    assert double.validation_errors == []


def test_the_validator_catches_what_the_reporting_operations_get_wrong() -> None:
    statuses = "/repos/o/r/statuses/" + "a" * 40
    assert openapi.validate_request("POST", statuses, b'{"state": "bogus"}')
    assert openapi.validate_request("POST", statuses, b'{"context": "x"}'), "state is required"
    assert openapi.validate_response("POST", statuses, 201, b'{"id": 1}')
    assert openapi.validate_response("POST", statuses, 422, b'{"message": "no docs url"}')
    assert openapi.validate_response("POST", statuses, 409, b"{}"), "not a status GitHub gives"
    comment = "/repos/o/r/issues/comments/5"
    assert openapi.validate_request("PATCH", comment, b'{"body": 5}')
    assert openapi.validate_response("GET", comment, 200, b'{"id": "five"}')
    assert openapi.validate_response("GET", comment, 500, b'{"message": 5}')
    assert openapi.validate_response("GET", "/repos/o/r/pulls/3", 200, b'{"number": 3}')
    assert openapi.validate_request("DELETE", comment, b""), "not in the contract"


# ---- the PR/MR page ---------------------------------------------------------------------
HOSTILE = (
    f"{MARKER}\n### meltano-forge check\n\n| rule | file |\n|---|---|\n"
    "| secret | <script>alert(1)</script> |\n\n[docs](javascript:alert(2)) <details>\n"
)


@BOTH
def test_the_page_renders_statuses_and_comments_escaped(cr: ChangeRequest) -> None:
    cr.reporter.set_commit_status(
        cr.head, CommitStatus(StatusState.FAILURE, CONTEXT, "1 error <b>", "javascript:alert(3)")
    )
    cr.reporter.upsert_comment(cr.number, MARKER, HOSTILE, None)
    opened = cr.reporter.change_request_head(cr.number)
    page = httpx.get(opened.url)  # no token: what a browser shows
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    text = page.text
    assert "<table>" in text
    assert "<h3>meltano-forge check</h3>" in text
    assert "<script>" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "javascript:" not in text.replace("[docs](javascript:alert(2))", "")
    assert 'href="javascript' not in text
    assert "1 error &lt;b&gt;" in text
    assert MARKER not in text, "the marker is hidden, as forges hide HTML comments"
    assert "<details>" in text
    assert CONTEXT in text
