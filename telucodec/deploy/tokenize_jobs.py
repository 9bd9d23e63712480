"""One tokenize job: an utterance id and where to read it, and what encoding it gave. Shared by
the local engine (`deploy/tokenize.py`, in this process or worker processes) and Ray actors
(`deploy/tokenize_ray.py`)."""

from __future__ import annotations

import builtins
import hashlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from telucodec.errors import StorageError, TelucodecError
from telucodec.formats.audio_index import AudioItem
from telucodec.formats.os_errors import raise_if_machine_fault
from telucodec.formats.token_shards import CODES_DTYPE

if TYPE_CHECKING:
    from telucodec.model.codec import Codec


@dataclass
class Job:
    id: str
    path: str                       # the file, or ARCHIVE:MEMBER; absolute
    item: AudioItem | None = None   # where to read it (None: the file `path`)


@dataclass
class Result:
    id: str
    path: str
    codes: np.ndarray | None = None      # uint16 [n_q, F]
    num_samples: int = 0
    side: list[int] = field(default_factory=list)
    sha256: str = ""
    error: str = ""
    speaker: str = ""


def _sha256(path: str) -> str:
    with builtins.open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def encode_job(model: Codec, kbps: float | None, job: Job) -> Result:
    """Load, hash and encode one file; any problem with the file becomes `Result.error`."""
    from telucodec.formats.archives import member_bytes
    from telucodec.formats.audio import load_audio, load_audio_bytes

    try:
        if job.item is not None and job.item.member:
            data = member_bytes(job.item)
            digest, wav = hashlib.sha256(data).hexdigest(), load_audio_bytes(data, job.path, model.sample_rate)
        else:
            digest, wav = _sha256(job.path), load_audio(job.path, model.sample_rate)
        codes = model.encode(wav, model.sample_rate, kbps)
    except StorageError:
        raise  # the machine failed (too many open files, an I/O error): the run stops, naming the file
    except OSError as exc:
        raise_if_machine_fault(exc, job.path)
        return Result(job.id, job.path, error=str(exc).replace(f"{job.path}: ", "", 1))
    except TelucodecError as exc:
        return Result(job.id, job.path, error=str(exc).replace(f"{job.path}: ", "", 1))
    return Result(job.id, job.path, codes.codes.numpy().astype(CODES_DTYPE), codes.num_samples,
                  list(codes.side), digest, speaker=job.item.speaker if job.item is not None else "")
