"""Notes that name a patient's relatives, household members, employer or school, the way
clinicians and registration staff write them: many phrasings, real-looking names (O'Brien,
McDonald, Lopez-Ruiz), given names alone, the registration system's "DOE, JANE (sister)".

``relative_notes(n, seed)`` yields ``RelativeNote``s: the text and the names in it that Safe
Harbor removes (each must be covered by a detected span). Synthetic patients elsewhere carry
digits in their surnames; these names must look like names, because the detectors read shape.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass


def _words(text: str) -> list[str]:
    return text.split()


GIVEN = tuple(
    _words(
        "Aurelio Mara Elena Ines Mateo Priya Tomasz Keiko Declan Siobhan Rafael Amara Yusuf Lucia"
        " Bernadette Obinna Freya Casimir Leontyne Dmitri Rosalind Thaddeus Ingrid Marisol Kwame"
        " Hollis Wren Ezekiel Saoirse Anselm"
    )
)
FAMILY = tuple(
    _words(
        "Quillfeather Vintner O'Brien McDonald Lopez-Ruiz Castellano Okonkwo Haverford Lindqvist"
        " Brennan Marchetti Abernathy Nakagawa Szymanski Delacroix Whitcombe Ferreira MacAllister"
        " Oyelaran Trevelyan Kowalczyk Ashdown Villanueva Pemberton Halvorsen D'Angelo"
    )
)
RELATIONS = tuple(
    _words(
        "spouse wife husband partner mother father son daughter brother sister guardian"
        " grandmother grandson niece nephew aunt uncle roommate caregiver stepfather"
    )
)
ORGANISATIONS = (
    "Acme Logistics",
    "Bank of America",
    "Riverside Auto Parts",
    "Quillfeather Roofing",
    "Northfield Public Schools",
    "Hartwell & Sons Construction",
    "Greenleaf Dental Group",
    "Pemberton Freight Lines",
)
SCHOOLS = (
    "Lincoln Elementary School",
    "Westbrook Middle School",
    "Saint Brigid Academy",
    "Oakridge High School",
    "Marlow Community College",
)

# {g} given, {f} family, {r} relation, {R} relation capitalised; {G}/{F} in capitals.
TEMPLATES_FULL = (
    "Spouse {g} {f} requests callback re: discharge time.",
    "Emergency contact: {g} {f} ({r}).",
    "{R} {g} {f} at bedside, updated on plan of care.",
    "His {r}, {g} {f}, will drive him home after the procedure.",
    "{R}'s name is {g} {f}; she prefers calls after 5 pm.",
    "{F}, {G} ({r}) listed as contact in registration.",
    "Next of kin: {f}, {g}",
    "Discussed plan with {r} {g} {f} by phone.",
    "{g} {f} (patient's {r}) brought home medications.",
    "Guardian {g} {f} signed the consent form.",
    "NOK: {G} {F}, {r}.",
    "Information obtained from the {r}, {g} {f}.",
    "Pt lives with {r} {g} {f} and two cats.",
    "{R} {g} {f} is the health care proxy.",
    "Left voicemail for {r} {g} {f} regarding follow-up.",
    "Contact: {g} {f} - {r} - prefers text messages.",
    "Spouse/partner: {g} {f}",
    "{R}, {g} {f}, consents to the transfusion.",
    "Accompanied by her {r}, {g} {f}.",
    "{R} is {g} {f}, who manages her medications.",
    "Patient's {r} {g} {f} is the primary caregiver.",
    "Per {r} ({g} {f}), pt fell at home twice this week.",
    "SPOUSE: {G} {F}",
)
TEMPLATES_GIVEN = (
    "Pt lives with her {r} {g}.",
    "Called {r} {g} to update on results.",
    "{R} {g} will pick up the prescriptions.",
    "Her {r}, {g}, was present for the discussion.",
    "{R} ({g}) called the nurse station twice overnight.",
    "Accompanied by her {r}, {g}.",
)
TEMPLATES_ORG = (
    "Employer: {o}.",
    "Works at {o} as a forklift operator.",
    "Employed by {o} since 2019; on light duty.",
    "Work: {o}, night shift.",
    "Pt works for {o} in the warehouse.",
    "Retired from {o} in 2015.",
)
TEMPLATES_SCHOOL = (
    "Son attends {s}; school nurse to be notified.",
    "Daughter is enrolled at {s}, 4th grade.",
    "School: {s}.",
)


@dataclass(frozen=True)
class RelativeNote:
    text: str
    names: tuple[str, ...]  # what must be removed: each name word or organisation


def relative_notes(count: int, seed: int = 18) -> Iterator[RelativeNote]:
    rng = random.Random(seed)
    kinds = [TEMPLATES_FULL] * 6 + [TEMPLATES_GIVEN] * 2 + [TEMPLATES_ORG] + [TEMPLATES_SCHOOL]
    for _ in range(count):
        templates = rng.choice(kinds)
        template = rng.choice(templates)
        given, family, relation = rng.choice(GIVEN), rng.choice(FAMILY), rng.choice(RELATIONS)
        if templates is TEMPLATES_ORG:
            organisation = rng.choice(ORGANISATIONS)
            yield RelativeNote(template.format(o=organisation), (organisation,))
            continue
        if templates is TEMPLATES_SCHOOL:
            school = rng.choice(SCHOOLS)
            yield RelativeNote(template.format(s=school), (school,))
            continue
        text = template.format(
            g=given,
            f=family,
            r=relation,
            R=relation.capitalize(),
            G=given.upper(),
            F=family.upper(),
        )
        names = (given,) if templates is TEMPLATES_GIVEN else (given, family)
        if "{G}" in template:
            names = (given.upper(), family.upper())
        yield RelativeNote(text, names)
