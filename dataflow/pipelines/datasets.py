"""Dataset pipelines of Data Hub's dataset endpoints (`/v4/dataset/...`), mapped as Data Hub
sends them: Django `values()` names flattened with `__` as source fields, many-to-many
names as one ", "-joined string (loaded as text: a name may hold ", " itself), money in
integer pence, timestamps in UTC. Their source is the `datahub` connection."""

from datetime import datetime


class OMISDatasetPipeline:
    """Orders for the Overseas Market Introduction Service (OMIS), from Data Hub."""

    table_name = 'omis_dataset'
    source_path = '/v4/dataset/omis-dataset'
    start_date = datetime(2019, 1, 1)
    schedule_interval = '@daily'

    field_mapping = [
        ('reference', 'omis_order_reference', 'character varying(100) PRIMARY KEY'),
        ('company__name', 'company_name', 'character varying(255) NOT NULL'),
        ('status', 'order_status', 'character varying(100)'),
        ('contact__first_name', 'contact_first_name', 'character varying(255)'),
        ('contact__last_name', 'contact_last_name', 'character varying(255)'),
        ('contact__email', 'contact_email', 'character varying(255)'),
        ('contact__telephone_number', 'contact_phone_number', 'character varying(255)'),
        ('invoice__subtotal_cost', 'subtotal', 'integer'),        # pence; null until invoiced
        ('subtotal_cost', 'net_price', 'integer'),                # pence
        ('sector_name', 'sector', 'character varying(255)'),
        ('primary_market__name', 'market', 'text'),
        ('created_by__dit_team__name', 'dit_team', 'text'),
        ('uk_region__name', 'uk_region', 'text'),
        ('created_on', 'created_date', 'timestamp with time zone'),
        ('cancelled_on', 'cancelled_date', 'timestamp with time zone'),
        ('completed_on', 'completion_date', 'timestamp with time zone'),
        ('paid_on', 'payment_received_date', 'timestamp with time zone'),
        ('cancellation_reason__name', 'cancellation_reason', 'text'),
        ('delivery_date', 'delivery_date', 'date'),
        ('company__address_1', 'company_trading_address_line_1', 'character varying(255)'),
        ('company__address_2', 'company_trading_address_line_2', 'character varying(255)'),
        ('company__address_town', 'company_trading_address_town', 'character varying(255)'),
        ('company__address_county', 'company_trading_address_county', 'character varying(255)'),
        ('company__address_country__name', 'company_trading_address_country', 'character varying(255)'),
        ('company__address_postcode', 'company_trading_address_postcode', 'character varying(255)'),
        ('company__registered_address_1', 'company_registered_address_1', 'character varying(255)'),
        ('company__registered_address_2', 'company_registered_address_2', 'character varying(255)'),
        ('company__registered_address_town', 'company_registered_address_town', 'character varying(255)'),
        ('company__registered_address_county', 'company_registered_address_county', 'character varying(255)'),
        ('company__registered_address_country__name', 'company_registered_address_country',
         'character varying(255)'),
        ('company__registered_address_postcode', 'company_registered_address_postcode', 'character varying(255)'),
        ('services', 'services', 'text'),                         # ", "-joined service names
    ]


class ContactsDatasetPipeline:
    """Contacts at companies, from Data Hub."""

    table_name = 'contacts_dataset'
    source_path = '/v4/dataset/contacts-dataset'
    start_date = datetime(2019, 1, 1)
    schedule_interval = '@daily'

    field_mapping = [
        ('accepts_dit_email_marketing', 'accepts_dit_email_marketing', 'boolean'),
        ('address_country__name', 'address_country', 'text'),
        ('company__company_number', 'companies_house_id', 'character varying(255)'),
        ('company__name', 'company_name', 'character varying(255)'),
        ('company__uk_region__name', 'uk_region', 'text'),
        ('company_sector', 'company_sector', 'text'),
        ('created_on', 'date_added_to_datahub', 'date'),
        ('email', 'email', 'character varying(255)'),
        ('email_alternative', 'email_alternative', 'character varying(255)'),
        ('job_title', 'job_title', 'character varying(255)'),
        ('name', 'contact_name', 'text'),
        ('notes', 'notes', 'text'),
        ('telephone_alternative', 'telephone_alternative', 'character varying(255)'),
        ('telephone_number', 'phone', 'character varying(255)'),
    ]


class InvestmentProjectsDatasetPipeline:
    """Foreign direct investment projects, from Data Hub."""

    table_name = 'investment_projects_dataset'
    source_path = '/v4/dataset/investment-projects-dataset'
    start_date = datetime(2019, 1, 1)
    schedule_interval = '@daily'

    field_mapping = [
        ('id', 'dh_fdi_project_id', 'uuid PRIMARY KEY'),
        ('name', 'name', 'text NOT NULL'),
        ('project_reference', 'project_reference', 'text'),
        ('stage__name', 'stage', 'text NOT NULL'),
        ('status', 'status', 'text'),
        ('created_on', 'created_on', 'timestamp with time zone'),
        ('modified_on', 'modified_on', 'timestamp with time zone'),
        ('actual_land_date', 'actual_land_date', 'date'),
        ('estimated_land_date', 'estimated_land_date', 'date'),
        ('date_abandoned', 'date_abandoned', 'date'),
        ('date_lost', 'date_lost', 'date'),
        ('date_of_latest_interaction', 'date_of_latest_interaction', 'date'),
        ('proposal_deadline', 'proposal_deadline', 'date'),
        ('project_arrived_in_triage_on', 'project_arrived_in_triage_on', 'date'),
        ('total_investment', 'total_investment', 'numeric'),
        ('foreign_equity_investment', 'foreign_equity_investment', 'numeric'),
        ('gross_value_added', 'gross_value_added', 'numeric'),
        ('gva_multiplier__multiplier', 'gva_multiplier', 'numeric'),
        ('number_new_jobs', 'number_new_jobs', 'integer'),
        ('number_safeguarded_jobs', 'number_safeguarded_jobs', 'integer'),
        ('archived', 'archived', 'boolean'),
        ('export_revenue', 'export_revenue', 'boolean'),
        ('government_assistance', 'government_assistance', 'boolean'),
        ('new_tech_to_uk', 'new_tech_to_uk', 'boolean'),
        ('r_and_d_budget', 'r_and_d_budget', 'boolean'),
        ('non_fdi_r_and_d_budget', 'non_fdi_r_and_d_budget', 'boolean'),
        ('some_new_jobs', 'some_new_jobs', 'boolean'),
        ('quotable_as_public_case_study', 'quotable_as_public_case_study', 'boolean'),
        ('uk_company_decided', 'uk_company_decided', 'boolean'),
        ('allow_blank_possible_uk_regions', 'allow_blank_possible_uk_regions', 'boolean'),
        ('fdi_type__name', 'fdi_type', 'text'),
        ('fdi_value__name', 'fdi_value', 'text'),
        ('investment_type__name', 'investment_type', 'text'),
        ('investor_type__name', 'investor_type', 'text'),
        ('level_of_involvement_name', 'level_of_involvement', 'text'),
        ('likelihood_to_land__name', 'likelihood_to_land', 'text'),
        ('average_salary__name', 'average_salary', 'text'),
        ('country_lost_to__name', 'country_lost_to', 'text'),
        ('specific_programme__name', 'specific_programme', 'text'),
        ('referral_source_activity__name', 'referral_source_activity', 'text'),
        ('referral_source_activity_event', 'referral_source_activity_event', 'text'),
        ('referral_source_activity_marketing__name', 'referral_source_activity_marketing', 'text'),
        ('referral_source_activity_website__name', 'referral_source_activity_website', 'text'),
        ('client_relationship_manager__dit_team__name', 'client_relationship_manager_team', 'text'),
        ('project_manager__dit_team__name', 'project_manager_team', 'text'),
        ('project_assurance_adviser__dit_team__name', 'project_assurance_team', 'text'),
        ('actual_uk_region_names', 'actual_uk_regions', 'text'),              # ", "-joined
        ('uk_region_location_names', 'possible_uk_regions', 'text'),          # ", "-joined
        ('business_activity_names', 'business_activities', 'text'),           # ", "-joined
        ('delivery_partner_names', 'delivery_partners', 'text'),              # ", "-joined
        ('strategic_driver_names', 'strategic_drivers', 'text'),              # ", "-joined
        ('team_member_names', 'team_members', 'text'),                        # ", "-joined
        ('competing_countries', 'competing_countries', 'text[]'),             # a JSON list
        ('investor_company__id', 'investor_company_id', 'uuid'),
        ('investor_company__name', 'investor_company_name', 'text'),
        ('investor_company_sector', 'investor_company_sector', 'text'),
        ('uk_company__id', 'uk_company_id', 'uuid'),
        ('uk_company__name', 'uk_company_name', 'text'),
        ('uk_company_sector', 'uk_company_sector', 'text'),
        ('sector_name', 'sector', 'text'),
        ('description', 'description', 'text'),
        ('anonymous_description', 'anonymous_description', 'text'),
        ('clint_requirements', 'client_requirements', 'text'),    # the source key is misspelt in Data Hub
        ('other_business_activity', 'other_business_activity', 'text'),
        ('address_1', 'address_1', 'text'),
        ('address_2', 'address_2', 'text'),
        ('address_town', 'address_town', 'text'),
        ('address_postcode', 'address_postcode', 'text'),
    ]
