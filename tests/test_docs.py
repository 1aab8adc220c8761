"""The documentation cannot drift from the code: every command it shows must parse.

Every `kapps ...`, `python -m retrain ...` and `python -m tuning ...` line in a fenced
bash block of README.md and docs/**/*.md (backslash continuations joined, `$(...)` read
as one argument, `VAR=value` prefixes and comments dropped) is parsed by its command's
own argparse parser, so a renamed or removed flag fails here; retraining's flags (of
`kapps retrain`, `review` and `tune`) then go through `RetrainConfig.check`, the check the
command runs before any work. A line ending in `# illustrative` only shows the shape of
a command and is left out. None of it imports TensorFlow.

Relative links and their #anchors must point at a file and a heading that exist, and
every Python block must compile. The README's quick start on the demo data runs as
written, in a fresh home folder.
"""
import contextlib
import importlib
import io
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md"] + sorted((ROOT / "docs").rglob("*.md"))
ILLUSTRATIVE = "# illustrative"
QUICK_START = "<!-- quick start:"
FENCE = re.compile(r"^\s*```\s*(\S*)")
SHELL_LANGUAGES = ("bash", "sh", "shell")
PYTHON_MODULES = {"retrain": "retrain", "tuning": "tune"}  # python -m X is kapps Y


def fenced_blocks(path, languages):
    """(first line number, text) of each fenced block in `languages`."""
    blocks, language, start, body = [], None, 0, []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        match = FENCE.match(line)
        if language is None and match:
            language, start, body = match.group(1).lower(), number + 1, []
        elif language is not None and line.strip() == "```":
            if language in languages:
                blocks.append((start, "\n".join(body)))
            language = None
        elif language is not None:
            body.append(line)
    return blocks


def logical_lines(start, text):
    """(line number, line) with backslash continuations joined."""
    joined, first, parts = [], None, []
    for number, line in enumerate(text.splitlines(), start):
        if first is None:
            first = number
        if line.rstrip().endswith("\\"):
            parts.append(line.rstrip()[:-1])
            continue
        parts.append(line)
        joined.append((first, " ".join(parts)))
        first, parts = None, []
    return joined


def substitute_commands(line):
    """Each `$(...)` (nested parentheses allowed) as the one argument `SUBSTITUTED`."""
    out, i = [], 0
    while i < len(line):
        if line.startswith("$(", i):
            depth, j = 1, i + 2
            while j < len(line) and depth:
                depth += {"(": 1, ")": -1}.get(line[j], 0)
                j += 1
            out.append("SUBSTITUTED")
            i = j
        else:
            out.append(line[i])
            i += 1
    return "".join(out)


def simple_commands(line):
    """The argument lists of the simple commands a shell line runs (pipes, `&&`, `;`)."""
    lexer = shlex.shlex(substitute_commands(line), posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    commands, current, tokens = [], [], list(lexer)
    skip = False
    for token in tokens:
        if skip:
            skip = False
        elif token in (";", "&&", "||", "|", "&"):
            commands.append(current)
            current = []
        elif token in (">", ">>", "<", ">&", "&>"):
            skip = True  # the redirection's target
        else:
            current.append(token)
    commands.append(current)
    return [c for c in commands if c]


def kapps_argv(argv):
    """`['retrain', '--demo']` for `kapps retrain --demo` or `python -m retrain --demo`
    (after `VAR=value` prefixes), None for any other program."""
    while argv and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", argv[0]):
        argv = argv[1:]
    if argv[:1] == ["kapps"]:
        return argv[1:]
    if len(argv) >= 3 and argv[0] in ("python", "python3") and argv[1] == "-m" \
            and argv[2] in PYTHON_MODULES:
        return [PYTHON_MODULES[argv[2]]] + argv[3:]
    return None


def doc_commands():
    """(where, argv after `kapps`) for every command the docs show."""
    found = []
    for path in DOCS:
        for start, text in fenced_blocks(path, SHELL_LANGUAGES):
            for number, line in logical_lines(start, text):
                if line.rstrip().endswith(ILLUSTRATIVE):
                    continue
                for argv in simple_commands(line):
                    argv = kapps_argv(argv)
                    if argv is not None:
                        found.append((f"{path.relative_to(ROOT)}:{number}", argv))
    return found


COMMANDS = doc_commands()


def parse(argv):
    """The command's own parser on `argv` (after `kapps`): (command, namespace), or
    AssertionError with argparse's message."""
    from kapps.cli import COMMANDS as KAPPS_COMMANDS

    assert argv, "`kapps` without a command"
    command, rest = argv[0], argv[1:]
    if command in ("-h", "--help"):
        return command, None
    assert command in KAPPS_COMMANDS, f"no command {command!r}: one of {', '.join(KAPPS_COMMANDS)}"
    module = importlib.import_module(KAPPS_COMMANDS[command][0])
    if module.__name__ == "kapps.cli_models":
        parser, rest = module._parser(), [command] + rest
    else:
        parser = module.build_parser()
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            args = parser.parse_args(rest)
    except SystemExit as exit_:
        assert exit_.code == 0 and ("-h" in rest or "--help" in rest), err.getvalue().strip()
        return command, None
    return command, args


def touch(path):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()


def check_values(command, args):
    """Retraining's flags through `RetrainConfig.check` (and `kapps export`'s format and
    quantization), in the current folder, after making the files the docs assume are
    there (a --weights file, a review's list)."""
    from retrain.config import RetrainConfig, default_output_dir

    if command == "retrain":
        config = RetrainConfig(**vars(args))
    elif command == "review":
        from retrain.review.labels import ReviewConfig

        fields = {k: v for k, v in vars(args).items() if k not in ("apply", "undo")}
        review = ReviewConfig(**fields)
        config = review.retrain_config()
    elif command == "tune":
        from tuning.cli_tune import CONFIG_FLAGS

        config = RetrainConfig(**{name: getattr(args, name) for name in CONFIG_FLAGS})
    elif command == "export":
        from retrain.export.convert import check_request

        return check_request(args.format, args.quantize)
    else:
        return
    weights = config.weights
    if weights and str(weights).lower() not in ("imagenet", "torchvision", "none"):
        touch(weights)
    if config.drop_label_issues is True:
        touch(Path(config.output_dir or default_output_dir(config.image_dir), "label_issues.txt"))
    elif config.drop_label_issues:
        touch(config.drop_label_issues)
    (review if command == "review" else config).check()


def check_command(argv):
    """Parse `argv` as a shell would hand it over (`~` expanded), then check its values."""
    argv = [os.path.expanduser(a) if a.startswith("~") else a for a in argv]
    command, args = parse(argv)
    if args is not None:
        check_values(command, args)


@pytest.fixture
def fresh_home(tmp_path, monkeypatch):
    """An empty home and working folder, as on a fresh machine."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("KAPPS_CACHE", raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_the_docs_show_commands():
    """The extraction finds what the docs show: every command of `kapps`, in README and
    guide alike (a broken extraction would pass every check below vacuously)."""
    from kapps.cli import COMMANDS as KAPPS_COMMANDS

    shown = {argv[0] for _, argv in COMMANDS}
    assert set(KAPPS_COMMANDS) <= shown, sorted(set(KAPPS_COMMANDS) - shown)
    readme = {argv[0] for where, argv in COMMANDS if where.startswith("README.md")}
    assert {"retrain", "predict", "export", "serve", "tune", "review"} <= readme
    assert len(COMMANDS) > 50


@pytest.mark.parametrize("argv", [argv for _, argv in COMMANDS],
                         ids=[where for where, _ in COMMANDS])
def test_doc_command_parses(argv, fresh_home):
    check_command(argv)


@pytest.mark.parametrize("argv, message", [
    (["retrain", "--image_dir", "pets", "--no_such_flag"], "unrecognized arguments"),
    (["retrain", "--image_dir", "pets", "--fine_tune", "last:30"], "--fine_tune"),
    (["export", "--model", "m", "--format", "litert", "--quantize", "int4"], "--quantize"),
    (["retrian", "--demo"], "no command 'retrian'"),
    (["tune", "--image_dir", "pets", "--tuner", "annealing"], "--tuner"),
])
def test_a_wrong_command_fails(argv, message, fresh_home):
    """Negative twins: what the check above must catch."""
    from kapps.errors import UserError

    with pytest.raises((AssertionError, UserError), match=re.escape(message)):
        check_command(argv)


def test_extraction_reads_the_shell_as_written():
    line = ('KERASTUNER_TUNER_ID=chief kapps tune --image_dir flowers  # a comment\n')
    assert [kapps_argv(a) for a in simple_commands(line)] == \
        [["tune", "--image_dir", "flowers"]]
    line = 'kapps predict --model m $(python -c "print(f(x()))") | tee out.txt && ls > x'
    assert [kapps_argv(a) for a in simple_commands(line)] == \
        [["predict", "--model", "m", "SUBSTITUTED"], None, None]
    assert logical_lines(3, "kapps retrain \\\n    --demo\nkapps models") == \
        [(3, "kapps retrain      --demo"), (5, "kapps models")]
    assert kapps_argv(["python", "-m", "retrain", "--demo"]) == ["retrain", "--demo"]


def test_checking_the_docs_imports_no_tensorflow(tmp_path):
    """In a fresh interpreter, as the commands' own --help and flag checks do."""
    env = dict(os.environ, HOME=str(tmp_path), PYTHONPATH=str(ROOT))
    env.pop("KAPPS_CACHE", None)
    code = ("import os, sys; sys.path.insert(0, sys.argv[2]); os.chdir(sys.argv[1]); "
            "import test_docs\n"
            "for where, argv in test_docs.COMMANDS: test_docs.check_command(argv)\n"
            "print(len(test_docs.COMMANDS), sorted(m for m in ('tensorflow', 'keras') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path), str(ROOT / "tests")], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split(None, 1)[1].strip() == "[]", out.stdout


def slug(heading):
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as `-`."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path):
    seen, found = {}, set()
    in_fence = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line):
            in_fence = not in_fence
        elif not in_fence and line.startswith("#"):
            base = slug(line.lstrip("#"))
            found.add(base if base not in seen else f"{base}-{seen[base]}")
            seen[base] = seen.get(base, 0) + 1
    return found


def links():
    for path in DOCS:
        text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.S)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if not re.match(r"^[a-z]+:", target):
                yield path, target


@pytest.mark.parametrize("path, target", list(links()),
                         ids=[f"{p.relative_to(ROOT)}->{t}" for p, t in links()])
def test_relative_link_resolves(path, target):
    file, _, anchor = target.partition("#")
    resolved = (path.parent / file).resolve() if file else path
    assert resolved.exists(), f"{path.relative_to(ROOT)}: {target}: no such file"
    if anchor:
        assert resolved.suffix == ".md", target
        assert anchor in anchors(resolved), f"{path.relative_to(ROOT)}: {target}: no such heading"


@pytest.mark.parametrize("path, start, code", [
    (path, start, code) for path in DOCS for start, code in fenced_blocks(path, ("python",))])
def test_python_block_compiles(path, start, code):
    compile(code, f"{path.relative_to(ROOT)}:{start}", "exec")


def quick_start():
    """The README's block after the quick-start marker."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    after = text[text.index(QUICK_START):]
    block = re.search(r"```bash\n(.*?)```", after, flags=re.S).group(1)
    return block


def test_readme_quick_start_runs_as_written(tmp_path):
    """The demo retrain and the prediction after it, as a newcomer types them, in an
    empty home folder (the demo's digits, the cache and saved_models/ all start absent).
    About a minute on 2 CPU cores."""
    env = dict(os.environ, HOME=str(tmp_path),
               PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    env.pop("KAPPS_CACHE", None)
    out = subprocess.run(["bash", "-euo", "pipefail", "-c", quick_start()], cwd=tmp_path,
                         env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert (tmp_path / "saved_models" / "digits" / "model.keras").is_file()
    answers = out.stdout.split("digit_00007.png\n", 1)[1].splitlines()
    assert answers[0].strip().startswith("7 (score = "), out.stdout[-2000:]


def test_the_kubernetes_job_sketch_builds_a_tf_config_kapps_reads(fresh_home):
    """The guide's indexed Job, as far as this machine can run it: each pod's shell
    builds a TF_CONFIG that names it (by its index) in a cluster of `completions`
    workers on the Service's port, and its `kapps retrain` parses."""
    import yaml

    from retrain.train.cluster import read_cluster

    (start, text), = fenced_blocks(ROOT / "docs" / "guide" / "more-than-one-machine.md",
                                   {"yaml"})
    service, job = yaml.safe_load_all(text)
    spec = job["spec"]
    (container,) = spec["template"]["spec"]["containers"]
    script = container["args"][0].replace(
        "exec kapps", "exec python3 -c 'import json, os, sys; "
        "print(json.dumps([os.environ[\"TF_CONFIG\"], sys.argv[1:]]))'")
    assert script != container["args"][0], "the pod no longer runs `exec kapps ...`"
    port = service["spec"]["ports"][0]["port"]
    assert container["ports"][0]["containerPort"] == port
    assert spec["completionMode"] == "Indexed"
    for index in range(spec["completions"]):
        done = subprocess.run(["/bin/sh", "-c", script], capture_output=True, text=True,
                              env=dict(os.environ, JOB_COMPLETION_INDEX=str(index)))
        assert done.returncode == 0, done.stderr
        tf_config, argv = json.loads(done.stdout)
        cluster = read_cluster({"TF_CONFIG": tf_config})
        assert (cluster.rank, cluster.workers) == (index, spec["completions"])
        assert all(a.endswith(f".{service['metadata']['name']}:{port}")
                   for a in cluster.addresses)
        check_command(argv)
