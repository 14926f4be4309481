"""The hardware config: what the executor believes about the device (frequencies, pulses,
channels). A YAML file (`--hardware-config`, default configs/hardware_config.yml) or a pinned
revision from the config service; experiments read it, calibrations produce updates for it."""

from __future__ import annotations

import copy
import functools
import hashlib
from pathlib import Path
from typing import Any

import yaml

DEFAULT_HARDWARE_CONFIG = Path(__file__).parent / "configs" / "hardware_config.yml"

DEFAULTS: dict[str, Any] = {
    "schema": 1,
    "channels": {"qubit": {"gen": 2, "nqz": 1}, "readout": {"gen": 0, "nqz": 2, "ro": 0}},
    "qubit": {"f_ge_mhz": 4500.0, "pi_pulse": {"gain": 0.5, "sigma_us": 0.025, "length_us": 0.1}},
    "readout": {
        "frequency_mhz": 7100.0,
        "gain": 0.3,
        "length_us": 1.5,
        "window_us": 1.0,
        "trig_offset_us": 0.3,
        "relax_delay_us": 200.0,
        "threshold": 0.0,
        "angle_rad": 0.0,
    },
}


class HardwareConfigError(ValueError):
    """The hardware config cannot be used."""


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def parse_hardware_config(content: bytes | str, source: str = "<memory>") -> dict[str, Any]:
    """YAML (or JSON, a YAML subset) text -> config dict with defaults filled in."""
    try:
        data = yaml.safe_load(content) or {}
    except yaml.YAMLError as exc:
        raise HardwareConfigError(f"hardware config {source} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise HardwareConfigError(f"hardware config {source} must be a mapping")
    if int(data.get("schema", 1)) != 1:
        raise HardwareConfigError(f"hardware config {source}: unsupported schema {data.get('schema')!r}")
    return _merge(DEFAULTS, data)


@functools.lru_cache(maxsize=32)
def _parsed(content: bytes, source: str) -> dict[str, Any]:
    return parse_hardware_config(content, source)


def parsed_hardware_config(content: bytes, source: str = "<memory>") -> dict[str, Any]:
    """parse_hardware_config, cached by content: the executor meets the same few configs on every
    validation and run, and parsing YAML was a quarter of a validation's CPU. Each caller gets
    its own copy (experiments may adjust theirs)."""
    return copy.deepcopy(_parsed(bytes(content), source))


def load_hardware_config(path: str | Path | None = None) -> tuple[dict[str, Any], bytes]:
    path = Path(path) if path else DEFAULT_HARDWARE_CONFIG
    content = path.read_bytes()
    return parsed_hardware_config(content, str(path)), content


def sha256_hex(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def get_path(cfg: dict, dotted: str) -> Any:
    node: Any = cfg
    for part in dotted.split("."):
        node = node[part]
    return node


def set_path(cfg: dict, dotted: str, value: Any) -> dict:
    """A copy of cfg with the dotted key set (used to apply calibration updates)."""
    out = copy.deepcopy(cfg)
    node = out
    parts = dotted.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return out


def dump_hardware_config(cfg: dict) -> str:
    return yaml.safe_dump(cfg, sort_keys=False)
