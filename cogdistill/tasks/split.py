"""The train / held-out split of a task's items, for students trained inside cogdistill.

An item is a training item when sha256(item_id) mod split_k == 0 (about one item in split_k);
every other item is held out. The rule depends on the id alone, so it is the same on every
machine, in every run and whatever `max_items` says. Training (cogdistill.train) reads only
training items; an evaluation with `task.<name>.items_split=heldout` sees only the others.
"""

from __future__ import annotations

import hashlib

import polars as pl

from cogdistill.tasks.item_table import TaskDataError

SPLITS = ("train", "heldout")


def is_train_item(item_id: str, k: int) -> bool:
    return int(hashlib.sha256(str(item_id).encode()).hexdigest(), 16) % k == 0


def apply_split(items: pl.DataFrame, task: str, split: str | None, k: int) -> pl.DataFrame:
    """The rows of `split` (None: all of them)."""
    if split is None:
        return items
    if split not in SPLITS or k < 2:
        raise TaskDataError(f"task '{task}': items_split={split}, split_k={k}: use items_split=train|heldout|null "
                            "and split_k >= 2 (one item in split_k is a training item).")
    train = items["item_id"].map_elements(lambda i: is_train_item(i, k), return_dtype=pl.Boolean)
    kept = items.filter(train if split == "train" else ~train)
    if kept.height == 0:
        raise TaskDataError(f"task '{task}': no {split} items among its {items.height} (split_k={k}); "
                            "lower task.<name>.split_k or use more items.")
    return kept
