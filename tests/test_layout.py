"""The house's plan: `retrain/` is a few rooms whose imports run one way, with no circle.

Every import in every module counts, those inside functions too (they are how a module
reaches TensorFlow late, not a way around the plan). A room is a sub-package or a module
at the top of `retrain/`; each sub-package's docstring says what it holds and, on its
`May import:` line, which rooms it may import. These tests read the source only.
"""
import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent / "retrain"

# Lowest first: a room may import only rooms before it (and its own modules).
ORDER = ["common", "data", "report", "formats", "prediction", "train", "export", "serving",
         "config", "demo", "job", "review", "cli", "__main__", "(root)"]


def module_name(path):
    parts = ["retrain", *path.relative_to(ROOT).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules():
    return {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def imported(path, name, known):
    """The retrain modules that `path` (module `name`) imports, wherever in the file."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            for alias in node.names:
                full = f"{base}.{alias.name}"
                found.add(full if full in known else base)
    return {m for m in found if m in known and m != name}


def graph():
    known = modules()
    return {name: imported(path, name, known) for name, path in known.items()}


def room(module):
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "(root)"


def test_every_module_lives_in_a_room_of_the_plan():
    assert {room(m) for m in modules()} <= set(ORDER)


def test_imports_run_one_way_between_rooms():
    wrong = [f"{a} imports {b}" for a, targets in graph().items() for b in targets
             if room(a) != room(b) and ORDER.index(room(b)) > ORDER.index(room(a))]
    assert not wrong, "imports running up the plan:\n" + "\n".join(sorted(wrong))


def circles(edges):
    """Strongly connected components of more than one module (Tarjan's algorithm)."""
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in edges:
        if v not in index:
            visit(v)
    return found


def test_no_module_imports_itself_round_a_circle():
    assert circles(graph()) == []


def test_the_circle_finder_finds_a_circle():
    """The check above can fail: a made-up circle of three is found, a chain is not."""
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert circles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def declared(package):
    """The rooms a sub-package's docstring says it may import."""
    doc = ast.get_docstring(ast.parse((ROOT / package / "__init__.py").read_text()))
    assert doc, f"retrain/{package}/__init__.py needs a docstring saying what it holds"
    [line] = [line for line in doc.splitlines() if line.startswith("May import:")]
    value = line.removeprefix("May import:").strip().rstrip(".")
    if value.startswith("nothing"):
        return set()
    if value.startswith("any room"):
        return set(ORDER)
    return {item.split("(")[0].strip().removeprefix("retrain.") for item in value.split(",")}


SUB_PACKAGES = sorted(p.parent.name for p in ROOT.glob("*/__init__.py"))


@pytest.mark.parametrize("package", SUB_PACKAGES)
def test_each_room_says_what_it_may_import_and_keeps_to_it(package):
    allowed = declared(package)
    assert all(ORDER.index(r) < ORDER.index(package) for r in allowed if r != "(root)"
               and package != "cli"), f"{package} declares a room above it: {allowed}"
    used = {room(b) for a, targets in graph().items() if room(a) == package
            for b in targets} - {package}
    assert used <= allowed, f"retrain/{package} imports {sorted(used - allowed)} " \
                            "that its docstring's `May import:` line does not allow"


def test_public_names_stay_put():
    import retrain

    assert callable(retrain.predict) and retrain.Predictor.__name__ == "Predictor"
    assert {"retrain", "RetrainConfig", "review_labels", "serve"} <= set(retrain.__all__)
