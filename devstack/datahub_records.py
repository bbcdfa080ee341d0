"""Records as Data Hub's dataset endpoints send them (shared/datahub-datasets.md): Django
`values()` keys flattened with `__`, many-to-many names aggregated into one ", "-joined
string, DRF timestamps in UTC with `Z` and fractional seconds only when non-zero (3 or 6
digits), dates `YYYY-MM-DD`, money in integer pence, decimals as JSON strings or numbers,
optional text as "" as well as null, and fields no pipeline maps (`id`, `*_id`).

Each function gives record number `index`; a different `version` changes its mutable
fields (the same record, edited), a different `seed` another data set.
"""

import datetime
import random
import uuid

EPOCH = datetime.datetime(2019, 1, 1, tzinfo=datetime.timezone.utc)

COMPANIES = (
    'Acme Widgets Ltd', 'Société Générale de Café', 'Zürich Präzision AG', 'Ōkami 株式会社',
    "O'Reilly & Sons", 'Tab\tand\nNewline Ltd', 'Back\\slash "Quoted" plc', 'Ümlaut GmbH',
)
TEAMS = ('Team A', 'Team B', 'Trade Team Ñ', 'Overseas Network (Brazil)')
REGIONS = ('London', 'North East', 'Scotland', 'Wales', 'South West')
COUNTRIES = ('France', 'Germany', 'Japan', 'United States', 'Brazil', 'India')
SECTORS = ('Aerospace', 'Food and Drink : Bakery', 'Creative Industries', 'Financial Services : Insurance')
SERVICES = ('Market research', 'Trade visit', 'Partner search', 'Event support : Stand', 'Overseas, introductions')
STATUSES = ('draft', 'quote_awaiting_acceptance', 'quote_accepted', 'paid', 'complete', 'cancelled')
REASONS = ('Purchased by another buyer', 'No longer required', 'Too expensive')
TOWNS = ('London', 'Cardiff', 'Edinburgh', 'Belfast', 'Leeds')
FIRST_NAMES = ('Zoë', 'Jan', 'Ana', 'Olu', 'Siobhán', 'Wei')
LAST_NAMES = ('Smith', 'Kowalski', 'Núñez', "O'Brien", 'Okafor', 'Chen')
STAGES = ('Prospect', 'Assign PM', 'Active', 'Verify win', 'Won')
INVESTMENT_TYPES = ('FDI', 'Non-FDI', 'Commitment to invest')
FDI_TYPES = ('Creation of new site or activity', 'Expansion of existing site or activity', 'Merger and acquisition')
ACTIVITIES = ('Manufacturing', 'Research and development', 'Sales', 'Retail, and hospitality')
DRIVERS = ('Access to market', 'Cost reduction', 'Talent')
PARTNERS = ('Invest Northern Ireland', 'Scottish Development International', 'Business Wales')
SALARIES = ('Below £25,000', '£25,000–£29,000', '£30,000 and above')
LIKELIHOOD = ('Low', 'Medium', 'High')


def drf_timestamp(moment, rng):
    """As DRF sends it: UTC with Z; fractional seconds only when non-zero, 3 or 6 digits."""
    if moment is None:
        return None
    choice = rng.randrange(3)
    if choice == 0:
        return moment.replace(microsecond=0).strftime('%Y-%m-%dT%H:%M:%SZ')
    if choice == 1:
        return moment.strftime('%Y-%m-%dT%H:%M:%S.') + f'{moment.microsecond // 1000 or 1:03d}Z'
    return moment.strftime('%Y-%m-%dT%H:%M:%S.') + f'{moment.microsecond or 1:06d}Z'


def _when(rng, after, days):
    return after + datetime.timedelta(seconds=rng.randrange(days * 86400), microseconds=rng.randrange(1_000_000))


def _text(rng, values, empty='null'):
    """One of `values`, or an empty optional value: null, or "" as Django CharFields send it."""
    if rng.random() < 0.2:
        return None if empty == 'null' or (empty == 'both' and rng.random() < 0.5) else ''
    return rng.choice(values)


def _joined(rng, values):
    """A many-to-many aggregated server-side into one ", "-joined string ("" when none)."""
    return ', '.join(sorted(rng.sample(values, rng.randrange(0, len(values) + 1))))


def _decimal(rng, low, high, places=2):
    """A decimal as DRF sends it: sometimes a JSON string, sometimes a number; or null."""
    if rng.random() < 0.15:
        return None
    value = round(rng.uniform(low, high), places)
    return f'{value:.{places}f}' if rng.random() < 0.5 else value


def _uuid(rng):
    return str(uuid.UUID(int=rng.getrandbits(128)))


def _address(rng, prefix):
    return {
        f'{prefix}_1': f'{rng.randrange(1, 300)} High Street',
        f'{prefix}_2': _text(rng, ('Unit 4', 'Floor 2', 'Suite 100'), empty='both'),
        f'{prefix}_town': rng.choice(TOWNS),
        f'{prefix}_county': _text(rng, ('Greater London', 'Glamorgan', 'Midlothian'), empty='both'),
        f'{prefix}_country__name': rng.choice(('United Kingdom', 'Ireland')),
        f'{prefix}_postcode': _text(rng, ('SW1A 2AA', 'CF10 1AA', 'EH1 1YZ'), empty='both'),
    }


def omis_record(index, seed=0, version=0):
    """An order of `/v4/dataset/omis-dataset`."""
    rng = random.Random(f'omis:{seed}:{index}:{version}')
    ids = random.Random(f'omis:{seed}:{index}')
    created = _when(ids, EPOCH, 1400)
    status = rng.choice(STATUSES)
    completed = _when(rng, created, 120) if status == 'complete' else None
    paid = _when(rng, created, 60) if status in ('paid', 'complete') else None
    cancelled = _when(rng, created, 90) if status == 'cancelled' else None
    subtotal = rng.randrange(0, 5_000_000)
    return {
        'id': _uuid(ids),
        'reference': f'OMIS{index:08d}/{created:%y}',
        'company_id': _uuid(ids),
        'company__name': rng.choice(COMPANIES),
        **_address(rng, 'company__address'),
        **_address(rng, 'company__registered_address'),
        'contact_id': _uuid(ids),
        'contact__first_name': rng.choice(FIRST_NAMES),
        'contact__last_name': rng.choice(LAST_NAMES),
        'contact__email': f'contact{index}@example.com',
        'contact__telephone_number': _text(rng, ('+44 20 7946 0000', '029 2018 0000'), empty='both'),
        'status': status,
        'subtotal_cost': subtotal,                                    # pence
        'invoice__subtotal_cost': subtotal if paid else None,         # null until invoiced
        'net_cost': subtotal - rng.randrange(0, max(1, subtotal // 10 + 1)),
        'vat_cost': rng.randrange(0, 1_000_000),
        'sector_name': rng.choice(SECTORS),
        'primary_market__name': rng.choice(COUNTRIES),
        'created_by__dit_team_id': _uuid(ids),
        'created_by__dit_team__name': _text(rng, TEAMS),
        'uk_region__name': _text(rng, REGIONS),
        'created_on': drf_timestamp(created, ids),
        'cancelled_on': drf_timestamp(cancelled, rng),
        'completed_on': drf_timestamp(completed, rng),
        'paid_on': drf_timestamp(paid, rng),
        'cancellation_reason__name': rng.choice(REASONS) if cancelled else None,
        'delivery_date': (created + datetime.timedelta(days=rng.randrange(10, 200))).date().isoformat(),
        'services': _joined(rng, SERVICES),
    }


def contact_record(index, seed=0, version=0):
    """A contact of `/v4/dataset/contacts-dataset`."""
    rng = random.Random(f'contact:{seed}:{index}:{version}')
    ids = random.Random(f'contact:{seed}:{index}')
    created = _when(ids, EPOCH, 1400)
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    return {
        'id': _uuid(ids),
        'company_id': _uuid(ids),
        'accepts_dit_email_marketing': rng.random() < 0.5,
        'address_country__name': _text(rng, COUNTRIES),
        'company__company_number': _text(rng, ('01234567', 'SC123456', 'NI012345'), empty='both'),
        'company__name': rng.choice(COMPANIES),
        'company__uk_region__name': _text(rng, REGIONS),
        'company_sector': _text(rng, SECTORS),
        'created_on': drf_timestamp(created, ids),
        'email': f'{first.lower()}.{index}@example.com',
        'email_alternative': _text(rng, (f'{index}@example.org',), empty='both'),
        'job_title': _text(rng, ('Director', 'Head of Exports', 'Buyer'), empty='both'),
        'name': f'{first} {last}',
        'notes': _text(rng, ('Met at the trade show.\nFollow up in spring.', 'Prefers email: no calls'),
                       empty='both'),
        'telephone_alternative': _text(rng, ('+44 7700 900000',), empty='both'),
        'telephone_number': _text(rng, ('+44 20 7946 0000', '+1 202 555 0100'), empty='both'),
        'archived': rng.random() < 0.05,
    }


def investment_project_record(index, seed=0, version=0):
    """A project of `/v4/dataset/investment-projects-dataset`."""
    rng = random.Random(f'investment:{seed}:{index}:{version}')
    ids = random.Random(f'investment:{seed}:{index}')
    created = _when(ids, EPOCH, 1400)
    modified = _when(rng, created, 200)
    stage = rng.choice(STAGES)

    def day(after, days, chance=0.6):
        return (after + datetime.timedelta(days=rng.randrange(days))).date().isoformat() if rng.random() < chance \
            else None

    return {
        'id': _uuid(ids),
        'name': f'Project {index}: {rng.choice(ACTIVITIES)} in {rng.choice(TOWNS)}',
        'project_reference': f'DHP-{index:08d}',
        'stage__name': stage,
        'status': rng.choice(('ongoing', 'delayed', 'abandoned', 'lost', 'won')),
        'created_on': drf_timestamp(created, ids),
        'modified_on': drf_timestamp(modified, rng),
        'created_by_id': _uuid(ids),
        'modified_by_id': _uuid(rng),
        'actual_land_date': day(created, 700, 0.3),
        'estimated_land_date': day(created, 900),
        'date_abandoned': day(created, 400, 0.1),
        'date_lost': day(created, 400, 0.1),
        'date_of_latest_interaction': day(created, 300),
        'proposal_deadline': day(created, 200, 0.4),
        'project_arrived_in_triage_on': day(created, 30, 0.5),
        'total_investment': _decimal(rng, 0, 50_000_000),
        'foreign_equity_investment': _decimal(rng, 0, 20_000_000),
        'gross_value_added': _decimal(rng, 0, 5_000_000),
        'gva_multiplier__multiplier': _decimal(rng, 0, 1, places=6),
        'number_new_jobs': rng.choice((None, 0, rng.randrange(1, 2000))),
        'number_safeguarded_jobs': rng.choice((None, 0, rng.randrange(1, 500))),
        'archived': rng.random() < 0.05,
        'export_revenue': rng.random() < 0.3,
        'government_assistance': rng.random() < 0.4,
        'new_tech_to_uk': rng.choice((None, True, False)),
        'r_and_d_budget': rng.random() < 0.2,
        'non_fdi_r_and_d_budget': rng.random() < 0.1,
        'some_new_jobs': rng.choice((None, True, False)),
        'quotable_as_public_case_study': rng.random() < 0.3,
        'uk_company_decided': rng.random() < 0.5,
        'allow_blank_possible_uk_regions': rng.random() < 0.2,
        'fdi_type__name': _text(rng, FDI_TYPES),
        'fdi_value__name': _text(rng, ('Higher', 'Good', 'Standard')),
        'investment_type__name': rng.choice(INVESTMENT_TYPES),
        'investor_type__name': _text(rng, ('New Investor', 'Existing Investor')),
        'level_of_involvement_name': _text(rng, ('HQ and Post Only', 'No Involvement', 'Post only'), empty='both'),
        'likelihood_to_land__name': _text(rng, LIKELIHOOD),
        'average_salary__name': _text(rng, SALARIES),
        'country_lost_to__name': _text(rng, COUNTRIES),
        'specific_programme__name': _text(rng, ('Space', 'Innovation Gateway')),
        'referral_source_activity__name': _text(rng, ('Events', 'Marketing', 'Website')),
        'referral_source_activity_event': _text(rng, ('UK Investment Summit',), empty='both'),
        'referral_source_activity_marketing__name': _text(rng, ('Social media', 'Press')),
        'referral_source_activity_website__name': _text(rng, ('Invest in GREAT Britain',)),
        'client_relationship_manager_id': _uuid(rng),
        'client_relationship_manager__dit_team__name': _text(rng, TEAMS),
        'project_manager_id': _uuid(rng),
        'project_manager__dit_team__name': _text(rng, TEAMS),
        'project_assurance_adviser_id': _uuid(rng),
        'project_assurance_adviser__dit_team__name': _text(rng, TEAMS),
        'actual_uk_region_names': _joined(rng, REGIONS),
        'uk_region_location_names': _joined(rng, REGIONS),
        'business_activity_names': _joined(rng, ACTIVITIES),
        'delivery_partner_names': _joined(rng, PARTNERS),
        'strategic_driver_names': _joined(rng, DRIVERS),
        'team_member_names': _joined(rng, tuple(f'{f} {l}' for f in FIRST_NAMES[:3] for l in LAST_NAMES[:2])),
        'team_member_ids': sorted(_uuid(rng) for _ in range(rng.randrange(0, 3))),
        'competing_countries': sorted(rng.sample(COUNTRIES, rng.randrange(0, 3))),
        'investor_company__id': _uuid(ids),
        'investor_company__name': rng.choice(COMPANIES),
        'investor_company_sector': _text(rng, SECTORS),
        'uk_company__id': _uuid(rng) if rng.random() < 0.5 else None,
        'uk_company__name': _text(rng, COMPANIES),
        'uk_company_sector': _text(rng, SECTORS),
        'sector_name': _text(rng, SECTORS),
        'description': rng.choice(('Expansion of a "green" plant; phase 2.', 'Tab\there, newline\nthere', '')),
        'anonymous_description': _text(rng, ('A manufacturer expands in the UK.',), empty='both'),
        'clint_requirements': _text(rng, ('Access to skilled staff', 'Near a port'), empty='both'),
        'other_business_activity': _text(rng, ('Logistics',), empty='both'),
        'address_1': _text(rng, ('1 Business Park',), empty='both'),
        'address_2': _text(rng, ('Phase 2',), empty='both'),
        'address_town': _text(rng, TOWNS, empty='both'),
        'address_postcode': _text(rng, ('M1 1AE', 'LS1 4AP'), empty='both'),
        'associated_non_fdi_r_and_d_project_id': None,
    }


RECORDS = {
    'omis-dataset': omis_record,
    'contacts-dataset': contact_record,
    'investment-projects-dataset': investment_project_record,
}
