"""Which AWS API operations can the deployment's code call? Read from the source, never imported.

:func:`scan` parses every module under the given roots (``include/``, ``dags/``, ``plugins/``) and follows
what the code does with boto3 clients through a small abstract interpreter:

* a client is made by a call named ``client`` with a literal service (``include.aws.client("s3")``,
  ``boto3.client("s3")``), or by an amazon provider hook (``AwsBaseHook(client_type="sns").get_conn()``,
  ``SnsHook().conn``, an operator's ``self.hook.conn``);
* clients flow through assignments, ``or``/``if`` expressions, function and method arguments, return values and
  ``self.<attr>`` of project classes; each function is analysed once per distinct set of argument values, so
  ``client("s3")`` and ``client("glue")`` stay apart although both go through ``include.aws.client``;
* a method call on a client is an operation (``s3.get_object`` is ``GetObject``); ``get_paginator`` and
  ``get_waiter`` count as the operations they call; boto3's S3 transfer methods (``upload_file``, ``copy``, …)
  count as every operation they may issue;
* amazon provider classes the code instantiates (operators, sensors, notifiers) are read from the installed
  provider's source too: their ``execute`` / ``execute_complete`` / ``poke`` / ``notify`` run with ``self``
  bound to the instance, so ``self.hook.conn.start_application`` and ``SnsHook.publish_to_target`` are found.

It fails closed: a call that looks like a client operation (its name is one of the operations of a service the
code uses) but whose receiver could not be resolved to a client in any context is reported in
``Scan.unresolved``, as is a client made from a service name that is not a literal.
"""

from __future__ import annotations

import ast
import json
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import botocore.session
from botocore import xform_name

PROVIDER_PREFIX = "airflow.providers.amazon."
HOOK_BASE = ("airflow.providers.amazon.aws.hooks.base_aws", "AwsGenericHook")
#: Methods Airflow itself calls on an operator, sensor or notifier instance.
RUNTIME_METHODS = ("execute", "execute_complete", "poke", "notify")
#: Client attributes that are not API calls.
CLIENT_NON_CALLS = frozenset({"meta", "exceptions", "can_paginate", "close", "waiter_names"})
#: boto3's S3 transfer methods and every operation each may issue (multipart above the threshold).
S3_TRANSFER = {
    "upload_file": ("PutObject", "CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload", "AbortMultipartUpload"),
    "upload_fileobj": ("PutObject", "CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload", "AbortMultipartUpload"),
    "download_file": ("HeadObject", "GetObject"),
    "download_fileobj": ("HeadObject", "GetObject"),
    "copy": ("HeadObject", "CopyObject", "CreateMultipartUpload", "UploadPartCopy", "CompleteMultipartUpload", "AbortMultipartUpload"),
}  # fmt: skip


@dataclass(frozen=True)
class Call:
    """One AWS operation reachable from the code: ``service`` is botocore's name, ``operation`` PascalCase."""

    service: str
    operation: str
    where: str
    via: str


@dataclass
class Scan:
    calls: set[Call] = field(default_factory=set)
    unresolved: list[str] = field(default_factory=list)

    def operations(self) -> set[tuple[str, str]]:
        return {(c.service, c.operation) for c in self.calls}


# --------------------------------------------------------------------------------------------- botocore facts
@cache
def _session() -> botocore.session.Session:
    return botocore.session.get_session()


@cache
def service_names() -> frozenset[str]:
    return frozenset(_session().get_available_services())


@cache
def operations_by_method(service: str) -> dict[str, str]:
    """``get_object`` → ``GetObject`` for every operation of ``service``."""
    model = _session().get_service_model(service)
    return {xform_name(op): op for op in model.operation_names}


@cache
def waiter_operation(service: str, waiter: str) -> str | None:
    """The operation a waiter polls: the amazon provider's own waiters first, then botocore's."""
    provider = _provider_root() / "aws" / "waiters" / f"{service}.json"
    candidates = []
    if provider.is_file():
        candidates.append(json.loads(provider.read_text())["waiters"])
    try:
        model = _session().get_waiter_model(service)
        candidates.append({name: model.get_waiter(name).__dict__ for name in model.waiter_names})
    except Exception:  # noqa: BLE001 - a service without waiters
        pass
    for waiters in candidates:
        for name, spec in waiters.items():
            if waiter in (name, xform_name(name)):
                return spec.get("operation")
    return None


@cache
def _provider_root() -> Path:
    for entry in map(Path, sys.path):
        root = entry / "airflow" / "providers" / "amazon"
        if root.is_dir():
            return root
    raise RuntimeError("the amazon provider is not installed on sys.path")


# --------------------------------------------------------------------------------------------- abstract values
@dataclass(frozen=True)
class Client:
    service: str


@dataclass(frozen=True)
class Const:
    value: str


@dataclass(frozen=True)
class ModuleRef:
    name: str


@dataclass(frozen=True)
class FuncRef:
    module: str
    qualname: str


@dataclass(frozen=True)
class ClassRef:
    module: str
    name: str


@dataclass(frozen=True)
class Instance:
    cls: ClassRef
    service: str | None = None  # the client_type of an amazon provider hook


@dataclass(frozen=True)
class BoundMethod:
    instance: Instance
    func: FuncRef


@dataclass(frozen=True)
class Super:
    cls: ClassRef
    instance: Instance


Value = Any
Values = frozenset


class Module:
    def __init__(self, name: str, path: Path, is_package: bool) -> None:
        self.name, self.path, self.is_package = name, path, is_package
        self.tree = ast.parse(path.read_text(), filename=str(path))
        self.imports: dict[str, tuple[str, str | None]] = {}  # local name → (module, attribute or None)
        self.functions: dict[str, ast.FunctionDef | ast.AsyncFunctionDef] = {}  # qualname → node
        self.parents: dict[str, str | None] = {}  # function qualname → enclosing function qualname
        self.classes: dict[str, ast.ClassDef] = {}
        self.lazy_exports: dict[str, str] = {}  # name → module, for a package's lazy ``__getattr__`` exports
        self._index(self.tree.body, prefix="", enclosing=None)
        if "__getattr__" in self.functions or self._assigns_getattr():
            for node in self.tree.body:
                if isinstance(node, ast.Assign) and isinstance(node.value, ast.Dict):
                    pairs = zip(node.value.keys, node.value.values, strict=True)
                    self.lazy_exports.update(
                        (k.value, v.value)
                        for k, v in pairs
                        if isinstance(k, ast.Constant)
                        and isinstance(v, ast.Constant)
                        and isinstance(v.value, str)
                    )

    def _assigns_getattr(self) -> bool:
        """``__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)`` (include/lazy_exports.py) at top level."""
        for node in self.tree.body:
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    names = target.elts if isinstance(target, ast.Tuple) else [target]
                    if any(isinstance(n, ast.Name) and n.id == "__getattr__" for n in names):
                        return True
        return False

    def _index(self, body: list[ast.stmt], prefix: str, enclosing: str | None) -> None:
        for node in body:
            if isinstance(node, ast.Import):
                for alias in node.names:
                    local = alias.asname or alias.name.split(".")[0]
                    self.imports[local] = (alias.name if alias.asname else alias.name.split(".")[0], None)
            elif isinstance(node, ast.ImportFrom):
                base = self._absolute(node.module, node.level)
                for alias in node.names:
                    self.imports[alias.asname or alias.name] = (base, alias.name)
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                qual = f"{prefix}{node.name}"
                self.functions[qual] = node
                self.parents[qual] = enclosing
                self._index(node.body, f"{qual}.<locals>.", qual)
            elif isinstance(node, ast.ClassDef):
                qual = f"{prefix}{node.name}"
                if not prefix:
                    self.classes[node.name] = node
                for item in node.body:
                    if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                        self.functions[f"{qual}.{item.name}"] = item
                        self.parents[f"{qual}.{item.name}"] = enclosing
                        self._index(item.body, f"{qual}.{item.name}.<locals>.", f"{qual}.{item.name}")
            else:
                for child in ast.iter_child_nodes(node):
                    if isinstance(child, ast.stmt):
                        self._index([child], prefix, enclosing)

    def _absolute(self, module: str | None, level: int) -> str:
        if not level:
            return module or ""
        parts = self.name.split(".")
        base = parts if self.is_package else parts[:-1]
        base = base[: len(base) - (level - 1)]
        return ".".join(base + ([module] if module else []))


@dataclass(frozen=True)
class Context:
    func: FuncRef
    bindings: tuple[tuple[str, Values], ...]


class Scanner:
    def __init__(self, roots: dict[str, Path], exclude: tuple[Path, ...] = ()) -> None:
        """``roots`` maps a top-level package name to its directory, e.g. ``{"include": repo / "include"}``, or
        ``""`` to a directory that is itself on ``sys.path`` (Airflow's ``plugins/``); files in ``exclude`` are
        left out as if they did not exist."""
        self.roots = roots
        self.modules: dict[str, Module | None] = {}
        self.project: list[str] = []
        skipped = {p.resolve() for p in exclude}
        for top, directory in roots.items():
            for path in sorted(directory.rglob("*.py")):
                if path.resolve() in skipped:
                    continue
                parts = path.relative_to(directory).with_suffix("").parts
                is_package = parts[-1] == "__init__"
                parts = ((top,) if top else ()) + (parts[:-1] if is_package else parts)
                name = ".".join(parts)
                self.modules[name] = Module(name, path, is_package)
                self.project.append(name)
        self.summaries: dict[Context, Values] = {}
        self.attrs: dict[ClassRef, dict[str, set]] = defaultdict(lambda: defaultdict(set))
        self.pending: set[Context] = set()
        self.result = Scan()
        self.resolved_sites: set[tuple[str, int, int]] = set()
        self.suspicious: dict[tuple[str, int, int], str] = {}
        self.dirty = True

    # ----------------------------------------------------------------------------------------- modules
    def module(self, name: str) -> Module | None:
        if name in self.modules:
            return self.modules[name]
        found = None
        if name.startswith(PROVIDER_PREFIX):
            rel = Path(*name.split("."))
            for entry in map(Path, sys.path):
                if (entry / rel).with_suffix(".py").is_file():
                    found = Module(name, (entry / rel).with_suffix(".py"), False)
                    break
                if (entry / rel / "__init__.py").is_file():
                    found = Module(name, entry / rel / "__init__.py", True)
                    break
        self.modules[name] = found
        return found

    def symbol(self, module_name: str, attr: str, depth: int = 0) -> Values:
        """What ``module.attr`` is: a function, class, submodule, or a name re-exported by an import."""
        if depth > 10:
            return frozenset()
        module = self.module(module_name)
        if module is not None:
            if attr in module.functions:
                return frozenset({FuncRef(module_name, attr)})
            if attr in module.classes:
                return frozenset({ClassRef(module_name, attr)})
            if attr in module.imports:
                return self.imported(module.imports[attr], depth + 1)
            lazy = module.lazy_exports.get(attr)
            if lazy is not None:
                return self.symbol(lazy, attr, depth + 1)
        sub = f"{module_name}.{attr}"
        if sub in self.modules and self.modules[sub] is not None or self.module(sub) is not None:
            return frozenset({ModuleRef(sub)})
        return frozenset()

    def imported(self, target: tuple[str, str | None], depth: int = 0) -> Values:
        module_name, attr = target
        if attr is None:
            return frozenset({ModuleRef(module_name)})
        return self.symbol(module_name, attr, depth)

    def class_node(self, cls: ClassRef) -> ast.ClassDef | None:
        module = self.module(cls.module)
        return module.classes.get(cls.name) if module else None

    def mro(self, cls: ClassRef) -> list[ClassRef]:
        order, queue = [], [cls]
        while queue:
            current = queue.pop(0)
            if current in order:
                continue
            order.append(current)
            node = self.class_node(current)
            if node is None:
                continue
            for base in node.bases:
                expr = base.value if isinstance(base, ast.Subscript) else base
                for value in self.static_value(current.module, expr):
                    if isinstance(value, ClassRef):
                        queue.append(value)
        return order

    def static_value(self, module_name: str, expr: ast.expr) -> Values:
        """A module-level name or dotted attribute (class bases, class attributes)."""
        if isinstance(expr, ast.Name):
            return self.global_name(module_name, expr.id)
        if isinstance(expr, ast.Attribute):
            out = set()
            for base in self.static_value(module_name, expr.value):
                if isinstance(base, ModuleRef):
                    out |= self.symbol(base.name, expr.attr)
            return frozenset(out)
        return frozenset()

    def global_name(self, module_name: str, name: str) -> Values:
        module = self.module(module_name)
        if module is None:
            return frozenset()
        if name in module.functions:
            return frozenset({FuncRef(module_name, name)})
        if name in module.classes:
            return frozenset({ClassRef(module_name, name)})
        if name in module.imports:
            return self.imported(module.imports[name])
        return frozenset()

    def is_hook(self, cls: ClassRef) -> bool:
        return any((c.module, c.name) == HOOK_BASE for c in self.mro(cls))

    def hook_service(self, cls: ClassRef) -> str | None:
        """The ``client_type`` a provider hook class sets in its ``__init__``."""
        for current in self.mro(cls):
            module = self.module(current.module)
            init = module.functions.get(f"{current.name}.__init__") if module else None
            if init is None:
                continue
            for node in ast.walk(init):
                if (
                    isinstance(node, ast.Assign)
                    and isinstance(node.targets[0], ast.Subscript)
                    and isinstance(node.targets[0].slice, ast.Constant)
                    and node.targets[0].slice.value == "client_type"
                    and isinstance(node.value, ast.Constant)
                ):
                    return node.value.value
                if isinstance(node, ast.Call):
                    for kw in node.keywords:
                        if kw.arg == "client_type" and isinstance(kw.value, ast.Constant) and kw.value.value:
                            return kw.value.value
        return None

    # ----------------------------------------------------------------------------------------- driving
    def run(self) -> Scan:
        for name in self.project:
            module = self.modules[name]
            self.request(FuncRef(name, "<module>"), {})
            for qual in module.functions:
                bindings: dict[str, Values] = {}
                owner = qual.rsplit(".", 1)[0] if "." in qual else None
                if owner in module.classes:
                    node = module.functions[qual]
                    if node.args.args:
                        bindings[node.args.args[0].arg] = frozenset({Instance(ClassRef(name, owner))})
                self.request(FuncRef(name, qual), bindings)
        rounds = 0
        while self.dirty:
            self.dirty = False
            rounds += 1
            if rounds > 50:
                raise RuntimeError("the IAM action scan did not converge in 50 rounds")
            for context in list(self.summaries):
                self.analyse(context)
        for site, text in sorted(self.suspicious.items()):
            if site not in self.resolved_sites:
                self.result.unresolved.append(text)
        return self.result

    def request(self, func: FuncRef, bindings: dict[str, Values]) -> Values:
        key = Context(func, tuple(sorted((k, frozenset(v)) for k, v in bindings.items() if v)))
        if key not in self.summaries:
            self.summaries[key] = frozenset()
            self.dirty = True
        return self.summaries[key]

    def call_function(
        self, func: FuncRef, args: list[Values], kwargs: dict[str, Values], self_value=None
    ) -> Values:
        if func.module == HOOK_BASE[0]:
            # Credential and session plumbing of every hook; what it means for IAM is handled where a hook's
            # client or waiter is used (see _Scope.attribute and _Scope.call).
            return frozenset()
        module = self.module(func.module)
        node = module.functions.get(func.qualname) if module else None
        if node is None:
            return frozenset()
        params = [a.arg for a in node.args.posonlyargs + node.args.args]
        bindings: dict[str, Values] = {}
        if self_value is not None and params:
            bindings[params[0]] = frozenset({self_value})
            params = params[1:]
        for name, value in zip(params, args, strict=False):
            bindings[name] = value
        names = set(params) | {a.arg for a in node.args.kwonlyargs}
        for name, value in kwargs.items():
            if name in names:
                bindings[name] = value
        return self.request(func, bindings)

    def instantiate(self, cls: ClassRef, args: list[Values], kwargs: dict[str, Values]) -> Values:
        service = None
        if self.is_hook(cls):
            literal = {v.value for v in kwargs.get("client_type", ()) if isinstance(v, Const)}
            service = next(iter(sorted(literal)), None) or self.hook_service(cls)
        instance = Instance(cls, service)
        for current in self.mro(cls):
            init = FuncRef(current.module, f"{current.name}.__init__")
            if self.module(current.module) and init.qualname in self.module(current.module).functions:
                self.call_function(init, args, kwargs, self_value=instance)
                break
        if cls.module.startswith(PROVIDER_PREFIX):
            for method in RUNTIME_METHODS:
                found = self.method(instance, method)
                if found is not None:
                    self.call_function(found.func, [], {}, self_value=instance)
        return frozenset({instance})

    def method(self, instance: Instance, name: str, after: ClassRef | None = None) -> BoundMethod | None:
        order = self.mro(instance.cls)
        if after is not None and after in order:
            order = order[order.index(after) + 1 :]
        for current in order:
            module = self.module(current.module)
            if module and f"{current.name}.{name}" in module.functions:
                return BoundMethod(instance, FuncRef(current.module, f"{current.name}.{name}"))
        return None

    # ----------------------------------------------------------------------------------------- one function
    def analyse(self, context: Context) -> None:
        func = context.func
        module = self.modules.get(func.module) or self.module(func.module)
        if func.qualname == "<module>":
            body, node = module.tree.body, None
        else:
            node = module.functions[func.qualname]
            body = node.body
        scope = _Scope(self, module, func, dict(context.bindings))
        statements = list(_own_nodes(body))
        for _ in range(3):  # local assignments may feed each other in any order
            for stmt in statements:
                scope.assign(stmt)
        returns: set = set()
        for stmt in statements:
            if isinstance(stmt, ast.Call):
                scope.eval(stmt)
            elif isinstance(stmt, ast.Return) and stmt.value is not None:
                returns |= scope.eval(stmt.value)
        new = frozenset(returns)
        if new != self.summaries[context]:
            self.summaries[context] = new
            self.dirty = True

    def record(
        self, module: Module, node: ast.Call, service: str, operations: tuple[str, ...], via: str
    ) -> None:
        where = f"{_display(module)}:{node.lineno}"
        for operation in operations:
            call = Call(service, operation, where, via)
            if call not in self.result.calls:
                self.result.calls.add(call)
        self.resolved_sites.add((module.name, node.lineno, node.col_offset))


class _Scope:
    """Names visible in one analysed function (its own, its enclosing functions', its module's)."""

    def __init__(self, scanner: Scanner, module: Module, func: FuncRef, bindings: dict[str, Values]) -> None:
        self.s, self.module, self.func = scanner, module, func
        self.env: dict[str, set] = defaultdict(set, {k: set(v) for k, v in bindings.items()})
        self.enclosing = self._enclosing_envs()

    def _enclosing_envs(self) -> list[dict[str, Values]]:
        """Values of names assigned in enclosing functions and at module level, from their analyses so far."""
        envs = []
        parent = self.module.parents.get(self.func.qualname)
        chain = []
        while parent is not None:
            chain.append(parent)
            parent = self.module.parents.get(parent)
        for qual in chain + ["<module>"]:
            body = self.module.tree.body if qual == "<module>" else self.module.functions[qual].body
            env: dict[str, set] = defaultdict(set)
            for stmt in _own_nodes(body):
                if isinstance(stmt, ast.Assign) and isinstance(stmt.value, ast.Call):
                    # enclosing scopes are evaluated without bindings: enough for `s3 = client("s3")` closures
                    sub = _Scope.__new__(_Scope)
                    sub.s, sub.module, sub.func, sub.env, sub.enclosing = (
                        self.s,
                        self.module,
                        self.func,
                        env,
                        [],
                    )
                    sub.assign(stmt)
            envs.append(env)
        return envs

    # ------------------------------------------------------------------------------------------- names
    def lookup(self, name: str) -> Values:
        if name in self.env and self.env[name]:
            return frozenset(self.env[name])
        for env in self.enclosing:
            if env.get(name):
                return frozenset(env[name])
        return self.s.global_name(self.module.name, name)

    def assign(self, stmt: ast.AST) -> None:
        if isinstance(stmt, ast.Assign):
            value = stmt.value
            for target in stmt.targets:
                self._bind(target, value)
        elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
            self._bind(stmt.target, stmt.value)
        elif isinstance(stmt, ast.withitem) and stmt.optional_vars is not None:
            self._bind(stmt.optional_vars, stmt.context_expr)
        elif isinstance(stmt, ast.NamedExpr):
            self._bind(stmt.target, stmt.value)

    def _bind(self, target: ast.expr, value: ast.expr) -> None:
        if isinstance(target, ast.Tuple | ast.List) and isinstance(value, ast.Tuple | ast.List):
            for t, v in zip(target.elts, value.elts, strict=False):
                self._bind(t, v)
            return
        values = self.eval(value)
        if not values:
            return
        if isinstance(target, ast.Name):
            self.env[target.id] |= values
        elif isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name):
            for owner in self.lookup(target.value.id):
                if isinstance(owner, Instance):
                    before = set(self.s.attrs[owner.cls][target.attr])
                    self.s.attrs[owner.cls][target.attr] |= values
                    if self.s.attrs[owner.cls][target.attr] != before:
                        self.s.dirty = True

    # ------------------------------------------------------------------------------------------- expressions
    def eval(self, node: ast.expr) -> Values:
        if isinstance(node, ast.Constant):
            return frozenset({Const(node.value)}) if isinstance(node.value, str) else frozenset()
        if isinstance(node, ast.Name):
            return self.lookup(node.id)
        if isinstance(node, ast.Attribute):
            return self.attribute(self.eval(node.value), node.attr)
        if isinstance(node, ast.Call):
            return self.call(node)
        if isinstance(node, ast.BoolOp):
            return frozenset().union(*(self.eval(v) for v in node.values))
        if isinstance(node, ast.IfExp):
            return self.eval(node.body) | self.eval(node.orelse)
        if isinstance(node, ast.Await):
            return self.eval(node.value)
        if isinstance(node, ast.NamedExpr):
            self.assign(node)
            return self.eval(node.value)
        return frozenset()

    def attribute(self, owners: Values, attr: str) -> Values:
        out: set = set()
        for owner in owners:
            if isinstance(owner, ModuleRef):
                out |= self.s.symbol(owner.name, attr)
            elif isinstance(owner, Instance):
                if owner.service and attr in ("conn", "client", "async_conn"):
                    out.add(Client(owner.service))
                    continue
                out |= self.s.attrs[owner.cls].get(attr, set())
                found = self.s.method(owner, attr)
                if found is not None:
                    node = self.s.module(found.func.module).functions[found.func.qualname]
                    if any(
                        _decorator_name(d) in ("property", "cached_property") for d in node.decorator_list
                    ):
                        out |= self.s.call_function(found.func, [], {}, self_value=owner)
                    else:
                        out.add(found)
                    continue
                for cls in self.s.mro(owner.cls):
                    class_node = self.s.class_node(cls)
                    for item in class_node.body if class_node else ():
                        if isinstance(item, ast.Assign) and any(
                            isinstance(t, ast.Name) and t.id == attr for t in item.targets
                        ):
                            out |= self.s.static_value(cls.module, item.value)
            elif isinstance(owner, Super):
                found = self.s.method(owner.instance, attr, after=owner.cls)
                if found is not None:
                    out.add(found)
        return frozenset(out)

    def call(self, node: ast.Call) -> Values:
        args = [self.eval(a) for a in node.args if not isinstance(a, ast.Starred)]
        kwargs = {kw.arg: self.eval(kw.value) for kw in node.keywords if kw.arg}
        func = node.func
        if isinstance(func, ast.Name) and func.id == "super" and not node.args:
            owner = self.func.qualname.split(".")[0]
            selves = self.env.get(next(iter(self._params()), ""), set())
            return frozenset(
                Super(ClassRef(self.module.name, owner), s) for s in selves if isinstance(s, Instance)
            )
        out: set = set()
        if isinstance(func, ast.Attribute):
            receivers = self.eval(func.value)
            clients = [r for r in receivers if isinstance(r, Client)]
            for client in clients:
                self.client_call(client.service, func.attr, node, args)
            for hook in (r for r in receivers if isinstance(r, Instance) and r.service):
                if func.attr in ("get_conn", "get_client_type"):
                    out.add(Client(hook.service))
                    self.s.resolved_sites.add((self.module.name, node.lineno, node.col_offset))
                elif func.attr == "get_waiter":
                    self.client_call(hook.service, "get_waiter", node, args)
            if func.attr == "client" and not clients:
                out |= self.client_factory(node, args, kwargs)
            if not receivers:
                self.maybe_suspicious(node, func)
        elif isinstance(func, ast.Name) and func.id == "client":
            out |= self.client_factory(node, args, kwargs)
        for target in self.eval(func):
            if isinstance(target, FuncRef):
                out |= self.s.call_function(target, args, kwargs)
            elif isinstance(target, BoundMethod):
                out |= self.s.call_function(target.func, args, kwargs, self_value=target.instance)
            elif isinstance(target, ClassRef):
                out |= self.s.instantiate(target, args, kwargs)
        return frozenset(out)

    def _params(self) -> list[str]:
        node = self.module.functions.get(self.func.qualname)
        return [a.arg for a in node.args.args] if node else []

    def client_factory(self, node: ast.Call, args: list[Values], kwargs: dict[str, Values]) -> Values:
        """``client("s3")`` / ``boto3.client("s3")`` / ``session.client(service_name="s3")``."""
        candidates = (args[0] if args else frozenset()) | kwargs.get("service_name", frozenset())
        services = {v.value for v in candidates if isinstance(v, Const) and v.value in service_names()}
        if services:
            return frozenset(Client(s) for s in services)
        if self.module.name in self.s.project and not (node.args and isinstance(node.args[0], ast.Name)):
            # a literal that is no service, or an expression we cannot read: say so rather than skip it
            self.s.suspicious[(self.module.name, node.lineno, node.col_offset)] = (
                f"{_display(self.module)}:{node.lineno}: client made from {ast.unparse(node)!r}; "
                "pass the service name as a string literal"
            )
        return frozenset()

    def client_call(self, service: str, method: str, node: ast.Call, args: list[Values]) -> None:
        if method in CLIENT_NON_CALLS:
            return
        ops = operations_by_method(service)
        via = f"{service}.{method}"
        if method in ops:
            self.s.record(self.module, node, service, (ops[method],), via)
        elif method == "get_paginator":
            names = {v.value for v in (args[0] if args else ()) if isinstance(v, Const)}
            if names and all(n in ops for n in names):
                for name in names:
                    self.s.record(self.module, node, service, (ops[name],), f"{via}({name!r})")
            else:
                self._unreadable(node, f"paginator {ast.unparse(node)!r} of {service}")
        elif method == "get_waiter":
            names = {v.value for v in (args[0] if args else ()) if isinstance(v, Const)}
            operations = {n: waiter_operation(service, n) for n in names}
            if names and all(operations.values()):
                for name, op in operations.items():
                    self.s.record(self.module, node, service, (op,), f"{via}({name!r})")
            else:
                self._unreadable(node, f"waiter {ast.unparse(node)!r} of {service}")
        elif service == "s3" and method in S3_TRANSFER:
            self.s.record(self.module, node, service, S3_TRANSFER[method], via)
        else:
            self._unreadable(node, f"{via} is no operation the scanner knows")

    def _unreadable(self, node: ast.Call, what: str) -> None:
        if self.module.name in self.s.project:
            self.s.result.unresolved.append(f"{_display(self.module)}:{node.lineno}: {what}")

    def maybe_suspicious(self, node: ast.Call, func: ast.Attribute) -> None:
        """A call named like an operation of a service in use, on a receiver we could not resolve."""
        if self.module.name not in self.s.project:
            return
        services = {c.service for c in self.s.result.calls} | _services_in_project(self.s)
        names = set().union(*(operations_by_method(s) for s in services)) | set(S3_TRANSFER)
        names |= {"get_paginator", "get_waiter"}
        if func.attr in names:
            self.s.suspicious[(self.module.name, node.lineno, node.col_offset)] = (
                f"{_display(self.module)}:{node.lineno}: {ast.unparse(node.func)}(…) looks like an AWS call "
                "but its client could not be traced to where it was made"
            )


def _services_in_project(scanner: Scanner) -> set[str]:
    """Services named as a literal in a ``client("…")`` call or a ``client_type="…"`` anywhere in the project."""
    if not hasattr(scanner, "_literal_services"):
        found = set()
        for name in scanner.project:
            for node in ast.walk(scanner.modules[name].tree):
                if isinstance(node, ast.Call):
                    literals = [a for a in node.args[:1] if isinstance(a, ast.Constant)]
                    literals += [k.value for k in node.keywords if k.arg in ("client_type", "service_name")]
                    found |= {
                        c.value
                        for c in literals
                        if isinstance(c, ast.Constant) and c.value in service_names()
                    }
        scanner._literal_services = found
    return scanner._literal_services


def _own_nodes(body: list[ast.stmt]):
    """Statements, calls, returns and with-items of a body, not descending into nested defs or classes."""
    stack = list(reversed(body))
    while stack:
        node = stack.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            # decorators and defaults run in this scope
            for expr in [*node.decorator_list, *getattr(getattr(node, "args", None), "defaults", [])]:
                stack.append(expr)
            continue
        if isinstance(node, ast.Lambda):
            stack.append(node.body)
            continue
        yield node
        stack.extend(reversed(list(ast.iter_child_nodes(node))))


def _decorator_name(node: ast.expr) -> str:
    if isinstance(node, ast.Call):
        node = node.func
    if isinstance(node, ast.Attribute):
        return node.attr
    return node.id if isinstance(node, ast.Name) else ""


def _display(module: Module) -> str:
    path = module.path
    for parent in path.parents:
        if parent.name in ("site-packages",):
            return str(path.relative_to(parent))
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def scan(roots: dict[str, Path], exclude: tuple[Path, ...] = ()) -> Scan:
    return Scanner(roots, exclude).run()
