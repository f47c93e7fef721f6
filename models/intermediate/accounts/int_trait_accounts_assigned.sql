{#-
    Rule "accounts (2)": on `traits` connections, a contact's account is the value at the connection's
    account_id_trait path in the contact's most recent identify that has one: nested (`company.id` reads
    traits.company.id) or, failing that, a flat key of that exact name (traits["company.id"]). The name comes
    from account_name_trait in the same identify. Paths are column values, never SQL text.
-#}

with

identifies as (

    select * from {{ ref('stg_segment__identifies') }}

),

connections as (

    select * from {{ ref('stg_segment__connections') }}

),

events_identified as (

    select * from {{ ref('int_events_identified') }}

),

trait_values as (

    select
        events_identified.contact_id,
        identifies.occurred_at,
        identifies.received_at,
        identifies.message_id,
        {{ segment_accounts.clean_identifier(
            'coalesce('
            ~ segment_accounts.json_text_at_dotted_path('identifies.traits', 'connections.account_id_trait')
            ~ ', '
            ~ segment_accounts.json_text_at_key('identifies.traits', 'connections.account_id_trait')
            ~ ')'
        ) }} as account_id,
        nullif(trim(coalesce(
            {{ segment_accounts.json_text_at_dotted_path('identifies.traits', 'connections.account_name_trait') }},
            {{ segment_accounts.json_text_at_key('identifies.traits', 'connections.account_name_trait') }}
        )), '') as account_name
    from identifies
    inner join connections
        on identifies.connection_id = connections.connection_id
    inner join events_identified
        on identifies.event_id = events_identified.event_id
    where
        connections.account_mapping = 'traits'
        and connections.account_id_trait is not null
        and events_identified.contact_id is not null

),

trait_values_by_recency as (

    select
        contact_id,
        account_id,
        account_name,
        occurred_at,
        received_at,
        message_id,
        row_number() over (
            partition by contact_id
            order by occurred_at desc, received_at desc, message_id desc
        ) as recency_rank
    from trait_values
    where account_id is not null

),

final as (

    select
        contact_id,
        account_id,
        account_name,
        occurred_at,
        received_at,
        message_id
    from trait_values_by_recency
    where recency_rank = 1

)

select * from final
