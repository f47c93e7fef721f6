"""Realistic Segment traffic for the demo, the tests and the benchmarks, from a seed (same seed, same events).

The mix is a typical product's (48% track, 30% page, 10% identify, 6% screen, 5% group,
1% alias, 0.5% re-sent duplicates) and it exercises every resolution rule: companies that send group calls
(with their website), colleagues known only by a work email at the same domain, free-mail users who must stay
without an account, anonymous visitors who later sign up, alias chains (user-to-user with ``renames``) and
Segment Engage audiences and computed traits (``engage``).
"""

from __future__ import annotations

import gzip
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

COMPANIES = [
    ("acme", "Acme Corp", "acme.com"),
    ("globex", "Globex", "globex.io"),
    ("initech", "Initech", "initech.com"),
    ("umbrella", "Umbrella", "umbrella.co"),
    ("hooli", "Hooli", "hooli.xyz"),
    ("stark", "Stark Industries", "stark.dev"),
    ("wayne", "Wayne Enterprises", "wayne.example"),
    ("tyrell", "Tyrell", "tyrell.ai"),
]
FREE_MAIL = ["gmail.com", "yahoo.com", "outlook.com", "proton.me"]
PAGES = ["/", "/pricing", "/docs", "/blog", "/signup", "/dashboard", "/settings", "/billing"]
ACTIONS = ["Signed Up", "Project Created", "Invite Sent", "Report Viewed", "Export Downloaded", "Plan Upgraded"]
SCREENS = ["Home", "Projects", "Profile", "Notifications"]
AUDIENCES = ["trial_users", "power_users", "churn_risk"]
COMPUTED_TRAITS = ["total_projects", "last_plan", "favourite_pages"]
ENGAGE_SPACE = "spa_demo0001"


@dataclass
class _Person:
    user_id: str
    anonymous_id: str
    email: str
    company: tuple[str, str, str] | None  # None: a free-mail user
    sends_group: bool


class TrafficGenerator:
    """Yields Segment events (dicts) whose ``messageId``, ids and times are deterministic for a seed."""

    def __init__(
        self,
        seed: int = 7,
        people: int | None = None,
        start: datetime | None = None,
        engage: float = 0.0,
        renames: float = 0.0,
    ) -> None:
        """``engage`` is the share of events that are Segment Engage audience or computed-trait calls; ``renames``
        the share of alias calls that rename a known user (userId -> a new userId) rather than tie a visitor's
        anonymous id to the user. Half the renames pick a user renamed before, so user-to-user chains form."""
        self.random = random.Random(seed)
        self.engage = engage
        self.renames = renames
        self._renamed: list[_Person] = []
        self.start = start or datetime(2026, 11, 1, tzinfo=UTC)
        self.people_count = people
        self._people: list[_Person] = []
        self._sent: list[dict[str, Any]] = []

    def _person(self, index: int) -> _Person:
        rnd = self.random
        company = rnd.choice(COMPANIES) if rnd.random() < 0.75 else None
        domain = company[2] if company else rnd.choice(FREE_MAIL)
        return _Person(
            user_id=f"user-{index:07d}",
            anonymous_id=str(uuid.UUID(int=rnd.getrandbits(128), version=4)),
            email=f"person{index}@{domain}",
            company=company,
            sends_group=company is not None and rnd.random() < 0.6,
        )

    def _message_id(self) -> str:
        return str(uuid.UUID(int=self.random.getrandbits(128), version=4))

    def _time(self, offset_seconds: float) -> str:
        moment = self.start + timedelta(seconds=offset_seconds)
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"

    def events(self, count: int) -> Iterator[dict[str, Any]]:
        rnd = self.random
        people = self.people_count or max(10, count // 40)
        self._people = [self._person(i) for i in range(people)]
        span = 30 * 24 * 3600
        for n in range(count):
            if self._sent and rnd.random() < 0.005:
                yield rnd.choice(self._sent)  # Segment is at-least-once: a re-sent copy, same messageId
                continue
            person = self._people[rnd.randrange(people)]
            at = span * n / count
            if self.engage and rnd.random() < self.engage:
                event = self._engage_event(person, at)
            else:
                event = self._event(person, rnd.random(), at)
            if len(self._sent) < 1000:
                self._sent.append(event)
            yield event

    def _event(self, person: _Person, roll: float, at: float) -> dict[str, Any]:
        rnd = self.random
        base: dict[str, Any] = {
            "messageId": self._message_id(),
            "timestamp": self._time(at),
            "sentAt": self._time(at + 1),
            "receivedAt": self._time(at + 1.2),
            "context": {"library": {"name": "analytics.js", "version": "5.2.0"}, "ip": "203.0.113.7"},
        }
        known = rnd.random() < 0.85
        if known:
            base["userId"] = person.user_id
        base["anonymousId"] = person.anonymous_id
        if roll < 0.48:
            event = {"type": "track", "event": rnd.choice(ACTIONS), "properties": {"plan": "pro", "seats": 3}}
            if person.sends_group and person.company and rnd.random() < 0.3:
                base["context"] = {**base["context"], "groupId": person.company[0]}
        elif roll < 0.78:
            path = rnd.choice(PAGES)
            event = {"type": "page", "name": path.strip("/") or "home", "properties": {"path": path}}
        elif roll < 0.88:
            traits: dict[str, Any] = {"email": person.email, "name": f"Person {person.user_id[-4:]}"}
            if person.company:
                traits["company"] = {"id": person.company[0], "name": person.company[1]}
            event = {"type": "identify", "traits": traits}
            base["userId"] = person.user_id
        elif roll < 0.94:
            event = {"type": "screen", "name": rnd.choice(SCREENS), "properties": {}}
        elif roll < 0.99:
            if person.sends_group and person.company:
                group_id, name, domain = person.company
                website = f"https://www.{domain}/"  # as a company writes it: the account owns the domain
                event = {"type": "group", "groupId": group_id, "traits": {"name": name, "website": website}}
            else:
                event = {"type": "track", "event": "Settings Changed", "properties": {}}
            base["userId"] = person.user_id
        elif self.renames and rnd.random() < self.renames:
            # A rename (an SSO migration, a new id scheme): the user's old id points at its new one.
            if self._renamed and rnd.random() < 0.5:
                person = rnd.choice(self._renamed)
            else:
                self._renamed.append(person)
            old_id, person.user_id = person.user_id, f"{person.user_id.split('~')[0]}~{rnd.randrange(16**6):06x}"
            event = {"type": "alias", "previousId": old_id}
            base["userId"] = person.user_id
            base.pop("anonymousId", None)
        else:
            # A sign-up alias: the anonymous id (or an older id) now points at the user id.
            event = {"type": "alias", "previousId": person.anonymous_id, "userId": person.user_id}
            base.pop("anonymousId", None)
        return {**event, **base}

    def _engage_event(self, person: _Person, at: float) -> dict[str, Any]:
        """What Engage sends: an identify (traits) or a track (Audience Entered/Exited, Trait Computed) carrying
        ``context.personas``. Values repeat on purpose: Engage sends one call per identifier of a profile."""
        rnd = self.random
        base: dict[str, Any] = {
            "messageId": self._message_id(),
            "timestamp": self._time(at),
            "receivedAt": self._time(at + 0.5),
            "userId": person.user_id,
        }
        if rnd.random() < 0.3:
            base["anonymousId"] = person.anonymous_id
        if rnd.random() < 0.6:
            key = rnd.choice(AUDIENCES)
            member = rnd.random() < 0.6
            value: Any = member if rnd.random() < 0.8 else str(member).lower()  # booleans or "true"/"false"
            personas = {"computation_class": "audience", "computation_id": f"aud_{key}", "computation_key": key}
            if rnd.random() < 0.5:
                event = {"type": "identify", "traits": {key: value}}
            else:
                name = "Audience Entered" if member else "Audience Exited"
                event = {"type": "track", "event": name, "properties": {"audience_key": key, key: value}}
        else:
            key = rnd.choice(COMPUTED_TRAITS)
            value = {
                "total_projects": rnd.randrange(0, 5),
                "last_plan": rnd.choice(["free", "pro", "enterprise"]),
                "favourite_pages": rnd.sample(PAGES, 2),
            }[key]
            personas = {"computation_class": "trait", "computation_id": f"ct_{key}", "computation_key": key}
            event = {"type": "identify", "traits": {key: value}}
        personas.update({"namespace": ENGAGE_SPACE, "space_id": ENGAGE_SPACE})
        return {**event, **base, "context": {"personas": personas}}


def quarantined_examples(at: datetime) -> list[dict[str, Any]]:
    """Events the receiver quarantines (each with its reason in ``rejected_events``), as a broken source sends
    them: a track without ``event``, an alias without ``previousId``, a type Segment does not have."""
    stamp = at.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    return [
        {"type": "track", "userId": "user-0000001", "messageId": "broken-1", "timestamp": stamp},
        {"type": "alias", "userId": "user-0000002", "messageId": "broken-2", "timestamp": stamp},
        {"type": "launch", "userId": "user-0000003", "messageId": "broken-3", "timestamp": stamp},
        {"type": "track", "event": "Orphan", "messageId": "broken-4", "timestamp": stamp},
    ]


def write_ndjson(
    path: Path, count: int, seed: int = 7, compress: bool | None = None, engage: float = 0.0, renames: float = 0.0
) -> int:
    """Write ``count`` events as NDJSON (gzip when the name ends in .gz); returns bytes written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    compress = path.suffix == ".gz" if compress is None else compress
    opener = gzip.open if compress else open
    with opener(path, "wb") as out:  # type: ignore[operator]
        for event in TrafficGenerator(seed, engage=engage, renames=renames).events(count):
            out.write(orjson.dumps(event) + b"\n")
    return path.stat().st_size
