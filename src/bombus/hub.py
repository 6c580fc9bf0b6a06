"""Resolve a source — a local folder or a Hugging Face hub repo id — to files on this machine.

Hub downloads go through `huggingface_hub`, so its cache (`HF_HOME` / `HF_HUB_CACHE`), offline mode
(`HF_HUB_OFFLINE=1`: only the cache is read) and token (`HF_TOKEN`) behave as they do for transformers.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import SourceError

_TRUE = {"1", "ON", "YES", "TRUE"}


def is_offline() -> bool:
    # Read at call time (huggingface_hub reads it once at import), so tests and users can flip it.
    return os.environ.get("HF_HUB_OFFLINE", "0").upper() in _TRUE


def is_local(source: str | os.PathLike) -> bool:
    return Path(source).expanduser().is_dir()


def resolve_file(
    source: str | os.PathLike,
    filename: str,
    *,
    revision: str | None = None,
    token: str | bool | None = None,
    required: bool = True,
) -> Path | None:
    """Return the local path of `filename` in `source`, downloading it from the hub if needed.

    Returns None when the file does not exist and `required` is False; otherwise raises `SourceError`.
    """
    path = Path(source).expanduser()
    if path.is_dir():
        candidate = path / filename
        if candidate.is_file():
            return candidate
        if required:
            raise SourceError(f"{filename} not found in folder {path}")
        return None
    return _download(str(source), filename, revision=revision, token=token, required=required)


def resolve_first(
    source: str | os.PathLike,
    filenames: list[str],
    *,
    revision: str | None = None,
    token: str | bool | None = None,
) -> Path | None:
    """The first of `filenames` that `source` has, or None."""
    for name in filenames:
        found = resolve_file(source, name, revision=revision, token=token, required=False)
        if found is not None:
            return found
    return None


def _download(repo_id: str, filename: str, *, revision, token, required: bool) -> Path | None:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.utils import (
        EntryNotFoundError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    if repo_id.count("/") > 1 or repo_id.startswith((".", "/", "~")):
        raise SourceError(f"{repo_id!r} is neither an existing folder nor a hub repo id of the form 'owner/name'")
    offline = is_offline()
    try:
        return Path(
            hf_hub_download(repo_id, filename, revision=revision, token=token, local_files_only=offline)
        )
    except HFValidationError as e:
        raise SourceError(
            f"{repo_id!r} is neither an existing folder nor a valid hub repo id ('owner/name'): {e}"
        ) from None
    except RepositoryNotFoundError:
        raise SourceError(f"hub repo {repo_id!r} not found (or private: set HF_TOKEN)") from None
    except RevisionNotFoundError:
        raise SourceError(f"revision {revision!r} not found in hub repo {repo_id!r}") from None
    except LocalEntryNotFoundError:
        # Offline (or unreachable hub) and not in the cache.
        if required:
            where = "HF_HUB_OFFLINE is set and it" if offline else "the hub cannot be reached and it"
            raise SourceError(
                f"{filename} of {repo_id!r} (revision {revision or 'main'}) is not in the local hub cache; "
                f"{where} cannot be downloaded. Download it once while online, or pass a local folder."
            ) from None
        return None
    except EntryNotFoundError:
        if required:
            raise SourceError(f"{filename} not found in hub repo {repo_id!r}") from None
        return None
    except OSError as e:  # network failures surface as OSError subclasses
        if required:
            raise SourceError(f"could not fetch {filename} of {repo_id!r}: {e}") from None
        return None
