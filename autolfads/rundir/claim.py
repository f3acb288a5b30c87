"""Claiming an output location for one ``autolfads train``/``run``: lease, resume check, staging, completion.

::

    with claim_out(out, "autolfads train", resume=False, force=False, fingerprint=fp) as claim:
        if claim.mode == "finished": ...            # --resume of a run that completed: nothing to do
        train into claim.target                     # OUT itself, or OUT/.staging-<id> with --force
        claim.complete(local_dir, names)            # DONE.json; with --force the old results replaced

What happens, in order, before the caller writes anything (and before it starts tracking):

1. OUT's lease (``autolfads.rundir.lease``): a second run into OUT is refused naming the holder.
2. The decision. OUT holds no run: a new one. Otherwise ``--resume`` compares this command line's
   fingerprint with the saved one (``autolfads.rundir.fingerprint``) and refuses any difference, listing
   it; a finished run (``DONE.json``) resumes to "nothing to do". ``--force`` runs into a staging location
   inside OUT and replaces the old results only when the new run completes. Neither: refused.
3. An input (``DATA``, ``--config``) at a name a new run would write in OUT is refused (checked first):
   results never replace or delete an input file.
4. The run goes ahead: temporaries a killed run left in OUT are removed, ``DONE.json`` goes, this
   attempt's ``fingerprint.json`` is written.

On an exception the staging location is removed (the old results stay as they were) and the lease is
released; a plain or resumed run keeps what it wrote (a later ``--resume`` continues it).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autolfads.errors import AutoLFADSError
from autolfads.rundir.done import done_record, read_done, read_json_object, remove_done, write_done
from autolfads.rundir.fingerprint import describe
from autolfads.rundir.layout import (
    DONE_NAME,
    FINGERPRINT_NAME,
    STAGING_PREFIX,
    OutState,
    clean_stale_temporaries,
    inspect_out,
    is_result_name,
    remove_results,
    top_level_names,
)
from autolfads.rundir.lease import Lease, acquire_lease
from autolfads.storage import atomic_write_bytes, filesystem, is_remote, join_uri

log = logging.getLogger("autolfads.rundir")

MODES = ("new", "resume", "force", "finished")


@dataclass
class Claim:
    """A claimed OUT: how this run goes (``mode``) and where it writes (``target``)."""

    out: str
    mode: str
    target: str
    lease: Lease
    fingerprint: dict[str, Any]
    previous: OutState
    done: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def staging(self) -> bool:
        return self.target != self.out

    @property
    def resume(self) -> bool:
        return self.mode == "resume"

    @property
    def local_target(self) -> Path:
        """The target as a local directory (local OUTs only)."""
        if is_remote(self.target):
            raise AutoLFADSError(f"{self.target} is not a local directory")
        return Path(filesystem(self.target)[1])

    def begin(self) -> None:
        """Before the first output: not finished any more, and the fingerprint of this attempt saved."""
        remove_done(self.target)
        data = json.dumps(self.fingerprint, indent=1).encode()
        atomic_write_bytes(data, join_uri(self.target, FINGERPRINT_NAME))

    def complete(self, local_dir: Path, names: Iterable[str], command: str) -> dict[str, Any]:
        """After the last output: ``DONE.json`` (checksums of ``names`` in ``local_dir``), then, with
        ``--force``, the new results take the old ones' place. Returns the completion record."""
        record = done_record(local_dir, names, command, self.fingerprint)
        write_done(self.target, record)
        if self.staging:
            promote(self.target, self.out)
        return record

    def abandon(self) -> None:
        """The attempt failed or was stopped: a staging location goes, the old results stay."""
        if self.staging:
            _remove_tree(self.target)


@contextlib.contextmanager
def claim_out(
    out: str,
    command: str,
    *,
    resume: bool,
    force: bool,
    fingerprint: dict[str, Any],
    inputs: Sequence[str] = (),
) -> Iterator[Claim]:
    """Claim OUT for one run (see the module docstring); the lease is held until the block ends."""
    if resume and force:
        raise AutoLFADSError("--resume and --force: choose one (continue the run in --out, or replace it)")
    # --resume (a KubeRay retry after its driver died, a rerun after a crash) waits out a stale lease.
    lease = acquire_lease(out, command, wait_for_stale=resume)
    try:
        if not resume:
            _refuse_inputs_among_results(out, inputs)
        claim = _decide(out, resume, force, fingerprint, lease)
        removed = clean_stale_temporaries(out)  # only once the run goes ahead: a refusal changes nothing
        if removed:
            log.info("removed %d temporaries a stopped run left in %s", len(removed), out)
        if claim.mode != "finished":
            claim.begin()
        try:
            yield claim
        except BaseException:
            claim.abandon()
            raise
    finally:
        lease.release()


def _decide(out: str, resume: bool, force: bool, fingerprint: dict[str, Any], lease: Lease) -> Claim:
    state = inspect_out(out)
    claim = Claim(out, "new", out, lease, fingerprint, state)
    if not state.holds_run:
        return claim
    if force:
        claim.mode, claim.target = "force", join_uri(out, f"{STAGING_PREFIX}{lease.token[:12]}")
        return claim
    finished = "a finished" if state.finished else "an unfinished"
    names = ", ".join(state.results[:4]) + (", ..." if len(state.results) > 4 else "")
    if not resume:
        raise AutoLFADSError(
            f"--out {out} already holds {finished} run ({names}); pass --resume to continue it, --force to "
            "replace it, or choose another --out"
        )
    saved = read_json_object(join_uri(out, FINGERPRINT_NAME))
    if saved is None:
        claim.notes.append(
            f"{out} has no {FINGERPRINT_NAME} (written by an older autolfads): resuming it without checking "
            "that DATA, --config and the overrides are the ones it started with"
        )
    else:
        diff = describe(saved, fingerprint)
        if diff:
            raise AutoLFADSError(
                f"--resume: {out} holds a run of other inputs: {diff}; give the DATA, --config and overrides "
                "it started with, or pass --force to replace it, or choose another --out"
            )
    claim.mode = "finished" if state.finished else "resume"
    if claim.mode == "finished":
        claim.done = read_done(out)
    return claim


def _refuse_inputs_among_results(out: str, inputs: Sequence[str]) -> None:
    """An input file at a result name directly in OUT would be replaced by a new run: refused.

    (A resumed run rewrites only what it wrote before, with the same content: its fingerprint matched.)
    """
    where = _normal(out)
    for item in inputs:
        path = _normal(item)
        parent, _, name = path.rpartition("/")
        if parent == where and is_result_name(name):
            raise AutoLFADSError(
                f"{item} is an input of this run but sits in --out {out} as '{name}', which the run "
                "writes; move it out of --out or choose another --out"
            )


def promote(staging: str, out: str) -> None:
    """Replace OUT's results with the staging location's, ``DONE.json`` last; remove the staging location.

    Only result names are touched (``autolfads.rundir.layout``). OUT's old ``DONE.json`` goes first, so a
    crash in the middle leaves a location that does not claim to be finished.
    """
    new = top_level_names(staging)
    old = [n for n in top_level_names(out) if is_result_name(n)]
    remove_results(out, [DONE_NAME])
    remove_results(out, [n for n in old if n != DONE_NAME])
    for name in sorted(new, key=lambda n: n == DONE_NAME):
        _move(join_uri(staging, name), join_uri(out, name))
    _remove_tree(staging)


def _move(source: str, target: str) -> None:
    if not is_remote(source):
        os.replace(filesystem(source)[1], filesystem(target)[1])
        return
    fs, src = filesystem(source)
    _, dst = filesystem(target)
    if fs.isdir(src):
        for key in fs.find(src):
            fs.copy(key, dst + key[len(src) :])
    else:
        fs.copy(src, dst)


def _remove_tree(uri: str) -> None:
    if not is_remote(uri):
        shutil.rmtree(filesystem(uri)[1], ignore_errors=True)
        return
    fs, path = filesystem(uri)
    with contextlib.suppress(FileNotFoundError):
        fs.rm(path, recursive=True)


def _normal(item: str) -> str:
    if is_remote(item):
        return str(item).rstrip("/")
    return str(Path(filesystem(item)[1]).resolve())


__all__ = ["MODES", "Claim", "claim_out", "promote"]
