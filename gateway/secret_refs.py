"""Secret references of the fleet file (``{env: NAME}``, ``{file: PATH}`` or a literal) and
how they resolve.

Resolved at the edge by passing in the environment mapping and a file reader, never by reading
``os.environ`` here; a secret's value is kept in a ``SecretStr`` and no message contains it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    model_validator,
)

from gateway.bounded_read import read_bounded_file


class SecretError(ValueError):
    """A secret reference that cannot be resolved; the message never contains the secret."""


EnvReader = Mapping[str, str]
FileReader = Callable[[Path], str]


#: The largest secret file read: a password or token is short; a wrong path must not be read whole.
MAX_SECRET_BYTES = 64 * 1024


def read_text_file(path: Path) -> str:
    """The default file reader for ``{file: PATH}`` secrets (one trailing newline dropped).

    A regular UTF-8 file of at most :data:`MAX_SECRET_BYTES`; anything else is a
    :class:`SecretError` that names the file, never its content.
    """
    try:
        data = read_bounded_file(path, limit=MAX_SECRET_BYTES, what="a secret file")
    except FileNotFoundError:
        raise SecretError(f"cannot read secret file {path}: it does not exist") from None
    except ValueError as exc:
        raise SecretError(f"cannot read secret file {path}: {exc}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise SecretError(f"cannot read secret file {path}: it is not UTF-8 text") from None
    return text[:-1] if text.endswith("\n") else text


class SecretRef(BaseModel):
    """Where a secret comes from: ``{env: NAME}``, ``{file: PATH}`` or (discouraged) a literal.

    The literal itself is kept in a ``SecretStr`` so it never shows in a repr, a log line or an
    error message.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    env: str | None = Field(default=None, description="Name of the environment variable.")
    file: Path | None = Field(default=None, description="Path of a file holding the secret.")
    literal: SecretStr | None = Field(
        default=None, description="An inline value; accepted with a warning."
    )

    @model_validator(mode="before")
    @classmethod
    def _from_literal(cls, data: Any) -> Any:
        if isinstance(data, str | int) and not isinstance(data, bool):
            return {"literal": str(data)}
        return data

    @model_validator(mode="after")
    def _exactly_one(self) -> SecretRef:
        given = [k for k in ("env", "file", "literal") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("a secret is one of {env: NAME} or {file: PATH} (or a literal string)")
        if self.env is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", self.env):
            raise ValueError(f"{self.env!r} is not an environment variable name")
        return self

    @property
    def is_literal(self) -> bool:
        return self.literal is not None

    def describe(self) -> str:
        """Where the secret comes from, safe to print."""
        if self.env is not None:
            return f"env:{self.env}"
        if self.file is not None:
            return f"file:{self.file}"
        return "literal:**********"

    def __repr__(self) -> str:
        return f"SecretRef({self.describe()})"

    __str__ = describe

    def missing_reason(self, *, environ: EnvReader) -> str | None:
        """Why the reference cannot be resolved right now, or None when it can."""
        if self.env is not None and not environ.get(self.env):
            return f"environment variable {self.env} is not set"
        if self.file is not None and not self.file.is_file():
            return f"file {self.file} does not exist"
        return None

    def resolve(self, *, environ: EnvReader, read_file: FileReader = read_text_file) -> SecretStr:
        """The secret's value, wrapped so that it stays redacted."""
        if self.literal is not None:
            return self.literal
        if self.env is not None:
            value = environ.get(self.env)
            if not value:
                raise SecretError(f"environment variable {self.env} is not set")
            return SecretStr(value)
        assert self.file is not None
        try:
            return SecretStr(read_file(self.file))
        except SecretError:
            raise
        except OSError as exc:
            raise SecretError(f"cannot read secret file {self.file}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise SecretError(
                f"cannot read secret file {self.file}: it is not UTF-8 text"
            ) from None
