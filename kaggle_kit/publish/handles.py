"""Kaggle's handles, typed: one place that knows how a handle is written, joined and split.

Modelled on kagglehub's ``kagglehub/handle.py``: frozen dataclasses whose ``str()`` is the canonical
form Kaggle reads, and ``parse_*`` functions that turn text back into them.

=====================  ==============================================  ==============================
handle                 canonical form                                  where the kit meets it
=====================  ==============================================  ==============================
`ModelHandle`          ``owner/model-slug``                            model-metadata.json, `model_get`
`ModelInstanceHandle`  ``owner/model-slug/framework/instance-slug``    `model_instance_get`, push-model
                       ``[/VERSION]``                                  kernel ``model_sources`` (versioned)
`DatasetHandle`        ``owner/dataset-slug[/VERSION]``                dataset ``id``, ``dataset_sources``
`KernelHandle`         ``owner/kernel-slug[/VERSION]``                 kernel ``id``, ``kernel_sources``
`CompetitionHandle`    ``competition-slug``                            ``competition_sources``
=====================  ==============================================  ==============================

Kaggle's rules, where they matter (kaggle 2.2.4 `kaggle_api_extended.py`, kagglesdk 0.1.37):

- slugs (the client's `_validate_slug_syntax`): lowercase letters, digits and single hyphens
  (`SLUG_RE`); owners and instance slugs may also use underscores (keras' ``gemma_2b_en``);
- framework: a name of kagglesdk's `ModelFramework` enum, in the spelling of Kaggle's handles
  (`FRAMEWORKS`, any case accepted and written canonically); a PEFT adapter is uploaded as
  ``transformers`` (there is no ``peft``);
- version: an integer >= 1 (`validate_model_instance_version_string`; a third part of a dataset
  or kernel source is read as a version, and the server wants a number there: no ``latest``);
- kernel slugs: 5 to 50 characters, kernel titles too: the client refuses slugs (`validate_kernel_string`)
  and titles (`kernels_push`: "Title must be at least five characters") under 5; Kaggle's server refuses
  either over 50 with a bare "500 - An internal server error" (Kaggle/kaggle-cli PR #179, which documents
  `kernels init --title` as "more than 5 characters and less or equal to 50"; Kaggle/learntools PR #48
  truncates kernel titles over 50 for the same reason). The slug is the title lowercased with hyphens
  (Kaggle/kaggle-cli wiki "Kernel Metadata"), and the client warns when they differ.

Constructing a handle checks nothing (values built from kit.toml are checked all at once by
`kit validate`). Text comes in through:

- ``parse_*(text, strict=True)``: the handle, or a KitError naming the value, the expected shape and
  the fix; ``strict=False`` checks only the shape (the number of parts, an integer version), not the
  naming rules;
- ``check_*(text, where, ...)``: ``(handle or None, every problem as a message)``, for `kit validate`,
  which shows all problems at once. The handle is None only when the shape is wrong.
"""
from __future__ import annotations

import dataclasses
import hashlib
import re
import unicodedata
from dataclasses import dataclass
from typing import Optional

from kaggle_kit.errors import KitError

SLUG_RE = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
OWNER_RE = re.compile(r"^[a-z0-9]+(?:[_-][a-z0-9]+)*$")
INSTANCE_SLUG_RE = OWNER_RE
_VERSION_RE = re.compile(r"^[0-9]+$")

# The frameworks of kagglesdk's `ModelFramework` enum (0.1.37), in the spelling of Kaggle's model
# handles (e.g. google/gemma/pyTorch/2b). `unspecified` and `api` are left out: they cannot hold
# uploaded files. A PEFT adapter is published as `transformers` (there is no `peft`).
FRAMEWORKS = (
    "transformers", "pyTorch", "jax", "flax", "keras", "tensorFlow1", "tensorFlow2", "tfLite",
    "tfJs", "pax", "maxText", "gemmaCpp", "ggml", "gguf", "coral", "scikitLearn", "mxnet", "onnx",
    "tensorRtLlm", "triton", "vllm", "other",
)
KERNEL_SLUG_MIN = 5  # the client's `validate_kernel_string`
KERNEL_SLUG_MAX = 50  # Kaggle's server (Kaggle/kaggle-cli PR #179; see the module doc)
KERNEL_TITLE_MIN, KERNEL_TITLE_MAX = 5, 50  # the client's `kernels_push`; the server, as for slugs
MODEL_EXAMPLE = "me/gemma2-adapter/transformers/peft-lora-classifier"


# --------------------------------------------------------------------------- the types


def _checked_version(handle, version) -> int:
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise KitError(f"{handle}: version {version!r} must be an integer >= 1 (Kaggle numbers versions from 1; "
                       "there is no 'latest' in a handle)")
    return version


@dataclass(frozen=True)
class ModelHandle:
    """``owner/model-slug``: a model, the parent of its instances."""

    owner: str
    model: str

    def __str__(self) -> str:
        return f"{self.owner}/{self.model}"

    def instance(self, framework: str, instance: str, version: Optional[int] = None) -> "ModelInstanceHandle":
        return ModelInstanceHandle(self.owner, self.model, framework, instance, version)


@dataclass(frozen=True)
class ModelInstanceHandle:
    """``owner/model-slug/framework/instance-slug`` and, when pinned, ``/VERSION`` (what a kernel
    mounts: Kaggle's `model_sources` need the version)."""

    owner: str
    model: str
    framework: str
    instance: str
    version: Optional[int] = None

    def is_versioned(self) -> bool:
        return self.version is not None

    def with_version(self, version: int) -> "ModelInstanceHandle":
        return dataclasses.replace(self, version=_checked_version(self, version))

    def without_version(self) -> "ModelInstanceHandle":
        return dataclasses.replace(self, version=None)

    @property
    def model_handle(self) -> ModelHandle:
        return ModelHandle(self.owner, self.model)

    def __str__(self) -> str:
        base = f"{self.owner}/{self.model}/{self.framework}/{self.instance}"
        return f"{base}/{self.version}" if self.is_versioned() else base

    def mount_paths(self) -> list[str]:
        """Where a kernel finds it, relative to /kaggle: the current layout first, then the older one
        (Kaggle writes the framework in lower case there)."""
        if not self.is_versioned():
            raise KitError(f"{self}: no version; a kernel mounts one version of a model instance (owner/model/framework/instance/VERSION)")
        tail = f"{self.model}/{self.framework.lower()}/{self.instance}/{self.version}"
        return [f"input/models/{self.owner}/{tail}", f"input/{tail}"]


@dataclass(frozen=True)
class _OwnedSlug:
    """``owner/slug`` with an optional ``/VERSION`` (the shared shape of dataset and kernel handles)."""

    owner: str
    slug: str
    version: Optional[int] = None

    def is_versioned(self) -> bool:
        return self.version is not None

    def with_version(self, version: int):
        return dataclasses.replace(self, version=_checked_version(self, version))

    def __str__(self) -> str:
        base = f"{self.owner}/{self.slug}"
        return f"{base}/{self.version}" if self.is_versioned() else base


@dataclass(frozen=True)
class DatasetHandle(_OwnedSlug):
    """``owner/dataset-slug`` and, in a kernel's sources, optionally ``/VERSION``."""

    def mount_paths(self) -> list[str]:
        """Where a kernel finds it, relative to /kaggle (current layout first)."""
        return [f"input/datasets/{self.owner}/{self.slug}", f"input/{self.slug}"]


@dataclass(frozen=True)
class KernelHandle(_OwnedSlug):
    """``owner/kernel-slug`` (a kernel's ``id``: no version) or, as a kernel source, ``/VERSION``."""


@dataclass(frozen=True)
class CompetitionHandle:
    """``competition-slug`` (competitions have no owner in their handle)."""

    slug: str

    def __str__(self) -> str:
        return self.slug

    def mount_paths(self) -> list[str]:
        """Where a kernel finds its data, relative to /kaggle (current layout first)."""
        return [f"input/competitions/{self.slug}", f"input/{self.slug}"]


# --------------------------------------------------------------------------- names


def slugify(text: str) -> str:
    """The slug Kaggle derives from a title (the kaggle client uses python-slugify; same result)."""
    try:
        from slugify import slugify as _slugify  # python-slugify, a dependency of kaggle

        return _slugify(text)
    except ImportError:  # pragma: no cover - fallback close to python-slugify's defaults
        text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
        return re.sub(r"[^a-z0-9]+", "-", text).strip("-")


def canonical_framework(name: str) -> Optional[str]:
    """Kaggle's spelling of a framework name (any case, with or without _/-), or None when unknown."""
    key = re.sub(r"[_\-\s]", "", str(name)).lower()
    for fw in FRAMEWORKS:
        if fw.lower() == key:
            return fw
    return None


def _at(where: str) -> str:
    return f"{where}: " if where else ""


def slug_problems(value, field: str, where: str = "", pattern=SLUG_RE, what: str = "slug") -> list[str]:
    """Kaggle's slug syntax (the client's `_validate_slug_syntax`) for one value."""
    if not isinstance(value, str) or not pattern.match(value):
        rule = "lowercase letters, digits and single hyphens" + (", or underscores" if pattern is OWNER_RE else "")
        fix = slugify(str(value)) if isinstance(value, str) else ""
        hint = f" (e.g. {fix!r})" if fix and fix != value else ""
        return [f"{_at(where)}{field} = {value!r} is not a valid {what}: use {rule}, not starting or ending with one{hint}"]
    return []


def fit_slug(prefix: str, name: str, limit: int = KERNEL_SLUG_MAX) -> str:
    """``prefix-name`` as a slug of at most ``limit`` characters, deterministically: whole when it fits;
    else the prefix cut to its first whole words, then the whole name (``wsdm-cup-multilingual-chatbot-arena``
    + ``inference-abcdef`` -> ``wsdm-cup-multilingual-chatbot-inference-abcdef``); else, when the name
    leaves no room for a word of the prefix, the text cut and ended with 6 hex digits of its SHA-1, so
    that names differing only past the cut still give different slugs."""
    full = slugify(f"{prefix}-{name}")
    if len(full) <= limit:
        return full
    tail, head = slugify(name), ""
    for word in slugify(prefix).split("-"):
        longer = f"{head}-{word}" if head else word
        if len(longer) + 1 + len(tail) > limit:
            break
        head = longer
    if head and tail:
        return f"{head}-{tail}"
    digest = hashlib.sha1(full.encode("utf-8")).hexdigest()[:6]
    return f"{full[:limit - len(digest) - 1].rstrip('-')}-{digest}"


def kernel_title_problems(title, where: str = "", field: str = "title", fix: str = "") -> list[str]:
    """A kernel title of 5 to 50 characters (see the module doc). ``fix``: the setting to change."""
    if isinstance(title, str) and KERNEL_TITLE_MIN <= len(title) <= KERNEL_TITLE_MAX:
        return []
    size = f" (it has {len(title)})" if isinstance(title, str) else ""
    return [f"{_at(where)}{field} = {title!r} must be {KERNEL_TITLE_MIN}-{KERNEL_TITLE_MAX} characters{size}: the "
            f"kaggle client refuses shorter titles and Kaggle's server longer ones; {fix or 'change the title'}"]


# --------------------------------------------------------------------------- checks


def _parts(text, counts: tuple) -> Optional[list[str]]:
    """``text`` split at '/', when it is a string of one of ``counts`` non-empty parts."""
    if not isinstance(text, str):
        return None
    parts = text.split("/")
    return parts if len(parts) in counts and all(parts) else None


def _counts(versioned: Optional[bool], bare: int) -> tuple:
    return {True: (bare + 1,), False: (bare,), None: (bare, bare + 1)}[versioned]


def _version(text: str, named: str, where: str, problems: list, message: str) -> Optional[int]:
    if _VERSION_RE.match(text) and int(text) >= 1:
        return int(text)
    problems.append(f"{_at(where)}{named}: {message.format(text=repr(text))}")
    return None


def _owner_slug(kind: str, text, where: str, versioned: Optional[bool], strict: bool, named: Optional[str],
                parts_named: Optional[str], slug_min: int = 0, slug_max: int = 0):
    """(owner, slug, version, problems) of ``owner/slug[/VERSION]``; owner is None when the shape is wrong."""
    named = named or f"{kind} handle {text!r}"
    parts_named = parts_named or named
    form = {None: f"'owner/{kind}-slug' or 'owner/{kind}-slug/VERSION'", False: f"'owner/{kind}-slug' (no version)",
            True: f"'owner/{kind}-slug/VERSION'"}[versioned]
    parts = _parts(text, _counts(versioned, 2))
    if parts is None:
        return None, None, None, [f"{_at(where)}{named} must be {form}"]
    problems: list[str] = []
    if strict:
        problems += slug_problems(parts[0], f"{parts_named} owner", where, OWNER_RE, "owner")
        problems += slug_problems(parts[1], f"{parts_named} slug", where)
        if len(parts[1]) < slug_min:
            problems.append(f"{_at(where)}{parts_named} slug {parts[1]!r} must be at least {slug_min} characters (kaggle client)")
        if slug_max and len(parts[1]) > slug_max:
            problems.append(f"{_at(where)}{parts_named} slug {parts[1]!r} has {len(parts[1])} characters; Kaggle's server "
                            f"refuses more (at most {slug_max}): shorten it")
    version = None
    if len(parts) == 3:
        version = _version(parts[2], named, where, problems,
                           "the third part {text} must be a version number >= 1 (Kaggle reads 'owner/slug/VERSION'); write " + form)
        if version is None:
            return None, None, None, problems
    return parts[0], parts[1], version, problems


def check_dataset(text, where: str = "", *, versioned: Optional[bool] = None, strict: bool = True,
                  named: Optional[str] = None, parts_named: Optional[str] = None) -> tuple:
    """``(DatasetHandle or None, problems)`` of ``owner/dataset-slug[/VERSION]``. ``named``: how the
    messages name the whole value (default ``dataset handle 'TEXT'``); ``parts_named``: how they name
    its owner and slug (default ``named``)."""
    owner, slug, version, problems = _owner_slug("dataset", text, where, versioned, strict, named, parts_named)
    return (None if owner is None else DatasetHandle(owner, slug, version)), problems


def check_kernel(text, where: str = "", *, versioned: Optional[bool] = None, strict: bool = True,
                 named: Optional[str] = None, parts_named: Optional[str] = None) -> tuple:
    """``(KernelHandle or None, problems)`` of ``owner/kernel-slug[/VERSION]`` (a slug of 5 to 50 characters)."""
    owner, slug, version, problems = _owner_slug("kernel", text, where, versioned, strict, named, parts_named,
                                                 slug_min=KERNEL_SLUG_MIN if strict else 0,
                                                 slug_max=KERNEL_SLUG_MAX if strict else 0)
    return (None if owner is None else KernelHandle(owner, slug, version)), problems


def check_competition(text, where: str = "", *, strict: bool = True, named: str = "competition handle") -> tuple:
    """``(CompetitionHandle or None, problems)`` of a competition slug."""
    if strict:
        problems = slug_problems(text, named, where)
    elif not isinstance(text, str) or not text or "/" in text:
        problems = [f"{_at(where)}{named} = {text!r} must be one competition slug, e.g. 'titanic' (no '/')"]
    else:
        problems = []
    ok = isinstance(text, str) and bool(text) and "/" not in text
    return (CompetitionHandle(text) if ok else None), problems


def check_model(text, where: str = "", *, strict: bool = True, named: Optional[str] = None) -> tuple:
    """``(ModelHandle or None, problems)`` of ``owner/model-slug``."""
    named = named or f"model handle {text!r}"
    parts = _parts(text, (2,))
    if parts is None:
        return None, [f"{_at(where)}{named} must have 2 parts owner/model-slug, e.g. 'me/gemma2-adapter'"]
    problems = []
    if strict:
        problems = slug_problems(parts[0], f"{named} owner", where, OWNER_RE, "owner")
        problems += slug_problems(parts[1], f"{named} model slug", where)
    return ModelHandle(*parts), problems


def check_model_instance(text, where: str = "", *, versioned: Optional[bool] = None, strict: bool = True,
                         named: Optional[str] = None) -> tuple:
    """``(ModelInstanceHandle or None, problems)`` of ``owner/model-slug/framework/instance-slug[/VERSION]``
    (``versioned``: True = the version is required, as in a kernel's model sources; False = refused;
    None = either). A known framework is written in Kaggle's spelling; with ``strict`` an unknown one
    is a problem, without it it is kept as written."""
    named = named or f"model instance handle {text!r}"
    shape = {True: "5 parts owner/model-slug/framework/instance-slug/VERSION", None:
             "4 or 5 parts owner/model-slug/framework/instance-slug[/VERSION]",
             False: "4 parts owner/model-slug/framework/instance-slug (no version)"}[versioned]
    example = MODEL_EXAMPLE if versioned is False else f"{MODEL_EXAMPLE}/1"
    parts = _parts(text, _counts(versioned, 4))
    if parts is None:
        return None, [f"{_at(where)}{named} must have {shape}, e.g. {example!r}"]
    owner, model, framework, instance = parts[:4]
    problems: list[str] = []
    if strict:
        problems += slug_problems(owner, f"{named} owner", where, OWNER_RE, "owner")
        problems += slug_problems(model, f"{named} model slug", where)
        problems += slug_problems(instance, f"{named} instance slug", where, INSTANCE_SLUG_RE, "instance slug")
        if not canonical_framework(framework):
            problems.append(f"{_at(where)}{named}: framework {framework!r} is not one Kaggle knows "
                            f"({', '.join(FRAMEWORKS)}); a PEFT adapter is 'transformers'")
    version = None
    if len(parts) == 5:
        version = _version(parts[4], named, where, problems, "version {text} must be an integer >= 1 (Kaggle has no 'latest' here)")
        if version is None:
            return None, problems
    return ModelInstanceHandle(owner, model, canonical_framework(framework) or framework, instance, version), problems


# --------------------------------------------------------------------------- parsing


def _parsed(result: tuple):
    handle, problems = result
    if problems:
        raise KitError("\n".join(problems))  # one line per problem
    return handle


def parse_model_handle(text: str, *, strict: bool = True, where: str = "") -> ModelHandle:
    """``owner/model-slug`` -> ModelHandle, or a KitError naming the value and the fix."""
    return _parsed(check_model(text, where, strict=strict))


def parse_model_instance_handle(text: str, *, versioned: Optional[bool] = None, strict: bool = True,
                                where: str = "") -> ModelInstanceHandle:
    """``owner/model-slug/framework/instance-slug[/VERSION]`` -> ModelInstanceHandle (``versioned``: see
    `check_model_instance`), or a KitError naming the value, the expected shape and the fix."""
    return _parsed(check_model_instance(text, where, versioned=versioned, strict=strict))


def parse_dataset_handle(text: str, *, versioned: Optional[bool] = None, strict: bool = True,
                         where: str = "") -> DatasetHandle:
    """``owner/dataset-slug[/VERSION]`` -> DatasetHandle, or a KitError naming the value and the fix."""
    return _parsed(check_dataset(text, where, versioned=versioned, strict=strict))


def parse_kernel_handle(text: str, *, versioned: Optional[bool] = None, strict: bool = True,
                        where: str = "") -> KernelHandle:
    """``owner/kernel-slug[/VERSION]`` -> KernelHandle, or a KitError naming the value and the fix."""
    return _parsed(check_kernel(text, where, versioned=versioned, strict=strict))


def parse_competition_handle(text: str, *, strict: bool = True, where: str = "") -> CompetitionHandle:
    """``competition-slug`` -> CompetitionHandle, or a KitError naming the value and the fix."""
    return _parsed(check_competition(text, where, strict=strict))
