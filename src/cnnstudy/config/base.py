"""What every part of a study file's schema shares: the error a study file raises, safe names,
forbidden extra keys, and `none` read as unset."""
from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict


class StudyError(ValueError):
    """A study file that cannot run as written."""


_SAFE_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}")


def _safe_name(value: str) -> str:
    # Names become folder names under runs/, and --force deletes run folders: nothing may climb out.
    if not _SAFE_NAME.fullmatch(value):
        raise ValueError("use letters, digits, '-', '_' and '.' only, not starting with '.' "
                         "(it names a folder), e.g. phase1 or cnn_head")
    return value


SafeName = Annotated[str, AfterValidator(_safe_name)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _none_word(value: Any) -> Any:
    """`none` in a study file for an optional setting means not set (as `augment: none` does)."""
    return None if isinstance(value, str) and value.strip().lower() == "none" else value
