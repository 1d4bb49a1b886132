"""``PlainData``: pydantic's methods on a plain slotted dataclass.

A run makes and changes a handful of small objects at every step (its ``RunState``, each
``Message``, ``Usage``, ``ModelResponse``). As pydantic models each of them was validated when
made and checked on every attribute set, which was a sixth of an untraced run. They are
plain dataclasses (``slots=True``, keyword-only) instead, and pydantic stays at the
boundaries: checkpoint JSON, API views, and validating what a user or a file hands in
(``model_validate``). This mixin gives them the pydantic methods callers already use, backed
by one ``TypeAdapter`` per class, built on first use (``tether.core`` loads without pydantic).

Unlike a pydantic model, the constructor does not validate: code that builds one of these from
untrusted data calls ``model_validate``.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import TYPE_CHECKING, Any, ClassVar, Self

if TYPE_CHECKING:
    from pydantic import TypeAdapter


class PlainData:
    """Mixin for a ``@dataclass(slots=True, kw_only=True)``: ``model_validate``,
    ``model_validate_json``, ``model_dump``, ``model_dump_json``, ``model_copy`` and
    ``model_json_schema`` as pydantic models have them."""

    __slots__ = ()
    _adapters: ClassVar[dict[type, Any]] = {}

    @classmethod
    def _adapter(cls) -> TypeAdapter[Self]:
        adapter = PlainData._adapters.get(cls)
        if adapter is None:
            from pydantic import TypeAdapter

            adapter = PlainData._adapters[cls] = TypeAdapter(cls)
        return adapter

    @classmethod
    def model_validate(
        cls,
        obj: Any,
        *,
        strict: bool | None = None,
        from_attributes: bool | None = None,
        context: Any | None = None,
    ) -> Self:
        """``obj`` (a mapping, or an instance) checked against the fields' types; the options
        as ``BaseModel.model_validate`` has them."""
        return cls._adapter().validate_python(
            obj, strict=strict, from_attributes=from_attributes, context=context
        )

    @classmethod
    def model_validate_json(
        cls, data: str | bytes, *, strict: bool | None = None, context: Any | None = None
    ) -> Self:
        return cls._adapter().validate_json(data, strict=strict, context=context)

    @classmethod
    def model_json_schema(cls) -> dict[str, Any]:
        return cls._adapter().json_schema()

    def model_dump(self, **kwargs: Any) -> Any:
        """As ``BaseModel.model_dump`` (``mode``, ``exclude_none``, ``include``, ...)."""
        return self._adapter().dump_python(self, **kwargs)

    def model_dump_json(self, **kwargs: Any) -> str:
        """As ``BaseModel.model_dump_json`` (the same bytes a pydantic model of these fields
        writes)."""
        return self._adapter().dump_json(self, **kwargs).decode()

    def __str__(self) -> str:
        """As a pydantic model prints (``input_tokens=5 output_tokens=7``); ``repr`` is the
        dataclass's, which reads as pydantic's (``Usage(input_tokens=5, ...)``)."""
        return " ".join(f"{f.name}={getattr(self, f.name)!r}" for f in dataclasses.fields(self))  # type: ignore[arg-type]

    def model_copy(self, *, update: dict[str, Any] | None = None, deep: bool = False) -> Self:
        """A copy with ``update``'s fields replaced (not validated, as in pydantic)."""
        base = copy.deepcopy(self) if deep else self
        return dataclasses.replace(base, **update) if update else copy.copy(base)  # type: ignore[type-var]
