"""The README's fleet file reference is the one the settings models generate."""

from __future__ import annotations

from pathlib import Path

from supervisor import reference

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_reference_matches_the_settings_models() -> None:
    text = README.read_text()
    start = text.index(reference.BEGIN)
    end = text.index(reference.END) + len(reference.END)
    assert text[start:end] == reference.render(), "run: python -m supervisor.reference"


def test_every_settings_field_is_documented() -> None:
    for title, model in reference.SECTIONS:
        for name, field in model.model_fields.items():
            assert field.description, f"{title}.{name} has no description"
