"""A bound on what one YAML document may expand to, checked before anything is built from it.

YAML aliases (`*name`) share one node, so a 1 kB file whose anchors refer to each other in a
few levels ("billion laughs") composes in microseconds; it is OmegaConf, building a config tree
from it, that copies every shared node: minutes of CPU and gigabytes of memory, during which
the process prints nothing. Every config Hydra reads (conf/, hydra.searchpath folders, a model's
engine_kwargs included) goes through OmegaConf's YAML loader, so the bound sits there: the
document's nodes are counted with aliases expanded (a memo per node keeps the count linear in
the file) and a document over MAX_NODES is refused with one line naming the file.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

from cogdistill.config.schema import ConfigError

# The largest file in conf/ holds 45 values (conf/config.yaml); a config 2,000 times that size is no config.
MAX_NODES = 100_000


def expanded_size(root: Any, limit: int = MAX_NODES) -> int:
    """The number of nodes of a composed YAML node graph once its aliases are expanded, counted
    no higher than limit + 1. Raises ValueError on an alias that refers to its own ancestor (a
    recursive structure, which OmegaConf would follow forever)."""
    size: Dict[int, int] = {}
    open_: set = set()
    stack = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        kids = _children(node)
        if done:
            open_.discard(key)
            size[key] = min(limit + 1, 1 + sum(size[id(k)] for k in kids))
            continue
        if key in size:
            continue
        if key in open_:  # unfinished and met again: it is one of its own ancestors
            raise ValueError(f"line {node.start_mark.line + 1}: an alias refers to a node that contains it")
        open_.add(key)
        stack.append((node, True))
        stack.extend((k, False) for k in kids if id(k) not in size)
    return size[id(root)]


def _children(node: Any) -> list:
    value = node.value
    if isinstance(value, list):  # a sequence's items, or a mapping's (key, value) pairs
        return [n for item in value for n in (item if isinstance(item, tuple) else (item,))]
    return []


def check_node(node: Any, name: str, limit: int = MAX_NODES) -> None:
    """ConfigError naming the file when a composed document expands past `limit` nodes."""
    try:
        n = expanded_size(node, limit)
    except ValueError as exc:
        raise ConfigError(f"{name}: {exc} (a recursive YAML alias), which no config can hold; replace the "
                          "alias (*name) with the values it stands for.") from None
    if n > limit:
        raise ConfigError(f"{name}: this YAML expands to more than {limit:,} values once its aliases (*name) are "
                          "copied out (anchors referring to anchors, a 'billion laughs' file); building it would "
                          "take minutes and gigabytes. Remove the nested aliases and write the few values you "
                          "need out in full.")


def check_text(text: str, name: str, limit: int = MAX_NODES) -> None:
    """For a reader that loads YAML itself (not through OmegaConf): compose, then bound."""
    import yaml

    check_node(yaml.compose(text, Loader=yaml.SafeLoader), name, limit)


def _bounded(base: type) -> type:
    def get_single_node(self) -> Optional[Any]:
        try:
            node = base.get_single_node(self)
        except RecursionError:  # the composer recurses once per nesting level
            raise ConfigError(f"{self.name}: YAML nested too deeply (thousands of levels of [ or {{); no config "
                              "nests like that: fix the file.") from None
        if node is not None:
            check_node(node, self.name)
        return node

    return type("BoundedOmegaConfLoader", (base,), {"get_single_node": get_single_node})


def install() -> None:
    """Make OmegaConf's YAML loader (OmegaConf.load, OmegaConf.create on a string, what Hydra reads
    every config file with) refuse a document over MAX_NODES. Idempotent."""
    import omegaconf._utils as utils
    import omegaconf.basecontainer as basecontainer

    if getattr(utils.get_yaml_loader, "bounded", False):
        return
    original = utils.get_yaml_loader

    def get_yaml_loader() -> Any:
        return _bounded(original())

    get_yaml_loader.bounded = True  # type: ignore[attr-defined]
    utils.get_yaml_loader = get_yaml_loader  # OmegaConf.load and create import it from here on each call
    basecontainer.get_yaml_loader = get_yaml_loader  # merge_with_dotlist imported it at module load
