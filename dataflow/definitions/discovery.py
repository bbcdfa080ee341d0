"""Finding pipeline classes: any class defined in a module of the pipelines package
(`dataflow.pipelines`, where a team's own modules go too) whose name contains
`DatasetPipeline` or `ViewPipeline`. Each class is checked on its own: a broken class or
a module that does not import is reported by name and leaves every other pipeline working."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

from dataflow.definitions.datasets import DatasetPipelineSpec, dataset_pipeline_spec
from dataflow.definitions.views import ViewPipelineSpec, view_pipeline_spec
from dataflow.errors import DefinitionError

DATASET_PIPELINE_MARKER = 'DatasetPipeline'
VIEW_PIPELINE_MARKER = 'ViewPipeline'
PIPELINES_PACKAGE = 'dataflow.pipelines'

Spec = TypeVar('Spec')


@dataclass
class Discovery(Generic[Spec]):
    """What `discover` found: valid specs by class name, and what failed, by name (a
    DefinitionError, or the exception a module raised on import)."""

    specs: dict[str, Spec]
    errors: dict[str, Exception]


def pipeline_classes(marker: str, package: str = PIPELINES_PACKAGE) -> Iterator[tuple[str, type | Exception]]:
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


def _discover(marker: str, spec_of: Callable[[type], Spec], package: str) -> Discovery[Spec]:
    specs: dict[str, Spec] = {}
    errors: dict[str, Exception] = {}
    for name, found in pipeline_classes(marker, package):
        if isinstance(found, Exception):
            errors[name] = found
            continue
        try:
            specs[name] = spec_of(found)
        except DefinitionError as exc:
            errors[name] = exc
    return Discovery(specs, errors)


def discover(package: str = PIPELINES_PACKAGE) -> Discovery[DatasetPipelineSpec]:
    """Every dataset pipeline class in `package`."""
    return _discover(DATASET_PIPELINE_MARKER, dataset_pipeline_spec, package)


def discover_views(package: str = PIPELINES_PACKAGE) -> Discovery[ViewPipelineSpec]:
    """Every view pipeline class in `package`."""
    return _discover(VIEW_PIPELINE_MARKER, view_pipeline_spec, package)
