"""Finding an experiment class: the built-in catalog, or a lab plug-in from an allow-listed
package. The allow-list is checked on the module *name* before anything is imported: a module
outside it is never imported."""

from __future__ import annotations

import importlib
import inspect

from qsched_executor.errors import InvalidRequest, ModuleNotAllowed
from qsched_hardware.experiments import BUILTIN_PACKAGE, CATALOG, Experiment


def in_package(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def resolve_experiment(module: str, class_name: str, allowed: tuple[str, ...]) -> type[Experiment]:
    module = (module or "").strip()
    if not class_name:
        raise InvalidRequest("EXPERIMENT_CLASS_MISSING", "experiment_class is required")
    if not module or in_package(module, BUILTIN_PACKAGE):
        cls = CATALOG.get(class_name)
        if cls is None:
            known = ", ".join(sorted(CATALOG))
            raise InvalidRequest(
                "EXPERIMENT_NOT_FOUND",
                f"no built-in experiment {class_name!r} (built-ins: {known})",
                experiment_class=class_name,
            )
        return cls
    if not all(part.isidentifier() for part in module.split(".")):
        raise InvalidRequest(
            "EXPERIMENT_MODULE_INVALID", f"{module!r} is not a module name", experiment_module=module
        )
    if not any(in_package(module, package) for package in allowed):
        listed = ", ".join(allowed) or "none"
        raise ModuleNotAllowed(
            "MODULE_NOT_ALLOWED",
            f"module {module!r} is not in an allow-listed experiment package (allowed: {listed}; "
            f"built-in experiments live in {BUILTIN_PACKAGE})",
            experiment_module=module,
        )
    try:
        mod = importlib.import_module(module)
    except Exception as exc:
        raise InvalidRequest(
            "EXPERIMENT_IMPORT_FAILED",
            f"importing {module}: {type(exc).__name__}: {exc}",
            experiment_module=module,
        ) from exc
    cls = getattr(mod, class_name, None)
    if not (inspect.isclass(cls) and issubclass(cls, Experiment)):
        raise InvalidRequest(
            "EXPERIMENT_NOT_FOUND",
            f"{module} has no experiment class {class_name!r} "
            "(a subclass of qsched_hardware.experiments.Experiment)",
            experiment_class=class_name,
        )
    return cls
