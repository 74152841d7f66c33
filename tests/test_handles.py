"""Typed Kaggle handles (`kaggle_kit.publish.handles`): parse/str round trips, versions, and every
malformed kind refused with a message that names the value and the expected shape."""
from __future__ import annotations

import dataclasses

import pytest

from kaggle_kit.errors import KitError
from kaggle_kit.publish import handles as hd


@pytest.mark.parametrize("parse, text", [
    (hd.parse_model_handle, "google/gemma"),
    (hd.parse_model_handle, "kit_demo/gemma2-lmsys-adapter"),
    (hd.parse_model_instance_handle, "me/gemma2-adapter/transformers/peft-lora-classifier"),
    (hd.parse_model_instance_handle, "me/gemma2-adapter/transformers/peft-lora-classifier/3"),
    (hd.parse_model_instance_handle, "keras/gemma/keras/gemma_2b_en/2"),
    (hd.parse_model_instance_handle, "google/gemma/pyTorch/2b"),
    (hd.parse_dataset_handle, "someone/some-data"),
    (hd.parse_dataset_handle, "someone/some-data/12"),
    (hd.parse_kernel_handle, "someone/feature-prep"),
    (hd.parse_kernel_handle, "someone/feature-prep/4"),
    (hd.parse_competition_handle, "lmsys-chatbot-arena"),
])
def test_parse_and_str_round_trip(parse, text):
    handle = parse(text)
    assert str(handle) == text
    assert parse(str(handle)) == handle
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(handle, "owner", "someone-else")


def test_fields_and_the_framework_in_kaggles_spelling():
    h = hd.parse_model_instance_handle("me/gemma2-adapter/Transformers/peft-lora-classifier/3")
    assert (h.owner, h.model, h.framework, h.instance, h.version) == ("me", "gemma2-adapter", "transformers", "peft-lora-classifier", 3)
    assert str(h) == "me/gemma2-adapter/transformers/peft-lora-classifier/3"
    assert hd.parse_model_instance_handle("google/gemma/pytorch/2b").framework == "pyTorch"
    assert h.model_handle == hd.ModelHandle("me", "gemma2-adapter") and str(h.model_handle) == "me/gemma2-adapter"
    assert h.model_handle.instance("transformers", "peft-lora-classifier", 3) == h
    d = hd.parse_dataset_handle("someone/some-data/12")
    assert (d.owner, d.slug, d.version) == ("someone", "some-data", 12)
    assert hd.parse_kernel_handle("someone/feature-prep") == hd.KernelHandle("someone", "feature-prep")
    assert hd.parse_competition_handle("titanic") == hd.CompetitionHandle("titanic")


def test_with_version_and_is_versioned():
    bare = hd.ModelInstanceHandle("me", "gemma2-adapter", "transformers", "peft-lora-classifier")
    assert not bare.is_versioned() and str(bare) == "me/gemma2-adapter/transformers/peft-lora-classifier"
    pinned = bare.with_version(4)
    assert pinned.is_versioned() and pinned.version == 4 and str(pinned) == f"{bare}/4"
    assert bare.version is None  # frozen: with_version returns a new handle
    assert pinned.without_version() == bare and pinned.with_version(5).version == 5
    assert str(hd.DatasetHandle("someone", "some-data").with_version(2)) == "someone/some-data/2"
    assert str(hd.KernelHandle("someone", "feature-prep").with_version(7)) == "someone/feature-prep/7"
    for bad in (0, -1, True, "3", 2.0, None):
        with pytest.raises(KitError, match=r"version .* must be an integer >= 1") as err:
            bare.with_version(bad)
        assert repr(bad) in str(err.value) and str(bare) in str(err.value)


def test_versioned_and_unversioned_are_asked_for():
    five = "me/gemma2-adapter/transformers/peft-lora-classifier/1"
    four = "me/gemma2-adapter/transformers/peft-lora-classifier"
    assert hd.parse_model_instance_handle(five, versioned=True).version == 1
    assert hd.parse_model_instance_handle(four, versioned=False).version is None
    with pytest.raises(KitError, match="must have 5 parts owner/model-slug/framework/instance-slug/VERSION"):
        hd.parse_model_instance_handle(four, versioned=True)
    with pytest.raises(KitError, match=r"must have 4 parts .*\(no version\)"):
        hd.parse_model_instance_handle(five, versioned=False)
    with pytest.raises(KitError, match=r"must be 'owner/kernel-slug' \(no version\)"):
        hd.parse_kernel_handle("someone/feature-prep/3", versioned=False)
    with pytest.raises(KitError, match="must be 'owner/dataset-slug/VERSION'"):
        hd.parse_dataset_handle("someone/some-data", versioned=True)


def test_mount_paths():
    h = hd.parse_model_instance_handle("me/gemma2-adapter/pyTorch/peft-lora-classifier/3")
    assert h.mount_paths() == ["input/models/me/gemma2-adapter/pytorch/peft-lora-classifier/3",
                               "input/gemma2-adapter/pytorch/peft-lora-classifier/3"]
    with pytest.raises(KitError, match="no version"):
        h.without_version().mount_paths()
    assert hd.DatasetHandle("me", "kit-wheels").mount_paths() == ["input/datasets/me/kit-wheels", "input/kit-wheels"]
    assert hd.CompetitionHandle("titanic").mount_paths() == ["input/competitions/titanic", "input/titanic"]


MALFORMED = [
    # (parse, text, what the message must say besides the value)
    (hd.parse_model_handle, "google", "must have 2 parts owner/model-slug"),
    (hd.parse_model_handle, "google/gemma/pyTorch", "must have 2 parts owner/model-slug"),
    (hd.parse_model_handle, "Google/gemma", "owner = 'Google' is not a valid owner"),
    (hd.parse_model_handle, "google/Gemma_2", "model slug = 'Gemma_2' is not a valid slug"),
    (hd.parse_model_instance_handle, "me/gemma/transformers", "must have 4 or 5 parts"),
    (hd.parse_model_instance_handle, "me/gemma/transformers//1", "must have 4 or 5 parts"),
    (hd.parse_model_instance_handle, "me/gemma/transformers/base/1/2", "must have 4 or 5 parts"),
    (hd.parse_model_instance_handle, "me/gemma/peft/base/1", "framework 'peft' is not one Kaggle knows"),
    (hd.parse_model_instance_handle, "me/gemma/transformers/base/latest", "version 'latest' must be an integer >= 1"),
    (hd.parse_model_instance_handle, "me/gemma/transformers/base/0", "version '0' must be an integer >= 1"),
    (hd.parse_model_instance_handle, "me/Gemma/transformers/base", "model slug = 'Gemma' is not a valid slug"),
    (hd.parse_model_instance_handle, "me/gemma/transformers/Base LoRA", "instance slug = 'Base LoRA' is not a valid instance slug"),
    (hd.parse_dataset_handle, "some-data", "must be 'owner/dataset-slug' or 'owner/dataset-slug/VERSION'"),
    (hd.parse_dataset_handle, "a/b/c/d", "must be 'owner/dataset-slug' or 'owner/dataset-slug/VERSION'"),
    (hd.parse_dataset_handle, "/some-data", "must be 'owner/dataset-slug'"),
    (hd.parse_dataset_handle, "someone/some-data/latest", "third part 'latest' must be a version number >= 1"),
    (hd.parse_dataset_handle, "someone/Some_Data", "slug = 'Some_Data' is not a valid slug"),
    (hd.parse_dataset_handle, "some one/some-data", "owner = 'some one' is not a valid owner"),
    (hd.parse_kernel_handle, "feature-prep", "must be 'owner/kernel-slug' or 'owner/kernel-slug/VERSION'"),
    (hd.parse_kernel_handle, "someone/prep", "slug 'prep' must be at least 5 characters"),
    (hd.parse_kernel_handle, "someone/feature-prep/v2", "third part 'v2' must be a version number >= 1"),
    (hd.parse_kernel_handle, "someone/Feature_Prep", "slug = 'Feature_Prep' is not a valid slug"),
    (hd.parse_competition_handle, "Titanic", "competition handle = 'Titanic' is not a valid slug"),
    (hd.parse_competition_handle, "c/titanic", "is not a valid slug"),
    (hd.parse_competition_handle, "titanic-", "is not a valid slug"),
]


@pytest.mark.parametrize("parse, text, expect", MALFORMED, ids=[f"{p.__name__}:{t}" for p, t, _ in MALFORMED])
def test_malformed_handles_are_refused_naming_the_value(parse, text, expect):
    with pytest.raises(KitError) as err:
        parse(text)
    message = str(err.value)
    assert expect in message, message
    assert repr(text) in message, message


@pytest.mark.parametrize("parse", [hd.parse_model_handle, hd.parse_model_instance_handle, hd.parse_dataset_handle,
                                   hd.parse_kernel_handle, hd.parse_competition_handle])
@pytest.mark.parametrize("value", [None, 3, ""])
def test_non_strings_and_empty_text_are_refused(parse, value):
    with pytest.raises(KitError) as err:
        parse(value)
    assert repr(value) in str(err.value)


def test_where_prefixes_every_message_and_problems_are_listed_together():
    with pytest.raises(KitError) as err:
        hd.parse_model_instance_handle("Me/Gemma/peft/base/latest", where="kit.toml [kernels.x]")
    problems = str(err.value).splitlines()
    assert len(problems) == 4 and all(p.startswith("kit.toml [kernels.x]: ") for p in problems), problems
    handle, problems = hd.check_dataset("someone/Some_Data", "f.json", named="dataset source 'someone/Some_Data'")
    assert handle == hd.DatasetHandle("someone", "Some_Data") and len(problems) == 1  # shape fine: the handle comes back
    assert problems[0].startswith("f.json: dataset source 'someone/Some_Data' slug = 'Some_Data'")
    assert "(e.g. 'some-data')" in problems[0]


def test_strict_false_checks_only_the_shape():
    h = hd.parse_model_instance_handle("Me/Gemma_X/peft/Base LoRA/2", strict=False)
    assert h == hd.ModelInstanceHandle("Me", "Gemma_X", "peft", "Base LoRA", 2)  # unknown framework kept as written
    assert hd.parse_dataset_handle("Some One/Data_Set", strict=False).slug == "Data_Set"
    assert hd.parse_kernel_handle("me/abc", strict=False).slug == "abc"
    with pytest.raises(KitError, match="version 'latest' must be an integer"):
        hd.parse_model_instance_handle("me/gemma/transformers/base/latest", strict=False)
    with pytest.raises(KitError, match="must have 4 or 5 parts"):
        hd.parse_model_instance_handle("me/gemma", strict=False)
    with pytest.raises(KitError, match="one competition slug"):
        hd.parse_competition_handle("c/titanic", strict=False)


def test_metadata_builds_handles_and_reexports_the_rules():
    from kaggle_kit.publish import metadata as md

    assert md.SLUG_RE is hd.SLUG_RE and md.FRAMEWORKS is hd.FRAMEWORKS and md.canonical_framework("PyTorch") == "pyTorch"
    assert md.slugify("My Inference Notebook") == "my-inference-notebook"


@pytest.mark.parametrize("slug_len, ok", [(4, False), (5, True), (49, True), (50, True), (51, False)])
def test_kernel_slugs_are_5_to_50_characters(slug_len, ok):
    """Kaggle refuses kernel slugs/titles over 50 characters (Kaggle/kaggle-cli PR #179); the client
    refuses under 5 (`validate_kernel_string`)."""
    slug = ("a" * slug_len)
    _, problems = hd.check_kernel(f"me/{slug}", versioned=False)
    assert (problems == []) == ok, problems
    if not ok:
        assert f"{slug!r}" in problems[0] and ("at most 50" in problems[0] or "at least 5" in problems[0])


@pytest.mark.parametrize("prefix, name, expect", [
    ("llm-classification-finetuning", "inference", "llm-classification-finetuning-inference"),
    ("wsdm-cup-multilingual-chatbot-arena", "inference-abcd", "wsdm-cup-multilingual-chatbot-arena-inference-abcd"),  # 50
    ("wsdm-cup-multilingual-chatbot-arena", "inference-abcde", "wsdm-cup-multilingual-chatbot-inference-abcde"),  # 51 -> 45
    ("wsdm-cup-multilingual-chatbot-arena", "My_Kernel", "wsdm-cup-multilingual-chatbot-arena-my-kernel"),
])
def test_fit_slug_keeps_the_name_and_cuts_whole_words(prefix, name, expect):
    assert hd.fit_slug(prefix, name) == expect


def test_fit_slug_of_an_over_long_name_is_cut_with_a_digest():
    a, b = hd.fit_slug("wsdm-cup", "x" * 60 + "-a"), hd.fit_slug("wsdm-cup", "x" * 60 + "-b")
    assert a != b and len(a) == len(b) == 50 and hd.SLUG_RE.match(a)
    assert hd.fit_slug("wsdm-cup", "x" * 60 + "-a") == a
