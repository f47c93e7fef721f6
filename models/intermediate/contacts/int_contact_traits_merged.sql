{#-
    A contact's traits: the latest value of each trait across its identify calls. Each id's latest value of each
    trait is kept, incrementally, by int_identifier_calls_summarized (its `trait` rows): here the latest of those
    across the contact's ids, so a run reads one row per id and trait, not every identify call.
-#}

with

identifier_calls as (

    select * from {{ ref('int_identifier_calls_summarized') }}

),

contact_identifiers as (

    select * from {{ ref('int_contact_identifiers_resolved') }}

),

latest_trait_calls as (

    -- an identify call belongs to the contact of its user id, else of its anonymous id (int_events_identified)
    select
        identifier,
        trait_name,
        trait_value,
        occurred_at,
        received_at,
        message_id,
        {{ segment_accounts.call_identifier_type('user_id') }} as identifier_type
    from identifier_calls
    where
        identifier_role = 'trait'
        and bound = 'last'

),

trait_values as (

    select
        contact_identifiers.contact_id,
        latest_trait_calls.trait_name,
        latest_trait_calls.trait_value,
        row_number() over (
            partition by contact_identifiers.contact_id, latest_trait_calls.trait_name
            order by
                latest_trait_calls.occurred_at desc,
                latest_trait_calls.received_at desc,
                latest_trait_calls.message_id desc
        ) as recency_rank
    from latest_trait_calls
    inner join contact_identifiers
        on
            latest_trait_calls.identifier = contact_identifiers.identifier
            and latest_trait_calls.identifier_type = contact_identifiers.identifier_type

),

final as (

    select
        contact_id,
        {{ segment_accounts.json_object_agg('trait_name', 'trait_value') }} as traits
    from trait_values
    where recency_rank = 1
    group by contact_id

)

select * from final
