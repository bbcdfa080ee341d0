"""Finding pipeline classes: any class defined in a module of the pipelines packages
(PIPELINE_PACKAGES: `dataflow.pipelines`, where a team's own modules may go, and any other
package on the path) whose name contains `DatasetPipeline` or `ViewPipeline`. Each class is
checked on its own: a broken class or a module that does not import is reported by name and
leaves every other pipeline working. Class names are DAG ids: one found twice is an error."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

from dataflow import settings
from dataflow.definitions.datasets import DatasetPipelineSpec, dataset_pipeline_spec
from dataflow.definitions.views import ViewPipelineSpec, view_pipeline_spec
from dataflow.errors import DefinitionError

DATASET_PIPELINE_MARKER = 'DatasetPipeline'
VIEW_PIPELINE_MARKER = 'ViewPipeline'

Spec = TypeVar('Spec')


@dataclass
class Discovery(Generic[Spec]):
    """What `discover` found: valid specs by class name, and what failed, by name (a
    DefinitionError, or the exception a module raised on import)."""

    specs: dict[str, Spec]
    errors: dict[str, Exception]


def pipeline_classes(marker: str, package: str) -> Iterator[tuple[str, type | Exception]]:
    """Yield (name, class or import exception) for every class defined in `package`'s
    modules whose name contains `marker`. A module that fails to import is yielded
    once, as (module name, exception)."""
    root = importlib.import_module(package)
    for module_info in sorted(pkgutil.iter_modules(root.__path__), key=lambda m: m.name):
        module_name = f'{package}.{module_info.name}'
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:  # noqa: BLE001 - one broken module must not hide the rest
            yield module_name, exc
            continue
        for name, cls in inspect.getmembers(module, inspect.isclass):
            if marker in name and cls.__module__ == module.__name__:
                yield name, cls


def packages(package: str | None = None) -> tuple[str, ...]:
    """The packages to look in: `package` if given, else PIPELINE_PACKAGES."""
    return (package,) if package else settings.current().pipeline_packages


def _discover(marker: str, spec_of: Callable[[type], Spec], package: str | None) -> Discovery[Spec]:
    specs: dict[str, Spec] = {}
    errors: dict[str, Exception] = {}
    where: dict[str, str] = {}
    for searched in packages(package):
        for name, found in pipeline_classes(marker, searched):
            if isinstance(found, Exception):
                errors[name] = found
                continue
            if name in where:
                errors[name] = DefinitionError(name, [('__name__', f'is defined in {where[name]} and in '
                                                                   f'{found.__module__}: DAG ids must be unique')])
                specs.pop(name, None)
                continue
            where[name] = found.__module__
            try:
                specs[name] = spec_of(found)
            except DefinitionError as exc:
                errors[name] = exc
    return Discovery(specs, errors)


def discover(package: str | None = None) -> Discovery[DatasetPipelineSpec]:
    """Every dataset pipeline class in `package`, or in PIPELINE_PACKAGES."""
    return _discover(DATASET_PIPELINE_MARKER, dataset_pipeline_spec, package)


def discover_views(package: str | None = None) -> Discovery[ViewPipelineSpec]:
    """Every view pipeline class in `package`, or in PIPELINE_PACKAGES."""
    return _discover(VIEW_PIPELINE_MARKER, view_pipeline_spec, package)
