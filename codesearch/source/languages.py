"""Which language a file is, which tree-sitter grammar parses it, and which syntax nodes are chunks.

Grammars come from tree-sitter-language-pack 0.13.x, which bundles them in its wheel (1.x downloads
them on first use and fails offline). Each language with a grammar has a ``classify`` function that
looks at one syntax node and says whether it is a definition worth its own chunk: a function, a
class-like type (whose members are chunked separately) or a transparent container (a namespace, a
preprocessor block) whose members are visited as if they were at the level above.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tree_sitter import Node, Parser


@dataclass(frozen=True)
class Definition:
    """One definition found by a language's ``classify``.

    ``node`` spans the whole definition (decorators and export/template wrappers included);
    ``members`` are the nodes inside a class-like or container definition, visited for nested
    chunks.
    """

    kind: str  # "function", "method", "class", "struct", "interface", "enum", "trait", "impl", ...
    name: str
    node: Node
    members: list[Node] = field(default_factory=list)
    classlike: bool = False  # members are methods/fields, named Type.member
    container: bool = False  # transparent: members chunked as if at the enclosing level
    emit_header: bool = True  # False for Rust impl blocks: a bare `impl X {` line says nothing
    # What the functions among a class-like's members are: "method", or "trait_impl" in a Rust
    # `impl Trait for Type` (the trait documents them; ranked as glue, ranking.SECONDARY_KINDS).
    method_kind: str = "method"


Classifier = Callable[["Node"], "Definition | None"]


@dataclass(frozen=True)
class Language:
    """A language cs knows. ``grammar`` is None for text-like files chunked by lines or headings."""

    name: str
    grammar: str | None = None
    classify: Classifier | None = None
    # Sibling nodes that belong to the definition right below them (doc comments, decorators,
    # attributes) when no blank line separates them.
    attach: frozenset[str] = frozenset()


# --- helpers -------------------------------------------------------------------------------------


def _text(node: Node | None) -> str:
    if node is None or node.text is None:
        return ""
    return node.text.decode("utf-8", errors="replace")


def _name(node: Node, fieldname: str = "name") -> str:
    return _text(node.child_by_field_name(fieldname))


def _body_members(node: Node, fieldname: str = "body") -> list[Node]:
    body = node.child_by_field_name(fieldname)
    return list(body.named_children) if body is not None else []


def _first_child(node: Node, *types: str) -> Node | None:
    for child in node.named_children:
        if child.type in types:
            return child
    return None


def _strip_generics(text: str) -> str:
    """`Stack<T>` -> `Stack`, `&'a mut Foo` -> `Foo`: the part of a type a person searches for."""
    text = re.sub(r"<.*>", "", text, flags=re.S)
    text = re.sub(r"^[&*\s]*(?:'\w+\s+)?(?:mut\s+|const\s+)?", "", text)
    return " ".join(text.split())


def _has_body(node: Node) -> bool:
    """Declarations without a body (interface and abstract methods, prototypes) are part of their
    type's header, not chunks of their own."""
    return node.child_by_field_name("body") is not None


def _cls(kind: str, name: str, node: Node, members: list[Node], **kw: Any) -> Definition:
    return Definition(kind, name or "<anonymous>", node, members, classlike=True, **kw)


def _fn(name: str, node: Node, kind: str = "function") -> Definition:
    return Definition(kind, name or "<anonymous>", node)


def _container(node: Node, members: list[Node]) -> Definition:
    return Definition("namespace", _name(node), node, members, container=True)


# --- Python --------------------------------------------------------------------------------------


_PY_CLAUSES = ("elif_clause", "else_clause", "except_clause", "except_group_clause",
               "finally_clause")


def _python(node: Node) -> Definition | None:
    inner = node
    if node.type == "decorated_definition":
        inner = node.child_by_field_name("definition") or node
    if inner.type == "function_definition":
        return _fn(_name(inner), node)
    if inner.type == "class_definition":
        return _cls("class", _name(inner), node, _body_members(inner))
    if inner.type in ("if_statement", "try_statement"):
        # `if sys.platform == "win32": def f(): ...`, `try: ... except ImportError: def f(): ...`:
        # definitions made under a condition are definitions all the same
        blocks = [c for c in inner.named_children if c.type == "block"]
        for clause in inner.named_children:
            if clause.type in _PY_CLAUSES:
                blocks += [c for c in clause.named_children if c.type == "block"]
        members = [m for block in blocks for m in block.named_children]
        if any(_python(m) is not None for m in members):
            return _container(node, members)
    return None


# --- JavaScript / TypeScript / TSX ---------------------------------------------------------------

_JS_FUNCTION_VALUES = {
    "arrow_function",
    "function_expression",
    "function",
    "generator_function",
}
_JS_CLASSES = {
    "class_declaration": "class",
    "abstract_class_declaration": "class",
    "class": "class",
    "interface_declaration": "interface",
    "enum_declaration": "enum",
}


def _javascript(node: Node) -> Definition | None:
    return _js_classify(node, node)


# TypeScript wrappers around a value that do not change what it is: ``x as T``, ``x satisfies T``,
# ``x!``, ``(x)``.
_TS_VALUE_WRAPPERS = ("as_expression", "satisfies_expression", "non_null_expression",
                      "parenthesized_expression")


def _js_wrapped_function(value: Node | None, depth: int = 3) -> bool:
    """``wrap(function (a, b) {...})``, ``memoize((x) => ...)``, ``curry(dispatch('x', function
    ...))``: a call whose arguments include a function literal, directly or in a nested call,
    defines that function in all but syntax (lodash, ramda, React's ``memo(forwardRef(...))``),
    also under a TypeScript cast (``assign((o) => ..., {...}) as unknown as T``)."""
    while value is not None and value.type in _TS_VALUE_WRAPPERS and value.named_child_count:
        value = value.named_children[0]
    if value is None or value.type != "call_expression":
        return False
    args = value.child_by_field_name("arguments")
    if args is None:
        return False
    return any(a.type in _JS_FUNCTION_VALUES or (depth > 1 and _js_wrapped_function(a, depth - 1))
               for a in args.named_children)


def _js_function_value(value: Node | None) -> bool:
    """Whether an assigned value is a function: a literal or a wrapped one."""
    return value is not None and (value.type in _JS_FUNCTION_VALUES or _js_wrapped_function(value))


def _js_object_of_functions(value: Node | None, depth: int = 2) -> bool:
    """``{ parse(s) {...}, render: function () {...} }``: an object literal with at least one
    method, directly or in a nested object (Vue's ``methods: {...}``), is a namespace of functions
    (CommonJS ``module.exports = {...}``, Vue options, handler tables)."""
    if value is None or value.type != "object":
        return False
    for member in value.named_children:
        if member.type == "method_definition":
            return True
        if member.type == "pair":
            inner = member.child_by_field_name("value")
            if _js_function_value(inner) or (
                depth > 1 and _js_object_of_functions(inner, depth - 1)
            ):
                return True
    return False


_JS_EXPORTS_PREFIX = re.compile(r"^(?:module\.)?exports\.")


def _js_assigned_function(assignment: Node, outer: Node) -> Definition | None:
    """``Foo.prototype.bar = function () {...}`` (method ``Foo.bar``), ``exports.parse = ...`` and
    ``module.exports.parse = ...`` (function ``parse``), ``module.exports = function name()``:
    the CommonJS and prototype ways to define functions, common in older and compiled JS."""
    left, right = assignment.child_by_field_name("left"), assignment.child_by_field_name("right")
    if left is None or left.type not in ("member_expression", "identifier"):
        return None
    target = "".join(_text(left).split())
    if _js_object_of_functions(right):
        assert right is not None
        if target in ("module.exports", "exports"):  # its functions are the module's own
            return _container(outer, right.named_children)
        return _cls("object", _JS_EXPORTS_PREFIX.sub("", target), outer, right.named_children)
    if not _js_function_value(right):
        return None
    if target in ("module.exports", "exports"):
        return _fn(_name(right) if right is not None else "", outer)
    owner, dot, member = target.partition(".prototype.")
    if dot and owner and member:
        return _fn(f"{owner}.{member}", outer, "method")
    return _fn(_JS_EXPORTS_PREFIX.sub("", target), outer)


def _js_wrapper_module(expression: Node, outer: Node) -> Definition | None:
    """``(function () { function a() {...} ... })()``, UMD's ``(function (root, factory)
    {...})(this, function () {...})``, AMD's ``define([...], function () {...})``: a module
    wrapper. The bodies of its function literals are chunked as if at top level when they hold
    definitions. Other calls with callbacks (``describe('x', () => {...})``) stay whole: their
    first line names what the block is about."""
    while expression.type in ("parenthesized_expression", "unary_expression") \
            and expression.named_child_count:
        expression = expression.named_children[-1]
    if expression.type != "call_expression":
        return None
    callee = expression.child_by_field_name("function")
    while (callee is not None and callee.type == "parenthesized_expression"
           and callee.named_child_count):
        callee = callee.named_children[0]
    if callee is None or (callee.type not in _JS_FUNCTION_VALUES and _text(callee) != "define"):
        return None
    args = expression.child_by_field_name("arguments")
    candidates = [callee, *(args.named_children if args is not None else [])]
    members = [
        statement
        for fn in candidates
        if fn is not None and fn.type in _JS_FUNCTION_VALUES
        for body in [fn.child_by_field_name("body")]
        if body is not None and body.type == "statement_block"
        for statement in body.named_children
    ]
    if any(_js_classify(m, m) is not None for m in members):
        return _container(outer, members)
    return None


def _js_classify(node: Node, outer: Node) -> Definition | None:
    kind = node.type
    if kind == "export_statement":
        decl = node.child_by_field_name("declaration")
        if decl is not None:
            return _js_classify(decl, outer)
        value = node.child_by_field_name("value")
        if value is not None and value.type in _JS_FUNCTION_VALUES:
            return _fn(_name(value) or "default", outer)
        if value is not None and value.type == "class":
            return _cls("class", _name(value) or "default", outer, _body_members(value))
        if _js_wrapped_function(value):
            return _fn("default", outer)
        if _js_object_of_functions(value):
            assert value is not None
            return _container(outer, value.named_children)
        return None
    if kind in ("function_declaration", "generator_function_declaration"):
        return _fn(_name(node), outer)
    if kind == "method_definition":
        return _fn(_name(node), outer, "method")
    if kind in ("public_field_definition", "field_definition"):
        # `handle = () => {...}` in a class body is a method in all but syntax.
        value = node.child_by_field_name("value")
        if value is not None and value.type in _JS_FUNCTION_VALUES:
            prop = node.child_by_field_name("name") or node.child_by_field_name("property")
            return _fn(_text(prop), outer, "method")
        return None
    if kind in _JS_CLASSES:
        return _cls(_JS_CLASSES[kind], _name(node), outer, _body_members(node))
    if kind in ("lexical_declaration", "variable_declaration"):
        # `const f = () => {...}`: the common way to write a function in modern JS.
        declarators = [c for c in node.named_children if c.type == "variable_declarator"]
        if len(declarators) == 1:
            value = declarators[0].child_by_field_name("value")
            if _js_function_value(value):
                return _fn(_name(declarators[0]), outer)
            if value is not None and value.type == "class":
                return _cls("class", _name(declarators[0]), outer, _body_members(value))
            if _js_object_of_functions(value):
                assert value is not None
                return _cls("object", _name(declarators[0]), outer, value.named_children)
        return None
    if kind == "pair":  # a member of an object literal of functions (see above)
        key, value = node.child_by_field_name("key"), node.child_by_field_name("value")
        name = _text(key).strip("'\"`")
        if _js_function_value(value):
            return _fn(name, outer)  # "method" inside an object, "function" in module.exports
        if _js_object_of_functions(value):
            assert value is not None
            return _cls("object", name, outer, value.named_children)
        return None
    if kind in ("internal_module", "module"):
        return _container(outer, _body_members(node))
    if kind in ("expression_statement", "ambient_declaration"):
        inner = node.named_children[0] if node.named_child_count == 1 else None
        if inner is not None and inner.type in ("internal_module", "module"):
            return _container(outer, _body_members(inner))
        if kind == "ambient_declaration" and inner is not None:
            return _js_classify(inner, outer)
        if inner is not None and inner.type == "assignment_expression":
            return _js_assigned_function(inner, outer)
        if inner is not None:
            return _js_wrapper_module(inner, outer)
    return None


# --- Go ------------------------------------------------------------------------------------------


def _go_holds_func(node: Node, depth: int = 7) -> bool:
    """Whether a value holds a function literal: ``func(...) {...}`` itself, or one inside a
    composite literal (``&cobra.Command{RunE: func(...) error {...}}``)."""
    if node.type == "func_literal":
        return True
    return depth > 0 and any(_go_holds_func(c, depth - 1) for c in node.named_children)


def _go(node: Node) -> Definition | None:
    if node.type == "function_declaration":
        return _fn(_name(node), node)
    if node.type == "var_declaration":
        # `var handler = func(...) {...}` is a function; `var serveCmd = &cobra.Command{RunE:
        # func...}` (a command, a route table) is a named variable worth its own chunk
        spec = _first_child(node, "var_spec")
        value = spec.child_by_field_name("value") if spec is not None else None
        if spec is not None and value is not None and _go_holds_func(value):
            values = value.named_children
            is_func = len(values) == 1 and values[0].type == "func_literal"
            return _fn(_name(spec), node, "function" if is_func else "variable")
    if node.type == "method_declaration":
        receiver = node.child_by_field_name("receiver")
        recv_type = ""
        if receiver is not None:
            param = _first_child(receiver, "parameter_declaration")
            recv_type = _text(param.child_by_field_name("type")) if param is not None else ""
        recv_type = re.sub(r"\[.*\]", "", recv_type).strip()  # generic receivers: Stack[T]
        if recv_type.startswith("*"):
            recv = f"(*{recv_type[1:].strip()})"
        else:
            recv = recv_type
        return _fn(f"{recv}.{_name(node)}" if recv else _name(node), node, "method")
    if node.type == "type_declaration":
        specs = [c for c in node.named_children if c.type == "type_spec"]
        if len(specs) == 1:
            type_node = specs[0].child_by_field_name("type")
            type_kind = type_node.type if type_node is not None else ""
            if type_kind in ("struct_type", "interface_type"):
                kind = "struct" if type_kind == "struct_type" else "interface"
                return _cls(kind, _name(specs[0]), node, [])
    return None


# --- Rust ----------------------------------------------------------------------------------------

_RUST_TYPES = {
    "struct_item": "struct",
    "enum_item": "enum",
    "union_item": "struct",
    "trait_item": "trait",
}


def _rust(node: Node) -> Definition | None:
    kind = node.type
    if kind == "function_item":
        return _fn(_name(node), node)
    if kind in _RUST_TYPES:
        members = _body_members(node) if kind == "trait_item" else []
        return _cls(_RUST_TYPES[kind], _name(node), node, members)
    if kind == "impl_item":
        type_name = _strip_generics(_text(node.child_by_field_name("type")))
        trait = node.child_by_field_name("trait")
        if trait is None:
            return _cls("impl", f"impl {type_name}", node, _body_members(node), emit_header=False)
        name = f"impl {_strip_generics(_text(trait))} for {type_name}"
        return _cls("impl", name, node, _body_members(node), emit_header=False,
                    method_kind="trait_impl")
    if kind == "mod_item" and node.child_by_field_name("body") is not None:
        return _container(node, _body_members(node))
    if kind == "macro_definition":
        return _fn(_name(node), node, "macro")
    return None


# --- Java ----------------------------------------------------------------------------------------

_JAVA_TYPES = {
    "class_declaration": "class",
    "interface_declaration": "interface",
    "enum_declaration": "enum",
    "record_declaration": "class",
    "annotation_type_declaration": "interface",
}


def _java(node: Node) -> Definition | None:
    kind = node.type
    if kind in ("method_declaration", "constructor_declaration", "compact_constructor_declaration"):
        return _fn(_name(node), node, "method") if _has_body(node) else None
    if kind in _JAVA_TYPES:
        body = node.child_by_field_name("body")
        members: list[Node] = []
        if body is not None:
            for child in body.named_children:
                # enum constants sit beside a nested declarations list holding the real members
                if child.type == "enum_body_declarations":
                    members.extend(child.named_children)
                else:
                    members.append(child)
        return _cls(_JAVA_TYPES[kind], _name(node), node, members)
    return None


# --- C / C++ -------------------------------------------------------------------------------------

_C_DECLARATOR_WRAPPERS = {
    "pointer_declarator",
    "reference_declarator",
    "function_declarator",
    "parenthesized_declarator",
    "attributed_declarator",
}


def _c_function_name(node: Node) -> str:
    """The declared name of a C/C++ function_definition, following pointer/reference declarators."""
    decl = node.child_by_field_name("declarator")
    while decl is not None and decl.type in _C_DECLARATOR_WRAPPERS:
        decl = decl.child_by_field_name("declarator")
    return _text(decl)


_C_TYPES = {
    "struct_specifier": "struct",
    "union_specifier": "struct",
    "enum_specifier": "enum",
    "class_specifier": "class",
}
_C_CONTAINERS = {
    "preproc_if",
    "preproc_ifdef",
    "preproc_else",
    "preproc_elif",
    "preproc_elifdef",
    "linkage_specification",
    "namespace_definition",
    "declaration_list",
}


def _c_type(spec: Node, outer: Node, name: str = "") -> Definition | None:
    body = spec.child_by_field_name("body")
    if body is None:
        return None
    members = list(body.named_children)
    # access specifiers (`public:`) are just labels between members
    return _cls(_C_TYPES[spec.type], name or _name(spec), outer, members)


def _c(node: Node) -> Definition | None:
    kind = node.type
    if kind == "function_definition":
        name = _c_function_name(node)
        if "::" in name:
            # `void Stack::push(int x) {...}`: an out-of-class method definition
            return _fn(".".join(p.strip() for p in name.split("::")), node, "method")
        return _fn(name, node)
    if kind == "template_declaration":
        for child in node.named_children:
            inner = _c(child)
            if inner is not None and not inner.container:
                return Definition(
                    inner.kind,
                    inner.name,
                    node,
                    inner.members,
                    classlike=inner.classlike,
                    emit_header=inner.emit_header,
                )
        return None
    if kind in _C_TYPES:
        return _c_type(node, node)
    if kind in ("type_definition", "declaration"):
        # `typedef struct {...} Point;` and `struct point {...};`
        spec = node.child_by_field_name("type")
        if spec is not None and spec.type in _C_TYPES:
            name = _name(spec)
            if not name and kind == "type_definition":
                name = _text(node.child_by_field_name("declarator"))
            return _c_type(spec, node, name)
        return None
    if kind in _C_CONTAINERS:
        if kind in ("namespace_definition", "linkage_specification"):
            return _container(node, _body_members(node))
        # preprocessor blocks: everything but the condition is a member
        skip = {id(node.child_by_field_name(f)) for f in ("name", "condition")}
        members = [c for c in node.named_children if id(c) not in skip]
        return Definition("namespace", "", node, members, container=True)
    return None


# --- C# ------------------------------------------------------------------------------------------

_CSHARP_TYPES = {
    "class_declaration": "class",
    "struct_declaration": "struct",
    "interface_declaration": "interface",
    "enum_declaration": "enum",
    "record_declaration": "class",
    "record_struct_declaration": "struct",
}


def _csharp(node: Node) -> Definition | None:
    kind = node.type
    if kind in (
        "method_declaration",
        "constructor_declaration",
        "destructor_declaration",
        "operator_declaration",
        "local_function_statement",
    ):
        return _fn(_name(node), node, "method") if _has_body(node) else None
    if kind in _CSHARP_TYPES:
        return _cls(_CSHARP_TYPES[kind], _name(node), node, _body_members(node))
    if kind == "namespace_declaration":
        return _container(node, _body_members(node))
    if kind == "file_scoped_namespace_declaration":
        # `namespace X;` holds the rest of the file as its children
        members = [c for c in node.named_children if c != node.child_by_field_name("name")]
        return Definition("namespace", _name(node), node, members, container=True)
    return None


# --- Ruby ----------------------------------------------------------------------------------------


def _ruby(node: Node) -> Definition | None:
    kind = node.type
    if kind == "method":
        return _fn(_name(node), node)
    if kind == "singleton_method":
        obj = _name(node, "object")
        name = _name(node)
        return _fn(name if obj == "self" else f"{obj}.{name}", node)
    if kind in ("class", "module", "singleton_class"):
        # comments between the header and the first statement sit beside the body node
        skip = {node.child_by_field_name(f) for f in ("name", "superclass", "value")}
        members: list[Node] = []
        for child in node.named_children:
            if child.type == "body_statement":
                members.extend(child.named_children)
            elif child not in skip:
                members.append(child)
        name = _name(node).replace("::", ".") if kind != "singleton_class" else "self"
        if kind == "module":  # mostly a namespace: a bare `module X` line is not worth a chunk
            return _cls("module", name, node, members, emit_header=False)
        return _cls("class", name, node, members)
    return None


# --- PHP -----------------------------------------------------------------------------------------

_PHP_TYPES = {
    "class_declaration": "class",
    "interface_declaration": "interface",
    "trait_declaration": "trait",
    "enum_declaration": "enum",
}


def _php(node: Node) -> Definition | None:
    kind = node.type
    if kind == "function_definition":
        return _fn(_name(node), node)
    if kind == "method_declaration":
        return _fn(_name(node), node, "method") if _has_body(node) else None
    if kind in _PHP_TYPES:
        return _cls(_PHP_TYPES[kind], _name(node), node, _body_members(node))
    if kind == "namespace_definition" and node.child_by_field_name("body") is not None:
        return _container(node, _body_members(node))
    return None


# --- Kotlin --------------------------------------------------------------------------------------


def _kotlin_name(node: Node) -> str:
    named = node.child_by_field_name("name")
    if named is not None:
        return _text(named)
    ident = _first_child(node, "simple_identifier", "type_identifier", "identifier")
    return _text(ident)


def _kotlin(node: Node) -> Definition | None:
    kind = node.type
    if kind == "function_declaration":
        has_body = _first_child(node, "function_body") is not None
        return _fn(_kotlin_name(node), node) if has_body else None
    if kind == "secondary_constructor":
        return _fn("constructor", node)
    if kind in ("class_declaration", "object_declaration", "companion_object"):
        keywords = {c.type for c in node.children if not c.is_named}
        if kind == "class_declaration":
            type_kind = "interface" if "interface" in keywords else "class"
            if (
                _first_child(node, "modifiers") is not None
                and "enum" in _text(_first_child(node, "modifiers")).split()
            ):
                type_kind = "enum"
        else:
            type_kind = "object"
        name = _kotlin_name(node) or ("Companion" if kind == "companion_object" else "")
        body = _first_child(node, "class_body", "enum_class_body")
        members = list(body.named_children) if body is not None else []
        return _cls(type_kind, name, node, members)
    return None


# --- Swift ---------------------------------------------------------------------------------------


def _swift(node: Node) -> Definition | None:
    kind = node.type
    if kind == "function_declaration":
        return _fn(_name(node), node)
    if kind in ("init_declaration", "deinit_declaration"):
        return _fn("init" if kind == "init_declaration" else "deinit", node, "method")
    if kind in ("class_declaration", "protocol_declaration"):
        decl_kind = _text(node.child_by_field_name("declaration_kind")) or (
            "protocol" if kind == "protocol_declaration" else "class"
        )
        name = _strip_generics(_name(node))
        body = node.child_by_field_name("body")
        members = list(body.named_children) if body is not None else []
        # `extension X {` alone says nothing; its methods are named X.method anyway
        return _cls(decl_kind, name, node, members, emit_header=decl_kind != "extension")
    return None


# --- Bash ----------------------------------------------------------------------------------------


def _bash(node: Node) -> Definition | None:
    if node.type == "function_definition":
        return _fn(_name(node), node)
    return None


# --- the table -----------------------------------------------------------------------------------

_C_COMMENTS = frozenset({"comment"})
_JS_ATTACH = frozenset({"comment", "decorator"})

LANGUAGES: dict[str, Language] = {
    lang.name: lang
    for lang in [
        Language("python", "python", _python, frozenset({"comment"})),
        Language("javascript", "javascript", _javascript, _JS_ATTACH),
        Language("typescript", "typescript", _javascript, _JS_ATTACH),
        Language("tsx", "tsx", _javascript, _JS_ATTACH),
        Language("go", "go", _go, _C_COMMENTS),
        Language(
            "rust",
            "rust",
            _rust,
            frozenset({"line_comment", "block_comment", "attribute_item"}),
        ),
        Language("java", "java", _java, frozenset({"line_comment", "block_comment"})),
        Language("c", "c", _c, _C_COMMENTS),
        Language("cpp", "cpp", _c, _C_COMMENTS),
        Language("csharp", "csharp", _csharp, _C_COMMENTS),
        Language("ruby", "ruby", _ruby, _C_COMMENTS),
        Language("php", "php", _php, _C_COMMENTS),
        Language("kotlin", "kotlin", _kotlin, frozenset({"line_comment", "multiline_comment"})),
        Language("swift", "swift", _swift, frozenset({"comment", "multiline_comment"})),
        Language("bash", "bash", _bash, _C_COMMENTS),
        # text-like: chunked by headings or line windows
        Language("markdown"),
        Language("json"),
        Language("yaml"),
        Language("toml"),
        Language("ini"),
        Language("xml"),
        Language("html"),
        Language("css"),
        Language("sql"),
        Language("dockerfile"),
        Language("makefile"),
        Language("cmake"),
        Language("protobuf"),
        Language("graphql"),
        Language("restructuredtext"),
        Language("asciidoc"),
    ]
}

EXTENSIONS: dict[str, str] = {
    ".py": "python",
    ".pyi": "python",
    ".pyw": "python",
    ".js": "javascript",
    ".mjs": "javascript",
    ".cjs": "javascript",
    ".jsx": "javascript",
    ".ts": "typescript",
    ".mts": "typescript",
    ".cts": "typescript",
    ".tsx": "tsx",
    ".go": "go",
    ".rs": "rust",
    ".java": "java",
    ".c": "c",
    ".h": "c",
    ".cc": "cpp",
    ".cpp": "cpp",
    ".cxx": "cpp",
    ".c++": "cpp",
    ".hh": "cpp",
    ".hpp": "cpp",
    ".hxx": "cpp",
    ".h++": "cpp",
    ".ipp": "cpp",
    ".cs": "csharp",
    ".rb": "ruby",
    ".rake": "ruby",
    ".gemspec": "ruby",
    ".php": "php",
    ".phtml": "php",
    ".kt": "kotlin",
    ".kts": "kotlin",
    ".swift": "swift",
    ".sh": "bash",
    ".bash": "bash",
    ".zsh": "bash",
    ".md": "markdown",
    ".markdown": "markdown",
    ".mdx": "markdown",
    ".json": "json",
    ".jsonc": "json",
    ".yaml": "yaml",
    ".yml": "yaml",
    ".toml": "toml",
    ".ini": "ini",
    ".cfg": "ini",
    ".conf": "ini",
    ".xml": "xml",
    ".html": "html",
    ".htm": "html",
    ".css": "css",
    ".scss": "css",
    ".sql": "sql",
    ".proto": "protobuf",
    ".graphql": "graphql",
    ".gql": "graphql",
    ".rst": "restructuredtext",
    ".adoc": "asciidoc",
    ".asciidoc": "asciidoc",
    ".cmake": "cmake",
}

FILENAMES: dict[str, str] = {
    "Dockerfile": "dockerfile",
    "Containerfile": "dockerfile",
    "Makefile": "makefile",
    "GNUmakefile": "makefile",
    "makefile": "makefile",
    "CMakeLists.txt": "cmake",
    "Rakefile": "ruby",
    "Gemfile": "ruby",
    "Vagrantfile": "ruby",
    ".bashrc": "bash",
    ".bash_profile": "bash",
    ".profile": "bash",
    ".zshrc": "bash",
}

_SHEBANGS = {
    "python": "python",
    "python3": "python",
    "python2": "python",
    "bash": "bash",
    "sh": "bash",
    "zsh": "bash",
    "dash": "bash",
    "ksh": "bash",
    "node": "javascript",
    "ruby": "ruby",
    "php": "php",
}


def language_for_path(rel: str, first_line: str = "") -> str | None:
    """The language name of a file from its name (and its ``#!`` line when the name says nothing);
    None for plain text."""
    path = PurePosixPath(rel)
    if path.name in FILENAMES:
        return FILENAMES[path.name]
    if path.name.startswith("Dockerfile."):
        return "dockerfile"
    lang = EXTENSIONS.get(path.suffix.lower()) if path.suffix else None
    if lang is None and path.suffix == ".C":
        lang = "cpp"
    if lang is not None:
        return lang
    if first_line.startswith("#!"):
        return language_for_shebang(first_line)
    return None


def language_for_shebang(line: str) -> str | None:
    """`#!/usr/bin/env python3` -> "python"; None when the interpreter is not one we parse."""
    parts = line[2:].strip().split()
    if not parts:
        return None
    prog = parts[0].rsplit("/", 1)[-1]
    if prog == "env":
        args = [p for p in parts[1:] if not p.startswith("-")]
        prog = args[0] if args else ""
    prog = re.sub(r"[\d.]+$", "", prog) or prog
    return _SHEBANGS.get(prog) or _SHEBANGS.get(prog.rstrip("0123456789."))


def get_language(name: str | None) -> Language | None:
    """The Language called ``name``, or None for unknown names and plain text."""
    return LANGUAGES.get(name) if name else None


@cache
def get_parser(name: str) -> Parser:
    """A tree-sitter parser for a language with a grammar (bundled; never downloads)."""
    from tree_sitter_language_pack import get_parser as _get_parser

    lang = LANGUAGES[name]
    assert lang.grammar is not None, f"{name} has no grammar"
    return _get_parser(lang.grammar)  # type: ignore[arg-type]


def supported_languages() -> list[str]:
    """Names of the languages chunked with a grammar (the rest fall back to lines or headings)."""
    return [name for name, lang in LANGUAGES.items() if lang.grammar]
