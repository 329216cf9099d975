"""A run's identity, and the state of its --out folder: new, resumable, complete or someone else's.

The identity (config, every source file's sha256, the depth network and its scales) is
written to ``.work/state.json`` when a run begins and kept in ``dataset.json`` when it ends;
a rerun with the same identity resumes or confirms, another one is refused. Everything
here that changes the folder is called under the store's write lock.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
from pathlib import Path

from fgbg.config import RUN_SETTINGS, GenerateConfig
from fgbg.errors import CorruptStore, UserError
from fgbg.store.layout import (
    ASSETS_DIR,
    DATASET_JSON,
    DERIVED,
    MANIFEST,
    MEMBERS,
    SHARDS_DIR,
    TMP_SUFFIX,
    WORK_DIR,
    atomic_write_json,
    commit,
    remove,
    temporary,
)
from fgbg.store.lock import LOCK_FILE
from fgbg.store.owned import FGBG_VERSION, check_files_ours, check_ours, has_mark, is_card, is_fgbg_json, theirs_among

STATE_JSON = "state.json"  # in .work/: the identity of the run in progress
IDENTITY = ("config", "sources", "depth_model", "depth_scales", "objects_version")
# The layout of several-object samples (absent: 1). 2: each object records its `order` from the front.
# A store of another version is another run (its resume would mix layouts); one-object samples never change.
OBJECTS_VERSION = 2
PRIOR_ORIGIN = "ground-plane prior"  # the bg depth origin with nothing standing up in it: no occlusion
REAL_DEPTH_FIELDS = ("min_visible", "stand_on")  # config fields that change only bgs with real depth
KIND_DIRS = sorted({kind for kind, _ in MEMBERS.values()})  # folder/zip formats: KIND/bNNN...
# What --overwrite deletes, in this order: the data first, the identity (.work, dataset.json)
# last, so that a run killed while deleting is still recognised as ours by its rerun.
OWNED = [SHARDS_DIR, *KIND_DIRS, ASSETS_DIR, MANIFEST, *DERIVED, WORK_DIR, DATASET_JSON]
# LOCK_FILE is ours too but never deleted: another writer may be waiting on it.


def same_run(recorded: dict, state: dict) -> bool:
    if "depth" in recorded and "fgbg_version" in recorded:  # dataset.json keeps the network under "depth"
        recorded = {**recorded, **{k: recorded["depth"].get(k) for k in ("depth_model", "depth_scales")}}
    return all(identity_value(recorded, k) == identity_value(state, k) for k in IDENTITY)


def identity_value(state: dict, key: str):
    """``state[key]``, the config without its run settings (batch size, device spec: how, not what)
    and with the defaults of fields added since the store was made (see :func:`with_new_defaults`)."""
    value = state.get(key)
    if key == "config" and isinstance(value, dict):
        return {k: v for k, v in with_new_defaults(value, state).items() if k not in RUN_SETTINGS}
    return value


def with_new_defaults(config: dict, state: dict) -> dict:
    """A recorded config with the fields fgbg has gained since filled in by their defaults, where
    the default makes the same bytes: ``min_visible`` (depth-aware paste) and ``stand_on`` (feet on
    surfaces facing up) only when every bg has the ground-plane prior, since neither changes anything
    there; a store with real bg depth made before them stays another config (its shards were pasted
    without occlusion, or with feet anywhere)."""
    defaults = json.loads(json.dumps({f.name: f.default for f in dataclasses.fields(GenerateConfig)}))  # as recorded: tuples are lists
    real_depth = any(s.get("depth") != PRIOR_ORIGIN for s in (state.get("sources") or {}).get("bg", []))
    missing = {k: v for k, v in defaults.items() if k not in config and not (k in REAL_DEPTH_FIELDS and real_depth)}
    return {**missing, **config}


# A root temporary of ours, as layout.temporary names them: a new .work/ being made, or an
# owned name being deleted. Only these (and the lock) let a folder still count as empty.
OUR_ROOT_TEMPORARY = re.compile(rf"({'|'.join(map(re.escape, OWNED))})(\.deleted)?\.\d+{re.escape(TMP_SUFFIX)}")


def is_scratch(name: str) -> bool:
    """A root entry that holds no data: the lock file, or a temporary a killed writer of ours left."""
    return name == LOCK_FILE or OUR_ROOT_TEMPORARY.fullmatch(name) is not None


def check_out_folder(out: Path) -> None:
    """Refuse, reading only, an ``--out`` that is a file or a folder of someone else's files.

    Raises:
        UserError: naming ``--out`` and what to do.
    """
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: is a file, not a folder; choose a new or empty folder for --out")
    if not out.is_dir() or identity_file(out) is not None:
        return
    foreign = sorted(name for name in os.listdir(out) if not is_scratch(name))
    if foreign:
        raise UserError(
            f"--out {out}: not empty and not an fgbg store ({', '.join(foreign[:3])}...);"
            " choose a new or empty folder for --out"
        )


def identity_file(out: Path) -> Path | None:
    """dataset.json of a complete store, else .work/state.json of one in progress, else None."""
    for path in (out / DATASET_JSON, out / WORK_DIR / STATE_JSON):
        if path.is_file():
            return path
    return None


def out_status(out: Path, state: dict, overwrite: bool) -> str:
    """What ``out`` is to this run, reading only: "new", "resume", "complete" or "replace".

    Raises:
        UserError: ``out`` is a file, holds foreign files, or another run (and not --overwrite).
        NotOurs: ``out`` holds a dataset.json fgbg did not write (overwrite or not: it is never deleted).
    """
    check_out_folder(out)
    path = identity_file(out) if out.is_dir() else None
    if path is None:
        return "new"
    try:
        recorded = json.loads(path.read_text())
    except ValueError as e:  # edited by hand: our own writes are atomic
        if overwrite and has_mark(out, [MANIFEST, WORK_DIR]):  # the rest of it is a store
            return replacing(out)
        raise CorruptStore(f"{path}: not readable JSON ({e}); use another --out, or --overwrite to replace it") from None
    check_ours(out, path.name == STATE_JSON or (isinstance(recorded, dict) and FGBG_VERSION in recorded),
               f"an fgbg store (its {DATASET_JSON} has no {FGBG_VERSION}: another tool's file)")
    if same_run(recorded, state):
        return "complete" if path.name == DATASET_JSON else "resume"
    if overwrite:
        return replacing(out)
    raise UserError(
        f"--out {out}: holds a store made with a different config or different source images{device_hint(recorded, state)}{version_hint(recorded, state)};"
        " use another --out, or --overwrite to replace it"
    )


def replacing(out: Path) -> str:
    """"replace", once the files at the store's root that --overwrite deletes by name are known
    to be fgbg's: a README.md must be a card, a stats.json fgbg's (else NotOurs, nothing deleted)."""
    theirs = theirs_among([out / "README.md"], is_card) + theirs_among([out / "stats.json"], is_fgbg_json)
    check_files_ours(theirs, "fgbg", "--overwrite")
    return "replace"


def device_hint(recorded: dict, state: dict) -> str:
    """" (its depth network ran on cuda (NAME) ...)" when where the network ran differs, else "".

    Either engine: on Ray, ``compute`` is where the depth actors run (see
    :func:`fgbg.engine.ray_engine.actor_labeller`), so a resume there on another kind of
    device is refused like a local one.
    """
    was = (recorded.get("depth", recorded).get("depth_model") or {}).get("compute")
    now = (state.get("depth_model") or {}).get("compute")
    if was is None or now is None or was == now:
        return ""
    return (
        f" (its depth network ran on {where_computed(was)}, {was['precision']}: resume it there, with the same --device,"
        f" or with --engine ray on depth actors of that kind (--gpus-per-worker); this run's would run on {where_computed(now)})"
    )


def version_hint(recorded: dict, state: dict) -> str:
    """" (its several-object samples are of an older layout ...)" when only that differs, else ""."""
    was, now = recorded.get("objects_version"), state.get("objects_version")
    if was == now or now is None or not GenerateConfig.from_dict(recorded.get("config", {})).several:
        return ""
    return f" (its several-object samples are of layout {was or 1}, made by an older fgbg; this one writes layout {now}, with each object's order)"


def where_computed(compute: dict) -> str:
    """"cuda (NVIDIA H100 ...)" or "cpu"."""
    return f"{compute['device']} ({compute['name']})" if "name" in compute else compute["device"]


def prepare_out(out: Path, state: dict, overwrite: bool) -> str:
    """Under the lock: check ``out`` again, delete a replaced store and stale temporaries.

    Returns "new", "resume" or "complete"; a complete store killed before its ``.work/`` was
    removed is tidied and counts as complete.
    """
    status = out_status(out, state, overwrite)
    if status == "replace":
        for name in OWNED:
            remove(out / name)
        status = "new"
    if status == "complete" and not (out / WORK_DIR).exists():
        return status  # nothing was left behind: don't walk the store
    remove_temporaries(out)
    if status == "complete":
        remove(out / WORK_DIR)  # killed between writing dataset.json and removing .work/
    return status


def stale_temporaries(out: Path) -> list[Path]:
    """Files and folders named *.tmp that killed writers left anywhere in the store.

    A folder-format sample folder (KIND/bNNN) is renamed in whole, so none is looked into:
    the walk stays cheap on a store of a million loose files.
    """
    out = Path(out)
    found, stack = [], [out]
    while stack:
        folder = stack.pop()
        sample_folders = folder.parent == out and folder.name in KIND_DIRS
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.name.endswith(TMP_SUFFIX):
                    found.append(Path(entry.path))
                elif entry.is_dir(follow_symlinks=False) and not sample_folders:
                    stack.append(Path(entry.path))
    return sorted(found)


def remove_temporaries(out: Path) -> None:
    """Leftovers of killed writers; call only while holding the store's lock."""
    for path in stale_temporaries(out):
        shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()


def begin_work(out: Path, state: dict) -> None:
    """Create ``.work/`` holding the run's identity, in one rename: it exists only complete."""
    work = out / WORK_DIR
    if (work / STATE_JSON).is_file():
        if json.loads((work / STATE_JSON).read_text()) != state:  # the same run, other run settings
            atomic_write_json(work / STATE_JSON, state)
        return
    scratch = temporary(work)
    scratch.mkdir()
    atomic_write_json(scratch / STATE_JSON, state)
    commit(scratch, work)
