"""The package's shape, as its docstrings state it: only dataflow.airflow and dataflow.web
import Airflow (at module level or inside a function), nothing imports devstack, no two
modules of dataflow import each other round a cycle, and each layer keeps to its medium
(sources: HTTP; load: PostgreSQL; definitions: no I/O at all)."""

import ast
import pathlib

import pytest

from tests.support.checkout import ROOT

PACKAGE = ROOT / 'dataflow'
MODULES = {
    '.'.join(path.relative_to(ROOT).with_suffix('').parts).removesuffix('.__init__'): path
    for path in PACKAGE.rglob('*.py')
}


def imports_of(path: pathlib.Path) -> set[str]:
    """Every module name an import statement of `path` names, wherever the statement is."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            # `from dataflow.load import ddl` imports the module dataflow.load.ddl.
            found.update(f'{node.module}.{alias.name}' for alias in node.names
                         if f'{node.module}.{alias.name}' in MODULES)
    return found


IMPORTS = {name: imports_of(path) for name, path in MODULES.items()}


def importing(prefixes: tuple[str, ...]) -> set[str]:
    return {name for name, imported in IMPORTS.items()
            if any(i == p or i.startswith(p + '.') for i in imported for p in prefixes)}


def test_only_the_airflow_and_web_packages_import_airflow():
    assert sorted(importing(('airflow',))) == sorted(
        name for name in importing(('airflow',)) if name.startswith(('dataflow.airflow', 'dataflow.web')))
    assert 'dataflow.airflow.tasks' in importing(('airflow',))  # the check sees what it must


def test_the_grep_of_issue_12_lists_only_those_packages():
    matched = [path for path in MODULES.values()
               if any(line.startswith(('from airflow', 'import airflow')) for line in path.read_text().splitlines())]
    assert matched and all(p.relative_to(PACKAGE).parts[0] in ('airflow', 'web') for p in matched), matched


def test_nothing_in_dataflow_imports_devstack_or_the_tests():
    assert importing(('devstack', 'tests')) == set()


@pytest.mark.parametrize('layer, forbidden', [
    ('dataflow.definitions', ('psycopg2', 'requests', 'airflow', 'dataflow.load', 'dataflow.runs', 'dataflow.sources')),
    ('dataflow.sources', ('psycopg2', 'airflow', 'dataflow.load', 'dataflow.runs')),
    ('dataflow.load', ('requests', 'airflow', 'dataflow.sources', 'dataflow.runs')),
    ('dataflow.runs', ('airflow', 'requests')),
])
def test_each_layer_keeps_to_its_medium(layer, forbidden):
    in_layer = {name for name in MODULES if name == layer or name.startswith(layer + '.')}
    assert in_layer and in_layer & importing(forbidden) == set()


def test_no_import_cycle_among_dataflow_modules():
    graph = {name: {i for i in imported if i in MODULES} for name, imported in IMPORTS.items()}
    cycles, state = [], {}

    def visit(name, path):
        state[name] = 'open'
        for imported in sorted(graph[name]):
            if state.get(imported) == 'open':
                cycles.append(path[path.index(imported):] + [imported])
            elif imported not in state:
                visit(imported, path + [imported])
        state[name] = 'done'

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert cycles == []


def test_no_test_module_imports_another():
    """What tests share lives in tests/support; conftest files give fixtures, not imports."""
    borrowed = {}
    for path in (ROOT / 'tests').rglob('*.py'):
        names = {i for i in imports_of(path) if i == 'tests' or i.startswith('tests.')}
        outside = {i for i in names if not i.startswith('tests.support')}
        if outside:
            borrowed[str(path.relative_to(ROOT))] = sorted(outside)
    assert borrowed == {}
