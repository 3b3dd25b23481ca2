"""Where the patient is in an X12 5010 transaction: by transaction set, loop and segment.

The hierarchy (HL) and the entity qualifier of each NM1 say whose loop a segment is in: the
subscriber (NM1*IL), the patient or dependent (NM1*QC, *03, corrected *74), or a provider,
payer or facility (NM1*85, *82, *77, *PR, ... — not patient PHI). Segments after a patient's
NM1 (N3/N4 address, DMG birth date, REF identifiers, PER contacts) belong to that patient
until the next NM1, HL or claim. The claim itself (837 CLM, 835 CLP, 834 INS) carries the
patient control number, dates of service and admission, medical record numbers and free text.
Each field found is named by loop and element ("2010BA NM1-03"), never by value.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.formats.x12.envelope import Interchange, Segment
from gateway.model import Category

# NM101 entity identifiers of people whose data is PHI: the subscriber, the patient or
# dependent, a corrected name, and the people and places around them that Safe Harbor
# removes too (relatives, household, employer, guardians, the member's mailing address).
PATIENT_ENTITIES = frozenset(
    {
        "IL",  # insured or subscriber
        "QC",  # patient
        "03",  # dependent
        "74",  # corrected insured
        "70",  # prior incorrect insured (834)
        "31",  # postal mailing address (834)
        "36",  # employer
        "QD",  # responsible party
        "GD",  # guardian
        "S3",  # custodial parent
        "E1",  # person legally responsible
        "EXS",  # ex-spouse
        "GB",  # other insured
        "J6",  # power of attorney
        "LR",  # legal representative
        "M8",  # school
    }
)
# NM108 identification qualifiers -> category of NM109.
_ID_QUALIFIERS = {
    "MI": Category.HEALTH_PLAN_ID,  # member identification number
    "34": Category.SSN,
    "II": Category.OTHER_ID,  # standard unique health identifier
    "ZZ": Category.OTHER_ID,
    "24": Category.OTHER_ID,
    "N": Category.OTHER_ID,
}
# REF01 qualifiers inside a patient's loop or a claim -> category of REF02.
_REF_QUALIFIERS = {
    "SY": Category.SSN,
    "EA": Category.MRN,
    "1W": Category.HEALTH_PLAN_ID,
    "0F": Category.HEALTH_PLAN_ID,  # subscriber number (834)
    "23": Category.ACCOUNT_NUMBER,  # client number
    "6O": Category.OTHER_ID,
    "IG": Category.HEALTH_PLAN_ID,  # insurance policy number
    "HJ": Category.HEALTH_PLAN_ID,  # identity card number
    "Q4": Category.OTHER_ID,  # prior identifier number
    "ABB": Category.OTHER_ID,  # personal id number
    "EJ": Category.ACCOUNT_NUMBER,  # patient account number (276/277)
    "F6": Category.HEALTH_PLAN_ID,  # Medicare number
    "NQ": Category.HEALTH_PLAN_ID,  # Medicaid number
    "3H": Category.OTHER_ID,  # case number
}
# Date qualifiers of DTP/DTM in a claim or a patient's loop that are dates of the individual.
_PERSONAL_DATE_QUALIFIERS = frozenset(
    {
        "472",  # service
        "435",  # admission
        "096",  # discharge
        "434",  # statement
        "431",  # onset of current illness
        "439",  # accident
        "484",  # last menstrual period
        "454",  # initial treatment
        "304",  # latest visit
        "453",  # acute manifestation
        "360",  # disability from
        "361",  # disability to
        "297",  # initial disability
        "296",  # return to work
        "232",  # claim statement period start (835 DTM)
        "233",  # claim statement period end
        "050",  # received
        "036",  # expiration
        "102",  # issue
        "291",  # plan (271)
        "307",  # eligibility
        "356",  # eligibility begin
        "357",  # eligibility end
        "348",  # benefit begin
        "349",  # benefit end
        "303",  # maintenance effective
        "336",  # employment begin
        "337",  # employment end
        "338",  # Medicare begin
        "339",  # Medicare end
        "340",  # COBRA begin
        "341",  # COBRA end
        "286",  # retirement
        "300",  # enrollment signature
        "301",  # coverage begin (834)
        "343",  # premium paid to date end
        "543",  # last premium paid
    }
)
# Loop names of a patient's NM1 by transaction set and HL level code (HL03).
_PARTY_LOOPS = {
    ("837", "22"): "2010BA",
    ("837", "23"): "2010CA",
    ("270", "22"): "2100C",
    ("271", "22"): "2100C",
    ("270", "23"): "2100D",
    ("271", "23"): "2100D",
    ("276", "22"): "2100D",
    ("277", "22"): "2100D",
    ("276", "23"): "2100E",
    ("277", "23"): "2100E",
    ("278", "22"): "2010C",
    ("278", "23"): "2010D",
}
# The hierarchical level of a subscriber (HL03 22) or patient/dependent (23), by transaction
# set: its segments before the person's NM1 (a 276's DMG) are that person's too.
_LEVEL_LOOPS = {
    ("837", "22"): "2000B",
    ("837", "23"): "2000C",
    ("270", "22"): "2000C",
    ("271", "22"): "2000C",
    ("270", "23"): "2000D",
    ("271", "23"): "2000D",
    ("276", "22"): "2000D",
    ("277", "22"): "2000D",
    ("276", "23"): "2000E",
    ("277", "23"): "2000E",
    ("278", "22"): "2000C",
    ("278", "23"): "2000D",
}
# Segments that open the claim (or member) loop, by transaction set.
_CLAIM_LOOPS = {
    "837": {"CLM": "2300", "LX": "2400"},
    "835": {"CLP": "2100", "SVC": "2110"},
    "834": {"INS": "2000"},
    "277": {"TRN": "2200D"},
    "276": {"TRN": "2200D"},
    "278": {"UM": "2000E"},
}
# Claim loops a transaction opens only at a person's level: the TRN of a 276/277 traces a
# claim in a subscriber or patient level (2200D/E), a batch at the levels above (277CA).
_PERSON_LEVELS = frozenset({"22", "23"})
_TRACED = frozenset({"276", "277"})


@dataclass(slots=True)  # not frozen: a batch makes tens of thousands, and frozen costs
class Field:
    """One identifying element: where it is (segment index, element, component) and what."""

    segment: int  # index in Interchange.segments
    element: int
    category: Category
    location: str  # "2010BA NM1-03"
    free_text: bool = False  # read by the text detectors, not identifying by its place


# The tags whose segments can open a loop or hold the patient: the others (service lines,
# codes, amounts) are passed over without being split.
_READ_TAGS = frozenset(
    {"ST", "HL", "NM1", "N1", "N3", "N4", "DMG", "REF", "DTP", "DTM", "PER", "PAT", "NTE"}
    | {"K3", "MSG", "INS"}
    | {tag for loops in _CLAIM_LOOPS.values() for tag in loops}
)
_NO_CLAIMS: dict[str, str] = {}
# Locations made so far, by loop, tag and element number.
_Locations = dict[str, dict[str, dict[int, str]]]
_FREE_TEXT = frozenset({"NTE", "K3", "MSG"})
_COMMUNICATION = {"EM": Category.EMAIL, "FX": Category.FAX}


def patient_fields(interchange: Interchange) -> list[Field]:
    """Every element of an interchange that identifies a patient or subscriber, in order."""
    found: list[Field] = []
    locations: _Locations = {}  # a batch repeats its places
    transaction = ""
    claims = _NO_CLAIMS  # the claim loops the transaction set opens, by tag
    level = ""  # HL03 of the current hierarchical level
    party = ""  # loop of the patient NM1 whose segments follow; "" outside one
    claim = ""  # loop of the claim the segments are in
    for index, segment in enumerate(interchange.segments):
        tag = segment.tag
        if tag not in _READ_TAGS:
            continue
        if tag == "ST":
            transaction, level, party, claim = segment.element(1), "", "", ""
            claims = _CLAIM_LOOPS.get(transaction, _NO_CLAIMS)
            continue
        if tag == "HL":
            level, claim = segment.element(3), ""
            party = _LEVEL_LOOPS.get((transaction, level), "")
            continue
        opened = claims.get(tag)
        if opened and tag == "TRN" and transaction in _TRACED and level not in _PERSON_LEVELS:
            opened = None
        if opened:
            claim, party = opened, ""
            _claim_fields(found, locations, index, segment, opened)
            continue
        if tag == "N1":
            if transaction == "834" and segment.element(1).upper() == "P5" and segment.element(2):
                # The plan sponsor of an enrollment: the members' employer.
                found.append(Field(index, 2, Category.NAME, "1000A N1-02"))
            continue
        if tag == "NM1":
            entity = segment.element(1).upper()
            if entity in PATIENT_ENTITIES:
                party = _party_loop(transaction, level, entity, claim)
                _nm1_fields(found, locations, index, segment, party)
            else:
                party = ""
            continue
        where = party or claim
        if not where:
            if tag in _FREE_TEXT:
                found.append(
                    Field(index, 2 if tag == "NTE" else 1, Category.NAME, f"{tag}-01", True)
                )
            continue
        _loop_fields(found, locations, index, segment, where, bool(party))
    return found


def _party_loop(transaction: str, level: str, entity: str, claim: str) -> str:
    named = _PARTY_LOOPS.get((transaction, level))
    if named:
        return named
    if transaction == "835":
        return "2100"
    if transaction == "834":
        return "2100A"
    return f"{claim or 'NM1'}-{entity}"


def _at(locations: _Locations, loop: str, tag: str, element: int) -> str:
    """The location "2010BA NM1-03", made once per payload (no key is built per field)."""
    in_loop = locations.get(loop)
    if in_loop is None:
        in_loop = locations[loop] = {}
    of_tag = in_loop.get(tag)
    if of_tag is None:
        of_tag = in_loop[tag] = {}
    location = of_tag.get(element)
    if location is None:
        location = of_tag[element] = f"{loop} {tag}-{element:02d}"
    return location


def _nm1_fields(
    found: list[Field],
    locations: _Locations,
    index: int,
    segment: Segment,
    loop: str,
) -> None:
    for element in (3, 4, 5, 7):  # last, first, middle names, suffix
        if segment.element(element):
            found.append(Field(index, element, Category.NAME, _at(locations, loop, "NM1", element)))
    if segment.element(9):
        category = _ID_QUALIFIERS.get(segment.element(8).upper(), Category.OTHER_ID)
        found.append(Field(index, 9, category, _at(locations, loop, "NM1", 9)))


def _claim_fields(
    found: list[Field],
    locations: _Locations,
    index: int,
    segment: Segment,
    loop: str,
) -> None:
    tag = segment.tag
    if tag in ("CLM", "CLP") and segment.element(1):
        found.append(Field(index, 1, Category.ACCOUNT_NUMBER, _at(locations, loop, tag, 1)))
    if tag == "CLP" and segment.element(7):  # payer claim control number
        found.append(Field(index, 7, Category.OTHER_ID, _at(locations, loop, tag, 7)))
    if tag == "TRN" and segment.element(2):
        found.append(Field(index, 2, Category.ACCOUNT_NUMBER, _at(locations, loop, tag, 2)))


def _loop_fields(  # noqa: PLR0917 - one call site, in the walk
    found: list[Field],
    locations: _Locations,
    index: int,
    segment: Segment,
    loop: str,
    in_party: bool,
) -> None:
    tag = segment.tag
    if tag in {"N3", "N4"}:
        # Street lines; city and postal code (the state is not PHI).
        for element in (1, 2) if tag == "N3" else (1, 3):
            if segment.element(element):
                location = _at(locations, loop, tag, element)
                found.append(Field(index, element, Category.GEOGRAPHY, location))
    elif tag == "DMG":
        if segment.element(2):
            found.append(Field(index, 2, Category.DATE, _at(locations, loop, tag, 2)))
    elif tag == "REF":
        if segment.element(2):
            category = _REF_QUALIFIERS.get(segment.element(1).upper())
            if category is not None or in_party:
                location = _at(locations, loop, tag, 2)
                found.append(Field(index, 2, category or Category.OTHER_ID, location))
    elif tag in {"DTP", "DTM"}:
        element = 3 if tag == "DTP" else 2
        if segment.element(element) and (
            in_party or segment.element(1).upper() in _PERSONAL_DATE_QUALIFIERS
        ):
            found.append(Field(index, element, Category.DATE, _at(locations, loop, tag, element)))
    elif tag == "PER":
        for element in (4, 6, 8):  # communication numbers
            if segment.element(element):
                qualifier = segment.element(element - 1).upper()
                category = _COMMUNICATION.get(qualifier, Category.PHONE)
                found.append(Field(index, element, category, _at(locations, loop, tag, element)))
        if in_party and segment.element(2):
            found.append(Field(index, 2, Category.NAME, _at(locations, loop, tag, 2)))
    elif tag == "PAT":
        if segment.element(6):  # date of death
            found.append(Field(index, 6, Category.DATE, _at(locations, loop, tag, 6)))
    elif tag in _FREE_TEXT:
        element = 2 if tag == "NTE" else 1
        if segment.element(element):
            location = _at(locations, loop, tag, element)
            found.append(Field(index, element, Category.NAME, location, True))
    elif tag == "INS" and in_party and segment.element(17):
        found.append(Field(index, 17, Category.OTHER_ID, _at(locations, loop, tag, 17)))


@dataclass(slots=True)
class Places:
    """What a payload's interchanges hold, summed up for inspection: each identifying place
    once (a batch repeats them thousands of times), the free text of each place, and the
    transaction set ids in the order first seen."""

    fields: dict[tuple[Category, str], None]
    notes: dict[str, list[str]]
    transactions: list[str]


def places(interchanges: list[Interchange]) -> Places:
    fields: dict[tuple[Category, str], None] = {}
    notes: dict[str, list[str]] = {}
    transactions: list[str] = []
    for interchange in interchanges:
        for kind in interchange.transactions():
            if kind not in transactions:
                transactions.append(kind)
        segments = interchange.segments
        for found in patient_fields(interchange):
            if found.free_text:
                value = segments[found.segment].element(found.element)
                notes.setdefault(found.location, []).append(value)
            else:
                fields[found.category, found.location] = None
    return Places(fields, notes, transactions)
