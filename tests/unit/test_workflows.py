"""The GitHub Actions workflows in .github/workflows: schema-valid, calling the fleet CLI as it
really is, gated for production, least-privilege, and free of secrets."""
from __future__ import annotations

import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import typer.main
import yaml

from automation.cli import app as fleet_app
from automation.release_state import RELEASE_PATTERN

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW_DIR = ROOT / ".github" / "workflows"
WORKFLOWS = sorted(WORKFLOW_DIR.glob("*.yml"))
CI_DOCS = ROOT / "docs" / "ci.md"
STACKS = ("integration", "staging", "production")
STACK_CHANGING = {"deploy", "promote", "rollback", "apply"}

# -- reading the workflows -----------------------------------------------------


def load(path: Path) -> dict:
    document = yaml.safe_load(path.read_text())
    # YAML 1.1 reads the key `on` as True; give it back its name.
    if True in document:
        document["on"] = document.pop(True)
    return document


def steps(job: dict) -> list[dict]:
    return job.get("steps", [])


def uses(step: dict, action: str) -> bool:
    return step.get("uses", "").split("@")[0] == action


EXPRESSION = re.compile(r"\$\{\{.*?\}\}")
SEPARATORS = {"|", "||", "&", "&&", ";", "(", ")", ">", ">>", "<", "2>", "2>>"}


def fleet_command_lines(script: str) -> list[list[str]]:
    """The argument lists of every `fleet …` invocation in a shell script."""
    script = EXPRESSION.sub("EXPR", script.replace("\\\n", " "))
    found = []
    for line in script.splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        lexer.commenters = "#"
        tokens = list(lexer)
        for index, token in enumerate(tokens):
            if token == "fleet" and (index == 0 or tokens[index - 1] in SEPARATORS):
                words = []
                for word in tokens[index + 1:]:
                    if word in SEPARATORS or set(word) <= set("|&;<>()"):
                        break
                    words.append(word)
                found.append(words)
    return found


@dataclass
class FleetCall:
    workflow: str
    job: str
    args: list[str]

    @property
    def line(self) -> str:
        return "fleet " + " ".join(self.args)


def fleet_calls(path: Path) -> list[FleetCall]:
    calls = []
    for job_name, job in load(path)["jobs"].items():
        for step in steps(job):
            for args in fleet_command_lines(step.get("run", "")):
                calls.append(FleetCall(path.name, job_name, args))
    return calls


ALL_CALLS = [call for path in WORKFLOWS for call in fleet_calls(path)]


# -- the CLI's commands ----------------------------------------------------------


@dataclass
class CommandSpec:
    positionals: int
    options: dict[str, bool] = field(default_factory=dict)


# Typer builds on its own copy of click, so commands are recognised by shape, not by class.
def is_group(command) -> bool:
    return hasattr(command, "commands")


def command_spec(command) -> CommandSpec:
    options = {}
    positionals = 0
    for param in command.params:
        if param.param_type_name == "option":
            for name in param.opts + param.secondary_opts:
                options[name] = not (param.is_flag or param.count)
        else:
            positionals += 1
    return CommandSpec(positionals, options)


def cli_spec(path: tuple[str, ...]) -> CommandSpec | None:
    """The command of automation.cli.app at that path, or None when it has none."""
    command = typer.main.get_command(fleet_app)
    for name in path:
        if not is_group(command) or name not in command.commands:
            return None
        command = command.commands[name]
    return command_spec(command)


def command_path(args: list[str]) -> tuple[str, ...]:
    root = typer.main.get_command(fleet_app)
    words = [word for word in args if not word.startswith("-")]
    if words and is_group(root.commands.get(words[0])):
        return tuple(words[:2])
    return tuple(words[:1])


def call_problems(args: list[str]) -> list[str]:
    """Why a fleet command line would not parse, or [] when it names a real command and options."""
    root_options = command_spec(typer.main.get_command(fleet_app)).options
    while args and args[0] in root_options:
        args = args[1:]
    path = command_path(args)
    spec = cli_spec(path)
    if spec is None:
        return [f"no command {' '.join(path) or '(none)'}"]
    rest = args[len(path):]
    problems, positionals, index = [], 0, 0
    while index < len(rest):
        word = rest[index]
        if word.startswith("--"):
            name, has_inline_value = word.split("=", 1)[0], "=" in word
            if name not in spec.options:
                problems.append(f"{' '.join(path)} has no option {name}")
            elif spec.options[name] and not has_inline_value:
                index += 1
                if index >= len(rest) or rest[index].startswith("--"):
                    problems.append(f"{name} needs a value")
        else:
            positionals += 1
        index += 1
    if positionals != spec.positionals:
        problems.append(f"{' '.join(path)} takes {spec.positionals} argument(s), got {positionals}")
    return problems


def option_value(args: list[str], option: str) -> str | None:
    for index, word in enumerate(args):
        if word == option and index + 1 < len(args):
            return args[index + 1]
        if word.startswith(option + "="):
            return word.split("=", 1)[1]
    return None


def changed_stacks(call: FleetCall) -> set[str]:
    """The stacks a fleet call changes (deploy/rollback/apply STACK, promote --to STACK)."""
    path = command_path(call.args)
    if path[:1] == ("promote",):
        return {option_value(call.args, "--to")}
    if path and path[0] in STACK_CHANGING:
        positionals = [word for word in call.args[1:] if not word.startswith("-")]
        return {positionals[0]} if positionals else set()
    return set()


# -- tests -----------------------------------------------------------------------


def test_the_expected_workflows_exist():
    """The pipelines docs/ci.md describes: PR preview, release on main, e2e, tests."""
    assert {path.name for path in WORKFLOWS} >= {"preview.yml", "release.yml", "e2e.yml", "tests.yml"}


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_matches_the_github_schema(path):
    """GitHub rejects a malformed workflow only when it runs; the vendored schema catches it now."""
    result = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows", str(path)],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_workflows_call_the_release_commands():
    """The command-line reader finds the pipeline's steps, so the checks below are not vacuous."""
    found = {(call.workflow, command_path(call.args)) for call in ALL_CALLS}
    assert found >= {
        ("preview.yml", ("ami", "bake")), ("preview.yml", ("preview",)),
        ("release.yml", ("ami", "bake")), ("release.yml", ("deploy",)),
        ("release.yml", ("promote",)), ("release.yml", ("preview",)),
    }


@pytest.mark.parametrize("call", ALL_CALLS, ids=lambda c: f"{c.workflow}:{c.job}:{' '.join(c.args[:2])}")
def test_fleet_command_lines_name_real_commands_and_options(call):
    """A renamed command or option must fail here, not in the middle of a release."""
    assert call_problems(call.args) == [], call.line


@pytest.mark.parametrize("line, problem", [
    ("fleet deploy integration --relase 1 --yes", "deploy has no option --relase"),
    ("fleet promote integration staging", "promote takes 0 argument(s), got 2"),
    ("fleet ami bkae 1", "no command ami bkae"),
    ("fleet preview production --release", "--release needs a value"),
])
def test_command_line_check_catches_mistakes(line, problem):
    """The checker itself: misspelt options, stray arguments, unknown commands, missing values."""
    (args,) = fleet_command_lines(line)
    assert problem in call_problems(args)


def test_command_lines_are_found_in_pipes_and_continuations():
    """fleet calls inside pipes, after `&&`, or split over lines are all seen, with expressions intact."""
    script = 'x=1 && fleet status "$S" --json | tee out\nfleet deploy ${{ matrix.stack }} \\\n  --yes > f'
    assert fleet_command_lines(script) == [["status", "$S", "--json"], ["deploy", "EXPR", "--yes"]]


def test_production_deploys_only_through_the_protected_environment_with_a_plan():
    """Production changes only in a job bound to the `production` environment (required reviewers),
    with --plan of a preview made earlier in the same run."""
    workflow = load(WORKFLOW_DIR / "release.yml")
    production_calls = [call for call in ALL_CALLS if "production" in changed_stacks(call)]
    assert production_calls, "no job deploys production"
    for call in production_calls:
        job = load(WORKFLOW_DIR / call.workflow)["jobs"][call.job]
        environment = job.get("environment")
        assert (environment.get("name") if isinstance(environment, dict) else environment) == "production", call.job
        assert command_path(call.args) == ("deploy",) and option_value(call.args, "--plan"), call.line
        plan_file = option_value(call.args, "--plan")
        # The plan comes from a job this one waits for, which previews production into it and uploads it.
        planners = [
            name for name, other in workflow["jobs"].items()
            if any(command_path(c.args) == ("preview",) and "production" in c.args
                   and option_value(c.args, "--out") == plan_file
                   for c in ALL_CALLS if c.workflow == "release.yml" and c.job == name)
        ]
        assert planners and set(planners) <= set(job["needs"]), job.get("needs")
        uploaded = {s["with"]["name"] for p in planners for s in steps(workflow["jobs"][p]) if uses(s, "actions/upload-artifact")}
        downloaded = {s["with"]["name"] for s in steps(job) if uses(s, "actions/download-artifact")}
        assert uploaded & downloaded, (uploaded, downloaded)


def test_only_the_production_job_uses_the_production_environment_or_changes_production():
    """No other job can reach production's role or skip the reviewers."""
    for path in WORKFLOWS:
        for name, job in load(path)["jobs"].items():
            environment = job.get("environment")
            environment = environment.get("name") if isinstance(environment, dict) else environment
            changes_production = any(
                "production" in changed_stacks(call) for call in ALL_CALLS if call.workflow == path.name and call.job == name
            )
            assert (environment == "production") == changes_production, f"{path.name}:{name}"


def test_jobs_that_change_a_stack_never_run_twice_at_once():
    """Two releases of one stack must queue, not interleave; and a running release is never cancelled."""
    for call in ALL_CALLS:
        stacks = changed_stacks(call)
        if not stacks:
            continue
        job = load(WORKFLOW_DIR / call.workflow)["jobs"][call.job]
        concurrency = job.get("concurrency")
        assert isinstance(concurrency, dict), f"{call.job} has no concurrency group"
        assert concurrency.get("cancel-in-progress") is False, call.job
        for stack in stacks:
            assert stack in concurrency["group"], (stack, concurrency["group"])


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_permissions_are_least_privilege(path):
    """The token is read-only by default; AWS's OIDC token only where AWS credentials are configured."""
    workflow = load(path)
    top = workflow.get("permissions")
    assert isinstance(top, dict), "no top-level permissions block"
    assert set(top.values()) <= {"read", "none"}, top
    for name, job in workflow["jobs"].items():
        permissions = job.get("permissions", {})
        assert permissions != "write-all", name
        assumes_role = any(uses(step, "aws-actions/configure-aws-credentials") for step in steps(job))
        assert (permissions.get("id-token") == "write") == assumes_role, name
        if assumes_role:
            configure = next(s for s in steps(job) if uses(s, "aws-actions/configure-aws-credentials"))
            assert re.fullmatch(r"\$\{\{ vars\.\w+ \}\}", configure["with"]["role-to-assume"]), name
            assert not {"aws-access-key-id", "aws-secret-access-key"} & set(configure["with"]), name


SECRET_PATTERNS = {
    "AWS access key id": re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"),
    "private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    "GitHub token": re.compile(r"\bgh[pousr]_[A-Za-z0-9]{30,}"),
    "Pulumi access token": re.compile(r"\bpul-[0-9a-f]{40}\b"),
}
SECRET_NAME = re.compile(r"PASSWORD|PASSPHRASE|TOKEN|SECRET|ACCESS[_-]?KEY|PRIVATE[_-]?KEY", re.IGNORECASE)
SECRET_REFERENCE = re.compile(r"\$\{\{ (secrets\.\w+|github\.token) \}\}")


def secret_valued_settings(node, where: str = ""):
    """Every env/with entry whose name says it holds a secret, with its value."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("env", "with") and isinstance(value, dict):
                for name, setting in value.items():
                    if SECRET_NAME.search(str(name)):
                        yield f"{where}.{key}.{name}", setting
            yield from secret_valued_settings(value, f"{where}.{key}")
    elif isinstance(node, list):
        for index, item in enumerate(node):
            yield from secret_valued_settings(item, f"{where}[{index}]")


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_no_literal_secrets(path):
    """Secrets come from repository settings only: no keys or tokens in the files, and every
    secret-named setting is a reference to a secret."""
    text = path.read_text()
    for what, pattern in SECRET_PATTERNS.items():
        assert not pattern.search(text), f"{what} in {path.name}"
    for where, value in secret_valued_settings(load(path)):
        assert isinstance(value, str) and SECRET_REFERENCE.fullmatch(value), f"{where} = {value!r}"


def test_secret_check_catches_a_literal_passphrase():
    """The secret check itself flags a secret-named setting with a literal value."""
    workflow = {"jobs": {"x": {"env": {"PULUMI_CONFIG_PASSPHRASE": "hunter2"}, "steps": []}}}
    assert list(secret_valued_settings(workflow)) == [(".jobs.x.env.PULUMI_CONFIG_PASSPHRASE", "hunter2")]


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_run_steps_use_bash_with_pipefail(path):
    """`fleet … | tee` must fail the step when fleet fails: GitHub gives -o pipefail only with shell: bash."""
    assert load(path).get("defaults", {}).get("run", {}).get("shell") == "bash"


def test_jobs_running_fleet_install_the_pulumi_cli_with_the_official_action_first():
    """fleet drives the Pulumi CLI, which the official pulumi/actions installs."""
    jobs_with_calls = {(call.workflow, call.job) for call in ALL_CALLS}
    for workflow_name, job_name in jobs_with_calls:
        job_steps = steps(load(WORKFLOW_DIR / workflow_name)["jobs"][job_name])
        install = [i for i, s in enumerate(job_steps) if uses(s, "pulumi/actions")]
        first_fleet = min(i for i, s in enumerate(job_steps) if fleet_command_lines(s.get("run", "")))
        assert install and install[0] < first_fleet, f"{workflow_name}:{job_name}"
        assert "command" not in job_steps[install[0]].get("with", {}), "the action should only install the CLI"


def test_e2e_workflow_runs_the_suite_against_a_moto_service_container():
    """e2e: the real CLI against moto in a service container, whose endpoint the fixtures read."""
    job = load(WORKFLOW_DIR / "e2e.yml")["jobs"]["e2e"]
    assert job["services"]["moto"]["image"].startswith("motoserver/moto:")
    assert job["env"]["FLEET_E2E_MOTO_ENDPOINT"] == "http://127.0.0.1:5000"
    assert "5000:5000" in job["services"]["moto"]["ports"]
    assert any(uses(step, "pulumi/actions") for step in steps(job))
    assert any(step.get("run") == "./dev test tests/e2e" for step in steps(job))


def version_scripts() -> dict[str, str]:
    return {
        path.name: step["run"]
        for path in WORKFLOWS
        for job in load(path)["jobs"].values()
        for step in steps(job)
        if step.get("id") == "version"
    }


def test_preview_and_release_derive_the_version_the_same_way():
    """A commit previewed on its pull request and released from main gets one version, so its AMI is reused."""
    scripts = version_scripts()
    assert set(scripts) == {"preview.yml", "release.yml"}
    assert len(set(scripts.values())) == 1


def test_derived_version_is_a_valid_release_named_after_the_commit(tmp_path):
    """The version the workflows compute passes fleet's release format and is stable for a commit."""
    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@example.invalid"]
    subprocess.run(git[:3] + ["init", "-q"], check=True)
    subprocess.run(git + ["commit", "-q", "--allow-empty", "-m", "x", "--date", "2025-03-04T05:06:07+02:00"],
                   check=True, env={"GIT_COMMITTER_DATE": "2025-03-04T05:06:07+02:00", "PATH": "/usr/bin:/bin"})
    sha = subprocess.run(git[:3] + ["rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    script = next(iter(version_scripts().values()))
    versions = []
    for attempt in range(2):
        output = tmp_path / f"github-output-{attempt}"
        subprocess.run(["bash", "-eo", "pipefail", "-c", script], cwd=tmp_path, check=True, capture_output=True,
                       env={"SHA": sha, "GITHUB_OUTPUT": str(output), "PATH": "/usr/bin:/bin"})
        versions.append(output.read_text().strip().removeprefix("version="))
    assert versions[0] == versions[1] == f"20250304.030607-{sha[:7]}"
    assert RELEASE_PATTERN.match(versions[0])


def test_every_repository_setting_the_workflows_read_is_documented():
    """Each vars.X and secrets.X a workflow reads is explained in docs/ci.md, so setup is complete."""
    names = set()
    for path in WORKFLOWS:
        names |= set(re.findall(r"\$\{\{[^}]*\b(?:vars|secrets)\.(\w+)", path.read_text()))
    documented = CI_DOCS.read_text()
    assert names and not {name for name in names if f"`{name}`" not in documented}
