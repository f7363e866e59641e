"""Free text partners will read loses the order's patient's names, MRN and birth date."""

from __future__ import annotations

from datetime import date

from hypothesis import given
from hypothesis import strategies as st

from gateway.domain.patient import PatientIdentity
from gateway.domain.redaction import redact_patient

PATIENT = PatientIdentity(
    mrn="MRN-SYN-0007",
    family_name="Zz-Testpatient O'Hara",
    given_name="Gamma",
    birth_date=date(1975, 3, 9),
)


def test_names_mrn_and_birth_date_are_replaced_whole_and_in_any_case() -> None:
    text = "GAMMA zz-testpatient o'hara, mrn-syn-0007, DOB 09/03/1975 (1975-03-09, 19750309)"
    assert redact_patient(text, PATIENT) == ("[patient] [patient], [MRN], DOB [DOB] ([DOB], [DOB])")


def test_each_part_of_a_double_name_is_a_name_too() -> None:
    assert redact_patient("Mrs Testpatient and O'Hara", PATIENT) == "Mrs [patient] and [patient]"


def test_words_that_only_contain_a_name_stay() -> None:
    text = "Gammaglobulin given; MRN-SYN-00071 is another patient; born 1975"
    assert redact_patient(text, PATIENT) == text


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=80))
def test_text_without_the_patients_identifiers_is_unchanged(text: str) -> None:
    needles = ["gamma", "zz", "testpatient", "o'hara", "hara", "mrn-syn-0007", "1975", "09", "03"]
    if not any(needle in text.lower() for needle in needles):
        assert redact_patient(text, PATIENT) == text
