"""The shape of the house: the public surface, the error tree, no import cycles, no botocore
privates. These read the source and the modules; they need no server."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
from pathlib import Path

import pytest

import s3s3
from s3s3.errors import S3S3Error, Scope

PACKAGE_DIR = Path(s3s3.__file__).resolve().parent
MODULES = sorted(
    info.name for info in pkgutil.walk_packages(s3s3.__path__, prefix="s3s3.") if not info.ispkg
) + sorted(info.name for info in pkgutil.walk_packages(s3s3.__path__, prefix="s3s3.") if info.ispkg)


def source_files() -> list[Path]:
    return sorted(PACKAGE_DIR.rglob("*.py"))


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def defined_public_names(module) -> set[str]:
    """The names a module defines itself (functions and classes), not those it imports."""
    return {
        name
        for name, obj in vars(module).items()
        if not name.startswith("_")
        and (inspect.isclass(obj) or inspect.isfunction(obj))
        and obj.__module__ == module.__name__
    }


@pytest.mark.parametrize("name", ["s3s3.api", "s3s3.client"])
def test_public_surface_is_what_the_module_defines(name):
    # The 2015 surface: every function and class these modules define is exported, and every
    # export is defined there (or deliberately re-exported and importable).
    module = importlib.import_module(name)
    exported = set(module.__all__)
    assert defined_public_names(module) <= exported
    for export in exported:
        assert getattr(module, export, None) is not None, f"{name}.{export}"


def test_the_2015_surface_is_still_there():
    import s3s3.api
    import s3s3.client

    for name in ("create_connection", "upload", "duplicate_bucket"):
        assert callable(getattr(s3s3.api, name))
    for name in ("ListenClient", "BucketClient", "on_notify", "publish"):
        assert callable(getattr(s3s3.client, name))


@pytest.mark.parametrize("name", MODULES)
def test_every_module_imports_and_says_what_it_is_for(name):
    module = importlib.import_module(name)
    if name.startswith("s3s3.data"):
        return
    assert module.__doc__ and module.__doc__.strip(), f"{name} has no docstring"


@pytest.mark.parametrize("name", MODULES)
def test_modules_with_all_export_exactly_what_they_define(name):
    module = importlib.import_module(name)
    exported = getattr(module, "__all__", None)
    if exported is None:
        return
    missing = sorted(n for n in exported if not hasattr(module, n))
    assert not missing, f"{name}.__all__ names what it does not have: {missing}"


def exception_classes():
    for name in MODULES:
        module = importlib.import_module(name)
        for obj in vars(module).values():
            if (
                inspect.isclass(obj)
                and issubclass(obj, BaseException)
                and obj.__module__ == module.__name__
            ):
                yield obj


def test_every_exception_s3s3_defines_is_in_the_tree():
    found = list(exception_classes())
    assert len(found) >= 15
    strays = sorted(
        f"{c.__module__}.{c.__qualname__}" for c in found if not issubclass(c, S3S3Error)
    )
    assert not strays, f"outside the error tree: {strays}"


def test_every_error_says_whether_it_is_retryable_and_what_it_concerns():
    for cls in exception_classes():
        assert isinstance(cls.retryable, bool), cls
        assert isinstance(cls.scope, Scope), cls


def test_every_error_class_is_drawn_in_the_tree():
    import s3s3.errors

    drawn = s3s3.errors.__doc__
    for cls in exception_classes():
        assert cls.__name__ in drawn, f"{cls.__name__} is missing from errors.py's tree"


def test_the_tree_answers_for_the_cases_that_matter():
    from s3s3 import errors

    transient = errors.TransientEndpointError("503", op="PutObject", endpoint="d", bucket="b")
    fatal = errors.FatalEndpointError("denied", op="PutObject", endpoint="d", bucket="b")
    assert errors.is_retryable(transient) and errors.scope_of(transient) is Scope.ENDPOINT
    assert not errors.is_retryable(fatal) and errors.scope_of(fatal) is Scope.ENDPOINT
    assert not errors.is_retryable(errors.MessageError("x"))
    assert errors.scope_of(errors.MessageError("x")) is Scope.KEY
    assert not errors.is_retryable(ValueError("a bug")), "unknown failures are not retried"
    assert errors.scope_of(ValueError("a bug")) is Scope.PROCESS


def imports_of(path: Path) -> set[str]:
    """The s3s3 modules ``path`` imports at run time (``TYPE_CHECKING`` blocks excluded)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    this = module_name(path)
    package = this if path.name == "__init__.py" else this.rpartition(".")[0]
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for n in ast.walk(node))
    found = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("s3s3"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if not mod.startswith("s3s3"):
                continue
            found.add(mod)
            for alias in node.names:  # from s3s3.store import lean: a module
                if f"{mod}.{alias.name}" in KNOWN:
                    found.add(f"{mod}.{alias.name}")
    return found - {this}


KNOWN = {module_name(p) for p in source_files()}


def test_no_import_cycle_between_modules():
    graph = {module_name(p): imports_of(p) & KNOWN for p in source_files()}
    # Tarjan's strongly connected components: any component of two or more is a cycle.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    assert not cycles, f"import cycles: {cycles}"


GROUND_FLOOR = {"s3s3", "s3s3.model", "s3s3.errors", "s3s3.retry", "s3s3.config", "s3s3.redact"}
#: What each room may import, beyond the ground floor and itself (data flows one way).
MAY_IMPORT = {
    "s3s3.model": set(),
    "s3s3.errors": set(),
    "s3s3.store": set(),
    "s3s3.plan": set(),
    # keyspace: ranges of keys and split points (pure), for the listings and the stream.
    "s3s3.keyspace": set(),
    "s3s3.listing": {"s3s3.store", "s3s3.keyspace"},
    # resume: where a multipart copy's progress is kept (no I/O to S3; transfer uses it).
    "s3s3.resume": set(),
    "s3s3.transfer": {"s3s3.store", "s3s3.plan", "s3s3.resume"},
    # versionplan: what a key's history needs at a destination (pure); replay carries it out.
    "s3s3.versionplan": set(),
    "s3s3.replay": {"s3s3.transfer", "s3s3.store", "s3s3.listing", "s3s3.versionplan"},
    "s3s3.queue": set(),
    "s3s3.fanout": {"s3s3.transfer", "s3s3.store", "s3s3.plan"},
    "s3s3.listener": {"s3s3.fanout", "s3s3.transfer", "s3s3.store", "s3s3.replay"},
    "s3s3.bucketjob": {
        "s3s3.fanout",
        "s3s3.transfer",
        "s3s3.store",
        "s3s3.listing",
        "s3s3.keyspace",
        "s3s3.plan",
        "s3s3.queue",
        "s3s3.replay",
        "s3s3.versionplan",
    },
    # Metrics read the state of the rooms they watch; those never import it (the scripts
    # wire them together).
    "s3s3.metrics": {"s3s3.listener", "s3s3.queue", "s3s3.bucketjob"},
}


def room_of(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2])


def test_rooms_import_only_downward():
    wrong = []
    for path in source_files():
        this = module_name(path)
        room = room_of(this)
        if room not in MAY_IMPORT:
            continue
        allowed = MAY_IMPORT[room] | GROUND_FLOOR | {room}
        for imported in imports_of(path) & KNOWN:
            if room_of(imported) not in allowed and imported not in allowed:
                wrong.append(f"{this} imports {imported}")
    assert not wrong, wrong


def test_the_listener_imports_no_redis_and_parses_no_messages():
    for path in (PACKAGE_DIR / "listener").rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            for name in names:
                assert not name.startswith("redis"), f"{path.name} imports {name}"
                assert name != "s3s3.queue.messages", f"{path.name} parses messages"


def own_private_names() -> set[str]:
    """Every ``_name`` s3s3 itself defines: attributes, functions, classes, arguments."""
    names = set()
    for path in source_files():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                names.add(node.attr)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif isinstance(node, ast.arg):
                names.add(node.arg)
            elif isinstance(node, ast.alias):
                names.add(node.asname or node.name.rpartition(".")[2])
    return {n for n in names if n.startswith("_")}


#: Private names of the standard library that s3s3 reads on purpose, with the reason.
STDLIB_PRIVATE = {
    "_exit",  # os._exit: leave a forked child without running the parent's handlers
    "_replace",  # NamedTuple._replace: public API despite the underscore
    "_asdict",  # NamedTuple._asdict: likewise
    "_fields",  # NamedTuple._fields: likewise
    "_value_",  # Enum: documented member attribute
    "_name_",  # Enum: documented member attribute
    "_missing_",  # Enum: documented hook
}


def test_no_private_attribute_of_a_library_is_read():
    # botocore's `client._request_signer._credentials` is the example: anything private that
    # s3s3 did not define itself belongs to someone else and may change without notice.
    own = own_private_names() | STDLIB_PRIVATE
    reads = []
    for path in source_files():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            name = None
            if isinstance(node, ast.Attribute):
                name = node.attr
            elif (  # getattr(obj, "_private", ...) reads it too
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in ("getattr", "hasattr")
                and len(node.args) >= 2
                and isinstance(node.args[1], ast.Constant)
                and isinstance(node.args[1].value, str)
            ):
                name = node.args[1].value
            if name and name.startswith("_") and not name.startswith("__") and name not in own:
                reads.append(f"{path.relative_to(PACKAGE_DIR)}:{node.lineno} .{name}")
    assert not reads, reads


def test_only_the_scripts_print_exit_or_install_signal_handlers():
    edge = PACKAGE_DIR / "scripts"
    found = []
    for path in source_files():
        if edge in path.parents:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            called = ast.unparse(node.func)
            if called in ("print", "exit", "quit", "sys.exit", "os._exit", "signal.signal") or (
                called.endswith((".write", ".flush"))
                and called.split(".")[0] in ("sys", "stdout", "stderr")
            ):
                found.append(f"{path.relative_to(PACKAGE_DIR)}:{node.lineno} {called}()")
    assert not found, found


def test_nothing_above_the_store_sends_botocore_shaped_calls():
    # The engines speak the Store protocol in model types; Endpoint.call("PutObject", ...)
    # with botocore's parameter names stays inside store/ (tests use it to set buckets up).
    store = PACKAGE_DIR / "store"
    found = []
    for path in source_files():
        if store in path.parents:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("call", "fast_call")
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
                and node.args[0].value[:1].isupper()
            ):
                found.append(f"{path.relative_to(PACKAGE_DIR)}:{node.lineno} {node.args[0].value}")
    assert not found, found
