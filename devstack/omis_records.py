"""OMIS-like records, as Data Hub's flattened dataset API sends them (about 800 bytes of
JSON each, with nulls, timestamps, unicode and awkward text)."""

import datetime
import random
import uuid

COMPANIES = (
    'Acme Widgets Ltd', 'Société Générale de Café', 'Zürich Präzision AG', 'Ōkami 株式会社',
    "O'Reilly & Sons", 'Tab\tand\nNewline Ltd', 'Back\\slash "Quoted" plc', 'Ümlaut GmbH',
)
TEAMS = ('Team A', 'Team B', 'Trade Team Ñ', None)
REGIONS = ('London', 'North East', 'Scotland', 'Wales', None)
MARKETS = ('France', 'Germany', 'Japan', 'United States', 'Brazil')
SECTORS = ('Aerospace', 'Food and Drink', 'Creative Industries', 'Financial Services')
SERVICES = ('Market research', 'Trade visit', 'Partner search', 'Event support')
STATUSES = ('draft', 'quote_awaiting_acceptance', 'quote_accepted', 'paid', 'complete', 'cancelled')
REASONS = ('Purchased by another buyer', 'No longer required', 'Too expensive')
EPOCH = datetime.datetime(2019, 1, 1, tzinfo=datetime.timezone.utc)


def _when(rng, after, days):
    return after + datetime.timedelta(seconds=rng.randrange(days * 86400))


def _iso(moment):
    return None if moment is None else moment.isoformat().replace('+00:00', 'Z')


def omis_record(index, seed=0, version=0):
    """Record number `index`; a different `version` changes its mutable fields."""
    rng = random.Random(f'{seed}:{index}:{version}')
    ids = random.Random(f'{seed}:{index}')
    created = _when(ids, EPOCH, 1400)
    status = rng.choice(STATUSES)
    completed = _when(rng, created, 120) if status == 'complete' else None
    paid = _when(rng, created, 60) if status in ('paid', 'complete') else None
    cancelled = _when(rng, created, 90) if status == 'cancelled' else None
    return {
        'id': str(uuid.UUID(int=ids.getrandbits(128))),
        'reference': f'OMIS{index:08d}/{created:%y}',
        'company__name': rng.choice(COMPANIES),
        'company__id': str(uuid.UUID(int=rng.getrandbits(128))),
        'contact__name': rng.choice(('Zoë Smith', 'Jan Kowalski', 'Ana Núñez', '')),
        'contact__email': f'contact{index}@example.com',
        'dit_team__name': rng.choice(TEAMS),
        'subtotal_cost': rng.choice((0, rng.randrange(100, 5_000_000))),
        'net_cost': rng.randrange(0, 5_000_000),
        'vat_cost': rng.randrange(0, 1_000_000),
        'uk_region__name': rng.choice(REGIONS),
        'market__name': rng.choice(MARKETS),
        'sector__segment': rng.choice(SECTORS),
        'services': rng.sample(SERVICES, rng.randrange(0, len(SERVICES) + 1)),
        'status': status,
        'created_on': _iso(created),
        'completed_on': _iso(completed),
        'delivery_date': (created + datetime.timedelta(days=rng.randrange(10, 200))).date().isoformat(),
        'paid_on': _iso(paid),
        'cancelled_on': _iso(cancelled),
        'cancellation_reason__name': rng.choice(REASONS) if cancelled else None,
        'description': (
            'Research into the market for "widgets", with a focus on SMEs. '
            'Notes: tab\tnewline\nbackslash\\ – ünïcödé ✓. '
        ) + 'x' * rng.randrange(0, 60),
        'billing_address_postcode': rng.choice(('SW1A 2AA', 'EH1 1YZ', None)),
        'quote__created_on': _iso(_when(rng, created, 30)),
        'is_archived': rng.random() < 0.1,
    }
