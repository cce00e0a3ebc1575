"""The people and teams a simulated identity provider provisions: invented, plausible and reproducible from a seed."""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

_FIRST_NAMES = (
    "Amara", "Bruno", "Chiara", "Dmitri", "Elena", "Farid", "Greta", "Hiro", "Ines", "Jonas", "Kavya", "Liam",
    "Maya", "Nikolai", "Olga", "Pablo", "Quinn", "Rosa", "Samir", "Tessa", "Umar", "Vera", "Wen", "Ximena",
    "Yusuf", "Zoe", "Aiko", "Bjorn", "Carmen", "Desmond", "Freya", "Gustavo", "Hana", "Idris", "Leila", "Mateo",
)  # fmt: skip
_LAST_NAMES = (
    "Abara", "Bergstrom", "Castillo", "Dubois", "Eriksen", "Fontaine", "Galloway", "Haddad", "Iwasaki", "Jovanovic",
    "Kowalski", "Lindqvist", "Moreau", "Nakamura", "Okafor", "Petrov", "Quintero", "Rahman", "Schultz", "Tanaka",
    "Uribe", "Varga", "Whitfield", "Xu", "Yilmaz", "Zeller", "Alvarez", "Brennan", "Chandra", "Delgado",
)  # fmt: skip
# Departments, each with the job titles people in it hold; groups are named after departments.
_DEPARTMENTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Engineering", ("Software Engineer", "Site Reliability Engineer", "Engineering Manager", "QA Engineer")),
    ("Sales", ("Account Executive", "Sales Engineer", "Sales Development Representative")),
    ("Marketing", ("Product Marketing Manager", "Content Strategist", "Growth Marketer")),
    ("Finance", ("Financial Analyst", "Controller", "Accountant")),
    ("People", ("People Partner", "Recruiter", "Learning Specialist")),
    ("Support", ("Support Engineer", "Customer Success Manager")),
    ("Product", ("Product Manager", "Product Analyst")),
    ("Design", ("Product Designer", "UX Researcher")),
    ("Legal", ("Counsel", "Paralegal")),
    ("Operations", ("Operations Manager", "IT Administrator", "Office Coordinator")),
)


@dataclass(frozen=True)
class Person:
    index: int
    first_name: str
    last_name: str
    user_name: str
    department: str
    title: str
    employee_number: str
    key: int  # random bits an identity provider turns into its own kind of id

    @property
    def display_name(self) -> str:
        return f"{self.first_name} {self.last_name}"


@dataclass(frozen=True)
class Team:
    index: int
    name: str
    key: int


@dataclass(frozen=True)
class Roster:
    """Everything one run provisions, and which of it the session later changes."""

    tag: str
    domain: str
    people: tuple[Person, ...]
    teams: tuple[Team, ...]
    memberships: tuple[tuple[int, tuple[int, ...]], ...]  # (team index, indexes of its people)
    managers: tuple[int | None, ...]  # by person: the first person of their department, if someone else
    probe_key: int  # for the random values a connection test sends

    @property
    def test_person(self) -> Person:
        """The user a connection test creates and deletes again."""
        return Person(
            index=len(self.people),
            first_name="Connection",
            last_name="Test",
            user_name=f"connection.test@{self.domain}",
            department="Operations",
            title="Test User",
            employee_number="0",
            key=self.probe_key,
        )

    @property
    def test_team(self) -> Team:
        return Team(index=len(self.teams), name=f"Connection Test {self.tag}", key=self.probe_key)

    def updated(self, person: Person) -> Person | None:
        """Every fifth person is promoted; every other promoted person also changes family name."""
        if person.index % 5:
            return None
        title = person.title if person.title.startswith("Senior ") else f"Senior {person.title}"
        last_name = f"{person.last_name}-{_LAST_NAMES[person.key % len(_LAST_NAMES)]}"
        renamed = person.index % 10 == 5
        return replace(person, title=title, last_name=last_name if renamed else person.last_name)

    def renamed(self, team: Team) -> str:
        return f"{team.name} Team"

    @property
    def deactivated(self) -> Person:
        return self.people[-1]

    @property
    def removed(self) -> Person | None:
        return self.people[-2] if len(self.people) > 1 else None

    @property
    def unassigned(self) -> tuple[Team, Person] | None:
        """The one membership the session takes away: the first person leaves the first team."""
        return (self.teams[0], self.people[0]) if self.teams else None


def build_roster(*, seed: int, users: int, groups: int) -> Roster:
    rng = random.Random(seed)
    tag = f"{rng.getrandbits(24):06x}"
    domain = f"sim-{tag}.example.com"
    people: list[Person] = []
    taken: set[str] = set()
    for index in range(users):
        first, last = rng.choice(_FIRST_NAMES), rng.choice(_LAST_NAMES)
        local = f"{first}.{last}".lower()
        suffix = 2
        while local in taken:
            local, suffix = f"{first}.{last}{suffix}".lower(), suffix + 1
        taken.add(local)
        # A person's department is the one their first team is named after.
        department, titles = _DEPARTMENTS[(index % groups if groups else index) % len(_DEPARTMENTS)]
        people.append(
            Person(
                index=index,
                first_name=first,
                last_name=last,
                user_name=f"{local}@{domain}",
                department=department,
                title=rng.choice(titles),
                employee_number=str(1000 + index),
                key=rng.getrandbits(128),
            )
        )
    teams = tuple(Team(index=j, name=_team_name(j), key=rng.getrandbits(128)) for j in range(groups))
    members: dict[int, list[int]] = {j: [] for j in range(groups)}
    for person in people:
        if groups:
            members[person.index % groups].append(person.index)
            if groups > 1 and person.index % 4 == 0:  # some people also work with the next team
                members[(person.index + 1) % groups].append(person.index)
    memberships = tuple((j, tuple(sorted(m))) for j, m in members.items())
    heads: dict[str, int] = {}
    for person in people:
        heads.setdefault(person.department, person.index)
    managers = tuple(heads[p.department] if heads[p.department] != p.index else None for p in people)
    return Roster(
        tag=tag,
        domain=domain,
        people=tuple(people),
        teams=teams,
        memberships=memberships,
        managers=managers,
        probe_key=rng.getrandbits(128),
    )


def _team_name(index: int) -> str:
    name = _DEPARTMENTS[index % len(_DEPARTMENTS)][0]
    return name if index < len(_DEPARTMENTS) else f"{name} {index // len(_DEPARTMENTS) + 1}"
