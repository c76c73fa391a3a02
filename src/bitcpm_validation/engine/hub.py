"""Where the model comes from: a local directory, or a hub id with an optional revision, as vLLM users give it.

    model.path: models/stand-in                       a local directory (used as is)
    model.path: openbmb/BitCPM4-0.5B                  the hub's default branch
    model.path: openbmb/BitCPM4-0.5B@<commit or tag>  a pinned revision
    model.hub:  auto | huggingface | modelscope       auto: modelscope when VLLM_USE_MODELSCOPE is true (as vLLM decides)

The run resolves the model once, before the first chapter, into a local snapshot
(`huggingface_hub.snapshot_download`, or ModelScope's), so every chapter, engine and server uses the same
directory, and records the hub, the repository id and the resolved commit. Online hosts download; offline
hosts (HF_HUB_OFFLINE=1, or no network) use the cache. Every failure is one line naming what to do.
"""
from __future__ import annotations

import errno
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

from bitcpm_validation.paths import parse_hub_id

Hub = Literal["huggingface", "modelscope"]


class ModelSourceError(ValueError):
    """The model cannot be resolved; the message is one line naming the cause and the fix."""


@dataclass(frozen=True)
class ModelSource:
    """What a run validated: the local directory, and for a hub model the hub, repository and commit."""
    local_dir: Path
    hub: Optional[Hub] = None  # None: a local directory given as such
    repo_id: Optional[str] = None
    revision: Optional[str] = None  # as requested (None: the default branch)
    commit: Optional[str] = None  # as resolved

    @property
    def spec(self) -> str:
        """The value to give model.path to get this exact model again."""
        if self.repo_id is None:
            return str(self.local_dir)
        return f"{self.repo_id}@{self.commit or self.revision}" if (self.commit or self.revision) else self.repo_id


def default_hub() -> Hub:
    """The hub vLLM itself would use: ModelScope when VLLM_USE_MODELSCOPE is true."""
    return "modelscope" if os.environ.get("VLLM_USE_MODELSCOPE", "").strip().lower() in ("1", "true", "yes") else "huggingface"


def resolve(spec: str, hub: str = "auto", *, base: Optional[Path] = None) -> ModelSource:
    """A local directory (existing; relative to `base`), or a hub id resolved into a local snapshot."""
    local = Path(spec).expanduser()
    if not local.is_absolute() and base is not None:
        local = base / local
    if local.is_dir():
        return ModelSource(local_dir=local.resolve())
    parsed = parse_hub_id(spec)
    if parsed is None:
        raise ModelSourceError(f"model directory {spec} not found: give an existing local directory or a hub id "
                               f"such as openbmb/BitCPM4-0.5B[@revision]")
    repo_id, revision = parsed
    which: Hub = default_hub() if hub == "auto" else hub  # type: ignore[assignment]
    if which == "modelscope":
        return _modelscope(repo_id, revision)
    return _huggingface(repo_id, revision)


def _cache_hint(repo_id: str, revision: Optional[str], cache: str) -> str:
    rev = f" --revision {revision}" if revision else ""
    return (f"the hub cache {cache} has no snapshot of {repo_id}{'@' + revision if revision else ''}: on a host with "
            f"network run `hf download {repo_id}{rev}` (same HF_HOME), or set model.path to a local directory")


def _huggingface(repo_id: str, revision: Optional[str]) -> ModelSource:
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError, HFValidationError, LocalEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError,
    )

    cache = constants.HF_HUB_CACHE
    try:
        path = snapshot_download(repo_id, revision=revision)
    except RevisionNotFoundError:
        raise ModelSourceError(f"revision {revision!r} of {repo_id} not found on huggingface: give an existing "
                               f"commit, branch or tag") from None
    except GatedRepoError:
        raise ModelSourceError(f"{repo_id} is gated on huggingface: accept its terms and log in (`hf auth login`)") from None
    except RepositoryNotFoundError:
        raise ModelSourceError(f"repository {repo_id} not found on huggingface: check the id (or log in if it is "
                               f"private)") from None
    except HFValidationError as e:
        raise ModelSourceError(f"{repo_id}@{revision}: not a valid hub id or revision ({e}): fix model.path") from None
    except LocalEntryNotFoundError:
        raise ModelSourceError(_cache_hint(repo_id, revision, cache)) from None
    except OSError as e:
        if e.errno == errno.ENOSPC:
            raise ModelSourceError(f"not enough disk space in {cache} to download {repo_id}: free space there or set "
                                   f"HF_HOME to a larger disk") from None
        raise ModelSourceError(f"{repo_id}: {type(e).__name__}: {e}") from None
    snapshot = Path(path)
    commit = snapshot.name if re.fullmatch(r"[0-9a-f]{40}", snapshot.name) else None
    return ModelSource(local_dir=snapshot, hub="huggingface", repo_id=repo_id, revision=revision, commit=commit)


def _modelscope(repo_id: str, revision: Optional[str]) -> ModelSource:
    try:
        from modelscope import snapshot_download  # type: ignore[import-not-found]
    except ImportError:
        raise ModelSourceError("model.hub is modelscope (or VLLM_USE_MODELSCOPE is set) but the modelscope package is "
                               "not installed: pip install modelscope, or set model.hub: huggingface") from None
    try:
        path = Path(snapshot_download(repo_id, revision=revision or "master"))
    except OSError as e:
        if e.errno == errno.ENOSPC:
            raise ModelSourceError(f"not enough disk space to download {repo_id} from modelscope: free space in "
                                   f"MODELSCOPE_CACHE or point it at a larger disk") from None
        raise ModelSourceError(f"{repo_id}: modelscope: {type(e).__name__}: {e}") from None
    except Exception as e:  # noqa: BLE001 - modelscope raises its own exception types for unknown repos/revisions
        raise ModelSourceError(f"{repo_id}@{revision or 'master'}: modelscope could not resolve it "
                               f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}): check the id and "
                               f"revision") from None
    return ModelSource(local_dir=path, hub="modelscope", repo_id=repo_id, revision=revision, commit=revision)
