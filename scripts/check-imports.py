#!/usr/bin/env python3
"""Checks that the modules of a Rust crate import each other in one direction only.

For every module (a file under src/), every path that starts with `crate::`, `super::` or
`self::` (in `use` trees, with their `{...}` groups, and in expressions and docs' code alike) is
resolved to the deepest existing module it names. Then, at every level of the module tree, the
children of one parent form a graph (A -> B when anything inside A names anything inside B); any
cycle in such a graph is an error. Doc comments and `//` comments are ignored, so intra-doc links
do not count as imports.

Optionally `--forbid A:B` (repeatable) names edges that must not exist at all, e.g. that nothing
imports `commands`, and nothing but `commands` imports `cli`:

    scripts/check-imports.py host/src --forbid '*:commands' --forbid '!commands:cli'
    scripts/check-imports.py sdk/src

Exit status 1 with the cycles printed (and one example reference per edge) if any is found.
"""

import argparse
import re
import sys
from pathlib import Path

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"


def module_path(src: Path, file: Path):
    rel = file.relative_to(src).with_suffix("")
    parts = list(rel.parts)
    if parts in (["lib"], ["main"]):
        return ()
    if parts[-1] == "mod":
        parts = parts[:-1]
    return tuple(parts)


def strip_comments(text: str) -> str:
    # Block comments, then line comments (incl. doc comments); strings are left alone, which is
    # good enough for paths: a `crate::x` inside a string literal is rare and still a dependency.
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return "\n".join(line.split("//", 1)[0] for line in text.splitlines())


def parse_tree(text: str, pos: int):
    """Parses a use-tree starting at pos; returns (list of segment tuples, end position)."""
    paths = []
    segments = []
    lead = re.compile(r"\s*\{").match(text, pos)
    if lead:
        # `crate::{a, b::c}`: a group straight after the prefix.
        text_pos = lead.end() - 1
        return parse_group(text, text_pos, ())
    while True:
        m = re.compile(r"\s*(" + IDENT + r")").match(text, pos)
        if not m:
            break
        segments.append(m.group(1))
        pos = m.end()
        m2 = re.compile(r"\s*::\s*").match(text, pos)
        if not m2:
            break
        pos = m2.end()
        if text.startswith("{", pos):
            sub, pos = parse_group(text, pos, tuple(segments))
            return paths + sub, pos
        if text.startswith("*", pos):
            pos += 1
            break
    paths.append(tuple(segments))
    return paths, pos


def parse_group(text: str, pos: int, prefix):
    """Parses `{tree, tree, ...}` at pos (which holds the `{`); paths get prefix in front."""
    paths = []
    pos += 1
    while True:
        sub, pos = parse_tree(text, pos)
        paths.extend(prefix + s for s in sub)
        m3 = re.compile(r"\s*,\s*").match(text, pos)
        if m3:
            pos = m3.end()
            close = re.compile(r"\s*\}").match(text, pos)
            if close:
                return paths, close.end()
            continue
        close = re.compile(r"\s*\}").match(text, pos)
        if close:
            pos = close.end()
        return paths, pos


def references(text: str, here):
    """Yields absolute module-path tuples named by `crate::`, `super::` and `self::` paths."""
    for m in re.finditer(r"(?<![A-Za-z0-9_$])(crate|super|self)\s*::", text):
        kind = m.group(1)
        paths, _ = parse_tree(text, m.end())
        base = ()
        if kind == "super":
            base = here[:-1]
            rest_start = m.end()
            # super::super::...
            while True:
                mm = re.compile(r"\s*super\s*::").match(text, rest_start)
                if not mm:
                    break
                base = base[:-1]
                rest_start = mm.end()
            paths, _ = parse_tree(text, rest_start)
        elif kind == "self":
            base = here
        for p in paths:
            p = tuple(s for s in p if s != "self")
            yield base + p


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("src", nargs="+", type=Path, help="a crate's src folder")
    parser.add_argument("--forbid", action="append", default=[], help="FROM:TO top-level modules; FROM may be * (any) or !M (any but M)")
    parser.add_argument("--verbose", "-v", action="store_true", help="print every level's graph")
    args = parser.parse_args()

    failed = False
    for src in args.src:
        files = sorted(src.rglob("*.rs"))
        modules = {module_path(src, f): f for f in files}
        edges = {}  # (from_module, to_module) -> example "file: path"
        for mod, file in modules.items():
            text = strip_comments(file.read_text())
            for ref in references(text, mod):
                # The deepest existing module named by the path.
                target = ()
                for i in range(len(ref), 0, -1):
                    if ref[:i] in modules:
                        target = ref[:i]
                        break
                if target == mod or not target:
                    continue
                edges.setdefault((mod, target), f"{file}: {'::'.join(ref)}")

        # One graph per parent: children of the same parent, lifted from the edges.
        levels = {}
        for (a, b), example in edges.items():
            common = 0
            while common < min(len(a), len(b)) and a[common] == b[common]:
                common += 1
            if common >= len(a) or common >= len(b):
                continue  # a module naming its own descendant or ancestor
            parent = a[:common]
            levels.setdefault(parent, {}).setdefault((a[common], b[common]), example)

        for parent, graph in sorted(levels.items()):
            name = "::".join(("crate",) + parent)
            if args.verbose:
                print(f"{src} {name}:")
                for (a, b) in sorted(graph):
                    print(f"  {a} -> {b}")
            for cycle in find_cycles(graph):
                failed = True
                members = sorted({n for e in graph for n in e if n in cycle_members(graph, cycle[0])})
                print(f"error: import cycle in {src} under {name}: {' -> '.join(cycle + [cycle[0]])}"
                      f" (strongly connected: {', '.join(members)})")
                for a, b in zip(cycle, cycle[1:] + [cycle[0]]):
                    print(f"    {a} -> {b}  e.g. {graph[(a, b)]}")

        for rule in args.forbid:
            source, _, dest = rule.partition(":")
            for (a, b), example in edges.items():
                if not a or not b or a[0] == b[0]:
                    continue
                allowed = source.startswith("!") and a[0] == source[1:]
                if (source in ("*", a[0]) or (source.startswith("!") and not allowed)) and dest == b[0]:
                    failed = True
                    print(f"error: {src}: `{a[0]}` must not import `{b[0]}`: {example}")

        if not failed:
            print(f"{src}: {len(modules)} modules, {len(edges)} module edges, no cycles")
    sys.exit(1 if failed else 0)


def cycle_members(graph, node):
    """Every module that both reaches and is reached from node."""
    def reach(start, forward):
        seen, todo = {start}, [start]
        while todo:
            v = todo.pop()
            for (a, b) in graph:
                x, y = (a, b) if forward else (b, a)
                if x == v and y not in seen:
                    seen.add(y)
                    todo.append(y)
        return seen
    return reach(node, True) & reach(node, False)


def find_cycles(graph):
    """Strongly connected components with more than one node, each as a list (Tarjan)."""
    nodes = sorted({n for e in graph for n in e})
    succ = {n: sorted(b for (a, b) in graph if a == n) for n in nodes}
    index, low, stack, on_stack, result = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in succ[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                result.append(order_cycle(component, succ))

    for n in nodes:
        if n not in index:
            visit(n)
    return result


def order_cycle(component, succ):
    """A simple cycle through the component's first node, for a readable message."""
    members = set(component)
    start = sorted(component)[0]
    path, seen = [start], {start}

    def walk(v):
        for w in succ[v]:
            if w == start and len(path) > 1:
                return True
            if w in members and w not in seen:
                seen.add(w)
                path.append(w)
                if walk(w):
                    return True
                path.pop()
        return False

    walk(start)
    return path


if __name__ == "__main__":
    main()
