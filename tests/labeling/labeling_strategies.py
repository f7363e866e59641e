"""Hypothesis strategies producing valid typed values for every data structure."""

from __future__ import annotations

import string
from datetime import date, datetime

from hypothesis import strategies as st

from labeling import (
    CoiIdentifier,
    CollectionDate,
    CollectionDateTime,
    DataStructure,
    DonationId,
    ExpirationDate,
    ExpirationDateTime,
    FlexibleDateTime,
    PatientBirthDate,
    PatientId,
    ProcessingFacility,
    ProductCode,
    ProductDivisions,
)
from labeling.structures import FIN_FIRST_CHARACTERS

UPPER = string.ascii_uppercase
fins = st.builds(
    lambda a, n: f"{a}{n:04d}", st.sampled_from(FIN_FIRST_CHARACTERS), st.integers(0, 9999)
)
label_dates = st.dates(date(2000, 1, 1), date(2999, 12, 31))
minutes = st.datetimes(datetime(2000, 1, 1), datetime(2999, 12, 31, 23, 59)).map(
    lambda d: d.replace(second=0, microsecond=0)
)
divisions = st.one_of(
    st.just("00"),
    st.builds(
        lambda d, s: d + s, st.sampled_from(UPPER), st.sampled_from(string.ascii_lowercase + "0")
    ),
)
locations = st.integers(0, 99).map(lambda n: f"{n:02d}")


def _plain_din(fin: str, year: int, seq: int, flags: int) -> DonationId:
    return DonationId(fin, year, seq, f"{flags:02d}")


donation_ids = st.one_of(
    st.builds(_plain_din, fins, st.integers(0, 99), st.integers(0, 999999), st.integers(0, 59)),
    st.builds(
        lambda f, y, s: DonationId(f, y, s).with_check_flags(),
        fins,
        st.integers(0, 99),
        st.integers(0, 999999),
    ),
)
product_codes = st.builds(
    ProductCode,
    st.builds(lambda a, n: f"{a}{n:04d}", st.sampled_from(UPPER), st.integers(0, 9999)),
    st.sampled_from(UPPER + string.digits),
    divisions,
)
cois = st.builds(
    CoiIdentifier, fins, st.integers(0, 99), st.text(UPPER + string.digits, min_size=6, max_size=6)
)

ANY_STRUCTURE: dict[str, st.SearchStrategy[DataStructure]] = {
    "001": donation_ids,
    "003": product_codes,
    "004": st.builds(ExpirationDate, label_dates),
    "005": st.builds(ExpirationDateTime, minutes),
    "006": st.builds(CollectionDate, label_dates),
    "007": st.builds(CollectionDateTime, minutes),
    "024": st.builds(PatientBirthDate, st.dates(date(1000, 1, 1), date(9999, 12, 31)), locations),
    "025": st.builds(
        PatientId,
        st.text(string.ascii_letters + string.digits, min_size=1, max_size=99),
        locations,
    ),
    "031": st.builds(
        FlexibleDateTime,
        st.datetimes(datetime(1000, 1, 1), datetime(9999, 12, 31)).map(
            lambda d: d.replace(second=0, microsecond=0)
        ),
        st.sampled_from([1, 2]),
        st.integers(0, 99),
        st.sampled_from(string.digits),
    ),
    "032": st.builds(ProductDivisions, st.integers(0, 999999)),
    "033": st.builds(ProcessingFacility, fins, st.integers(0, 999999).map(lambda n: f"{n:06d}")),
    "040": cois,
}
structures = st.one_of(*ANY_STRUCTURE.values())
