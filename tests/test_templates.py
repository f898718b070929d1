"""Every template has a documented context dataclass, uses exactly its fields, and renders."""

from __future__ import annotations

import dataclasses
import typing

import jinja2
import jinja2.meta
import pytest

from mailcircle.outbound.compose import CONTEXTS, Composer, default_templates_dir

SAMPLE_VALUES = {str: "Ann", int: 3, bool: True}


def sample(context_type: type) -> object:
    hints = typing.get_type_hints(context_type)
    return context_type(
        **{f.name: SAMPLE_VALUES[hints[f.name]] for f in dataclasses.fields(context_type)}
    )


def test_every_template_file_has_a_context() -> None:
    names = {path.stem for path in default_templates_dir().glob("*.txt")}
    assert names == set(CONTEXTS)


@pytest.mark.parametrize("name", sorted(CONTEXTS))
def test_a_template_uses_exactly_its_contexts_fields(name: str) -> None:
    context_type = CONTEXTS[name]
    assert context_type.__doc__ and context_type.__doc__.startswith(f"{name}.txt:")
    source = (default_templates_dir() / f"{name}.txt").read_text()
    used = jinja2.meta.find_undeclared_variables(jinja2.Environment().parse(source))
    assert used == {f.name for f in dataclasses.fields(context_type)}


@pytest.mark.parametrize("name", sorted(CONTEXTS))
def test_a_template_renders_a_subject_and_a_body(clock, name: str) -> None:  # noqa: ANN001
    subject, body = Composer(clock).render(name, sample(CONTEXTS[name]))
    assert subject and "\n" not in subject and "{{" not in subject
    assert body.strip() and "{{" not in body and "{%" not in body


def test_a_context_of_the_wrong_kind_is_refused(clock) -> None:  # noqa: ANN001
    with pytest.raises(Exception, match="template submission_ack needs"):
        Composer(clock).render("submission_ack", sample(CONTEXTS["not_a_member"]))
