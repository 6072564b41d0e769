"""The AWS calls each Lambda function's code makes, read from the code itself (ast, nothing imported).

- adapters (chalicelib/adapters/*.py): every method's `aws_call("service:Operation")` labels (and
  labels passed to a helper, as `_gone_is_done("ec2:DeleteSnapshot", ...)` does), closed over the
  class's own `self.method(...)` calls; and every boto3 call `self.<client>.<operation>(...)` with
  the label it runs under, so a label that lies about its call is caught.
- handlers.py: which use case (Container field) each function calls.
- service.py: which adapter methods each use case reaches, through `self.ports.<port>`, names bound
  from it, helpers returning an adapter, and the Advancer when the use case hands it a job. An Ec2Images obtained through `self.ports.targets` acts
  in a target account (with the target role), not with the function's own role.
"""
from __future__ import annotations

import ast
import functools
import re
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHALICELIB = ROOT / "chalicelib"
LABEL = re.compile(r"^[a-z0-9-]+:[A-Z][A-Za-z0-9]+$")


def _parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def _self_attr(node: ast.AST) -> str | None:
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self":
        return node.attr
    return None


@dataclass
class BotoCall:
    where: str  # Class.method
    client: str  # the attribute holding the client: ec2, kms, sqs, ...
    operation: str  # snake_case method of the boto3 client
    label: str | None  # the aws_call label it runs under


@dataclass
class Adapters:
    labels: dict[str, dict[str, set[str]]] = field(default_factory=dict)  # class -> method -> labels (closed)
    boto_calls: list[BotoCall] = field(default_factory=list)

    def all_labels(self) -> set[str]:
        return {label for methods in self.labels.values() for found in methods.values() for label in found}


def read_adapters() -> Adapters:
    adapters = Adapters()
    for path in sorted((CHALICELIB / "adapters").glob("*.py")):
        for cls in (n for n in _parse(path).body if isinstance(n, ast.ClassDef)):
            direct: dict[str, set[str]] = {}
            calls: dict[str, set[str]] = {}
            # boto3 clients are the dataclass fields typed `object` (caches are private)
            client_fields = {n.target.id for n in cls.body if isinstance(n, ast.AnnAssign)
                             and isinstance(n.target, ast.Name) and not n.target.id.startswith("_")
                             and ast.unparse(n.annotation).startswith("object")}
            for method in (n for n in cls.body if isinstance(n, ast.FunctionDef)):
                direct[method.name], calls[method.name] = set(), set()
                _collect_method(cls.name, method, client_fields, direct[method.name], calls[method.name],
                                adapters.boto_calls)
            closed = {}
            for name in direct:
                seen, todo, labels = set(), [name], set()
                while todo:
                    current = todo.pop()
                    if current in seen or current not in direct:
                        continue
                    seen.add(current)
                    labels |= direct[current]
                    todo += list(calls[current])
                closed[name] = labels
            adapters.labels[cls.name] = closed
    return adapters


def _collect_method(cls: str, method: ast.FunctionDef, client_fields: set[str], labels: set[str],
                    self_calls: set[str], boto_calls: list[BotoCall]) -> None:
    def visit(node: ast.AST, label: str | None) -> None:
        if isinstance(node, ast.With):
            for item in node.items:
                call = item.context_expr
                if isinstance(call, ast.Call) and getattr(call.func, "id", None) == "aws_call" and call.args \
                        and isinstance(call.args[0], ast.Constant):
                    label = call.args[0].value
                    labels.add(label)
        if isinstance(node, ast.Call):
            constant_labels = [a.value for a in node.args if isinstance(a, ast.Constant)
                               and isinstance(a.value, str) and LABEL.match(a.value)]
            if constant_labels and getattr(node.func, "id", None) != "aws_call":
                label = constant_labels[0]  # a helper told which call it wraps
                labels.add(label)
            method_name = _self_attr(node.func)
            if method_name:
                self_calls.add(method_name)
            func = node.func
            if isinstance(func, ast.Attribute) and _self_attr(func.value) in client_fields:
                boto_calls.append(BotoCall(f"{cls}.{method.name}", _self_attr(func.value), func.attr, label))
        for child in ast.iter_child_nodes(node):
            visit(child, label)

    visit(method, None)


def _annotations(cls: ast.ClassDef) -> dict[str, str]:
    return {n.target.id: ast.unparse(n.annotation) for n in cls.body
            if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)}


def function_use_cases() -> dict[str, str]:
    """Lambda function (handlers.py) -> the use-case class it calls through bootstrap's container."""
    container = next(n for n in _parse(CHALICELIB / "bootstrap.py").body
                     if isinstance(n, ast.ClassDef) and n.name == "Container")
    fields = _annotations(container)
    found = {}
    for function in (n for n in _parse(CHALICELIB / "handlers.py").body if isinstance(n, ast.FunctionDef)):
        for node in ast.walk(function):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Call) \
                    and ast.unparse(node.value.func) == "bootstrap.container":
                found[function.name] = fields[node.attr]
    return found


@dataclass
class UseCaseCalls:
    own: set[str] = field(default_factory=set)  # with the function's role
    target: set[str] = field(default_factory=set)  # with a target account's role


def use_case_calls(adapters: Adapters) -> dict[str, UseCaseCalls]:
    module = _parse(CHALICELIB / "service.py")
    classes = {n.name: n for n in module.body if isinstance(n, ast.ClassDef)}
    ports = _annotations(classes["Ports"])
    result = {}
    for name in ("Intake", "Advancer", "Waker"):
        cls = classes[name]
        methods = {n.name: n for n in cls.body if isinstance(n, ast.FunctionDef)}
        # helpers that return an adapter: through the targets port means a target account
        helpers = {}
        for method in methods.values():
            returns = ast.unparse(method.returns) if method.returns else ""
            if returns in adapters.labels:
                via_targets = any(ast.unparse(n) == "self.ports.targets" for n in ast.walk(method))
                helpers[method.name] = (returns, via_targets)
        calls = UseCaseCalls()
        for method in methods.values():
            bound: dict[str, tuple[str, bool]] = {}
            for node in ast.walk(method):  # names bound from a port, e.g. `spec, ec2 = ..., self.ports.source_ec2`
                if isinstance(node, ast.Assign):
                    pairs = []
                    for target in node.targets:
                        if isinstance(target, ast.Tuple) and isinstance(node.value, ast.Tuple):
                            pairs += list(zip(target.elts, node.value.elts))
                        else:
                            pairs.append((target, node.value))
                    for target, value in pairs:
                        kind = _port_type(value, ports, helpers)
                        if isinstance(target, ast.Name) and kind:
                            bound[target.id] = kind
            for node in ast.walk(method):
                if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                    continue
                receiver = node.func.value
                kind = bound.get(receiver.id) if isinstance(receiver, ast.Name) else _port_type(receiver, ports, helpers)
                if not kind:
                    continue
                adapter, in_target = kind
                labels = adapters.labels[adapter].get(node.func.attr)
                if labels is None:
                    raise AssertionError(f"{name}: {adapter} has no method {node.func.attr}")
                (calls.target if in_target else calls.own).update(labels)
        result[name] = calls
    # a use case that hands a job to the Advancer (the Waker's fast path) makes the Advancer's calls too
    for name in ("Intake", "Waker"):
        if any(ast.unparse(n).startswith("self.advancer.") for n in ast.walk(classes[name])):
            result[name].own |= result["Advancer"].own
            result[name].target |= result["Advancer"].target
    return result


def _port_type(node: ast.AST, ports: dict[str, str], helpers: dict[str, tuple[str, bool]]) -> tuple[str, bool] | None:
    text = ast.unparse(node)
    match = re.fullmatch(r"self\.ports\.(\w+)", text)
    if match and ports.get(match.group(1)) not in (None, "Callable[[], float]"):
        return ports[match.group(1)], False
    if isinstance(node, ast.Call) and _self_attr(node.func) in helpers:
        return helpers[_self_attr(node.func)]
    return None


@functools.lru_cache(maxsize=None)
def function_calls() -> dict[str, UseCaseCalls]:
    adapters = read_adapters()
    per_use_case = use_case_calls(adapters)
    return {function: per_use_case[use_case] for function, use_case in function_use_cases().items()}
